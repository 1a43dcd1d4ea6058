"""The pipeline: one clip, image or stream in, one result out (face stage, voice stage, fusion, windows)."""
