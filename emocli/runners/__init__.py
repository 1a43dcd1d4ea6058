"""Running the pipeline over many inputs: the local worker pool, Ray, corpus extraction and evaluation."""
