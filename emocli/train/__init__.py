"""Training commands: the face network, its head and experts, the voice model and fusion weights."""
