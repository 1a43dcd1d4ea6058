"""Corpora on disk: their layouts, labels and speaker splits."""
