"""Voices: short-term features, the speech encoder, voice activity, the voice model and speaker adaptation."""
