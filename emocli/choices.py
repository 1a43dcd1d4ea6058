"""Choice lists the command line and the library share, written once and importable without numpy
(``emo --help`` reads them before anything heavy is imported)."""

DETECTORS = ("yunet", "blazeface", "haar")  # --detector / Options.detector; the first is the default
DEFAULT_DETECTOR = DETECTORS[0]
