"""Faces: detection, alignment and the face networks (emo-cnn, the experts, VGG-Face)."""
