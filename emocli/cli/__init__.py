"""The `emo` command line."""
