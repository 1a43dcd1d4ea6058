"""Shipped model files: the default bundle and the face detector (package data)."""
