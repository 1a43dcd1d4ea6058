"""The pipeline: one clip, image or stream in, one result out.

``options`` (what it is told, what it returns), ``faces`` (the face stage), ``voice`` (the voice
stage), ``windows`` (``--window`` segments and a stream's blocks), ``core`` (:class:`Pipeline`:
decode, both stages, fusion).
"""
