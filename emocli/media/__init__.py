"""Decoding media: ffmpeg runs, files and streams, and the inputs a command is given."""
