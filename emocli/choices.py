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

# The face stage (pipeline.Options: the command line's defaults are these)
DEFAULT_FPS = 5.0  # frames per second scored: expressions change over ~0.2 s, frames closer are near-duplicates
DEFAULT_BATCH = 64  # face crops per network call
VIEWS = ("bundle", "spread", "mirror", "none")  # test-time views of a face (FaceModel.score_inputs)
TTA_CHOICES = ("auto", *VIEWS)  # --tta: auto = the bundle's views for still images, spread for video frames
POOLINGS = ("mean", "expressive")  # --pooling: how frame scores make a clip's face score
FACE_MODES = ("main", "all")  # --faces
# voice adaptation (--adapt): each voice against the baseline of its speaker (named by --speaker-of or the
# corpus), of the whole run (speakers unknown), or of its own stream so far (--window segments, live)
ADAPT_MODES = ("speaker", "run", "stream")
MODALITIES = ("both", "face", "voice")  # --modality
OUTPUT_FORMATS = ("table", "json", "csv", *TIMELINE_FORMATS)  # predict --format

# Training
FEATURE_SETS = ("thesis68", "rich", "whisper", "whisper+rich")  # voice features (train-audio --feature-set)
BALANCES = ("none", "sqrt", "full")  # train-video --balance
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")  # train-video --precision
DEFAULT_EXPERT_STAGE = "7x7"  # train-expert --from-stage: the last stage alone, its input computed once
HEAD_FRAMINGS = ("choose", "image", "image+video")  # train-head --framing: the faces the face head learns from
HEADS = ("exp1", "exp2")  # the thesis's VGG-Face transfer experiments (train-video --transfer)
