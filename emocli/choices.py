"""Choice lists the command line and the library share, written once and importable without numpy
(``emo --help`` reads them before anything heavy is imported)."""

DETECTORS = ("yunet", "blazeface", "haar")  # --detector / Options.detector; the first is the default
DEFAULT_DETECTOR = DETECTORS[0]

FUSE_METHODS = ("equal", "confusion", "learned", "feature-svm", "feature-dense")  # emo fuse --method
FUSE_RULES = ("sum", "product")  # emo fuse --rule
# `emo fuse`'s defaults: the shipped bundle's choice (the product of the two calibrated probability
# vectors, equal weights; docs/experiments.md, "Fusion rule"). A fusion.json without a rule is "sum".
DEFAULT_FUSE_METHOD = "equal"
DEFAULT_FUSE_RULE = "product"
# fuse warns when the validation its weights come from is smaller than this
MIN_VALIDATION_SPEAKERS = 3
MIN_VALIDATION_PER_CLASS = 50
TIMELINE_FORMATS = ("srt", "vtt", "tsv")  # predict --format: the --window segments as subtitles or a table
LAYOUTS = ("afew", "images", "ravdess", "cremad", "tess", "savee", "emodb", "manifest")  # corpus layouts (--layout)
