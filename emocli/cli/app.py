"""The ``emo`` command line. Only this module turns errors into exit codes.

Exit codes: 0 success, 1 an input or model failed (one red line on stderr per failure),
2 bad usage, 130 interrupted. Heavy libraries are imported inside commands.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from emocli.choices import DEFAULT_DETECTOR, DEFAULT_FUSE_METHOD, DEFAULT_FUSE_RULE, DETECTORS, FUSE_METHODS, FUSE_RULES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner off stderr

app = typer.Typer(
    name="emo",
    help="Audio-visual emotion recognition: face + voice, fused, from the command line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help text: as Rich markup, "[default: ...]" vanished and 'emocli[ray]' became 'emocli'.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from emocli import __version__

        print(f"emo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Audio-visual emotion recognition: face + voice, fused, from the command line."""


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)  # one error, one line, however long


def fail(message: str) -> "typer.Exit":
    """Print one red line on stderr and return the exit to raise (code 1)."""
    from rich.markup import escape

    from emocli.report.output import printable

    _stderr().print(f"[red]error:[/red] {escape(printable(message))}")
    return typer.Exit(1)


def _layout_option(value: Optional[str]) -> Optional[str]:
    """--layout/--corpus: an unknown name is bad usage (exit 2), found before any work starts."""
    if value is None:
        return None
    from emocli.corpus.layouts import canonical_layout
    from emocli.errors import DatasetError

    try:
        canonical_layout(value)
    except DatasetError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _workers(workers: int | None, n_inputs: int | None) -> int:
    """``--workers`` as given, capped at the CPU count, or its default for ``n_inputs`` inputs
    (None: not known, e.g. paths on stdin): see :func:`emocli.runners.pool.worker_count`."""
    from emocli.runners.pool import worker_count

    return worker_count(workers, n_inputs)


WORKERS_DEFAULT = "one per CPU for 4 or more inputs, else 1"


SplitOpt = Annotated[Optional[str], typer.Option(
    help="With --features: train on the extracted items of this split [default: the training split (Train) "
         "when the items have splits, else all of them].", show_default=False)]
AllowEvalSplitOpt = Annotated[bool, typer.Option(
    "--allow-eval-split", help="Allow --split to name an evaluation split (Val, Test, ...).")]


def _number(lo: float, hi: float, *, lo_open: bool = False):
    """An option callback: the value (or each of a list) must be a finite number in [lo, hi] (``lo_open``:
    above lo), else bad usage naming the range; inf, 1e308 and nan never reach the pipeline or ffmpeg."""
    import math

    def check(value):
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is None:
                continue
            ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
            if not ok:
                raise typer.BadParameter(f"{v!r} is not a finite number {'above' if lo_open else 'from'} {lo:g} "
                                         f"{'and at most' if lo_open else 'to'} {hi:g}")
        return value

    return check


def _folder_option(option: str) -> Callable[[Optional[Path]], Optional[Path]]:
    """A callback for an output FOLDER option: refused before any work (exit 1, one line) when it names
    a file or a device, goes through a file, or cannot be written to."""
    def check(value: Optional[Path]) -> Optional[Path]:
        if value is not None:
            from emocli.errors import OutputError
            from emocli.files import check_writable

            try:
                check_writable(value, option, folder=True)
            except OutputError as exc:
                raise fail(str(exc)) from None
        return value

    return check


_out_folder = _folder_option("--out")
_cache_folder = _folder_option("--cache")


def _choices(name: str, *values: str) -> type[Enum]:
    """A str Enum for an option's fixed choices (member names: the values with - and + as _)."""
    return Enum(name, [(re.sub(r"\W", "_", v), v) for v in values], type=str)


Head = _choices("Head", "exp1", "exp2")
Detector = _choices("Detector", *DETECTORS)
Modality = _choices("Modality", "both", "face", "voice")
TTA = _choices("TTA", "auto", "bundle", "spread", "mirror", "none")


_TTA_HELP = ("Test-time views per face: auto = the bundle's views (mirror, zoom, shifts) for still images, and "
             "spread for video frames (each frame one of the bundle's views and its mirror, in turn: the clip "
             "averages them all at the cost of crop + mirror); or bundle, spread, mirror, none for every input.")


Pooling = _choices("Pooling", "mean", "expressive")


# Options shared by predict, evaluate and extract.
def _check_experts(value: str) -> str:
    """--face-experts: names no bundle could have are bad usage (exit 2); the bundle is checked later."""
    from emocli.face.experts import EXPERT_NAMES, parse_experts

    if not value.strip():
        raise typer.BadParameter(f"unknown face expert(s) {value!r}; use all, or a comma list of "
                                 f"{', '.join(EXPERT_NAMES)}")
    try:
        parse_experts(value, EXPERT_NAMES)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


FaceExpertsOpt = Annotated[str, typer.Option(
    "--face-experts", callback=_check_experts,
    help="Face networks that score each frame: all (those the bundle has: emo-cnn, the FER2013 network, and "
         "rafdb, the RAF-DB MobileFaceNet, combined by the bundle's face head, else averaged; after `emo "
         "train-video --features` into a bundle, its retrained emo-cnn alone) or a comma list, e.g. emo-cnn "
         "(one network, no head).")]
DetectOpt = Annotated[Optional[bool], typer.Option(
    "--detect/--no-detect", show_default=False,
    help="--no-detect: inputs are already face crops; --detect: always find faces. Default: find faces, and "
         "score a still image whole when none is found and its shorter side is at most 160 px (a face crop; "
         "notes says so).")]
PoolingOpt = Annotated[Pooling, typer.Option(
    help="Frame scores -> clip face score: mean (the thesis's average) or expressive (frames weighted by how "
         "far they are from neutral).")]
ModelOpt = Annotated[Optional[Path], typer.Option(
    "--model", "-m", help="Model bundle folder [default: the shipped models/default].", show_default=False)]
FpsOpt = Annotated[float, typer.Option(callback=_number(0.0, 1000.0),
                                        help="Frames per second to score (0: every frame; at most 1000).")]
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="Face crops per network call.")]
DetectorOpt = Annotated[Detector, typer.Option(
    help="Face detector: yunet (finds faces from 10 % to 90 % of the frame's width, turned or cut by its edge), "
         "blazeface (MediaPipe's, misses close-ups), or haar (the thesis's).")]
ModalityOpt = Annotated[Modality, typer.Option(help="Use both modalities, or only the face or the voice.")]
TTAOpt = Annotated[TTA, typer.Option(help=_TTA_HELP)]
CorpusSplitOpt = Annotated[Optional[str], typer.Option(help="Only the items of this split (e.g. Val for AFEW).")]
LayoutOpt = Annotated[Optional[str], typer.Option(help="Corpus layout [default: detected from the naming].",
                                                  callback=_layout_option)]
RayOpt = Annotated[bool, typer.Option("--ray", help="Run on Ray (pip install 'emocli[ray]'): one model-holding actor "
                                                    "per CPU instead of --workers; every worker must see the inputs, "
                                                    "the model and any output folder (shared filesystem). See "
                                                    "docs/scale.md.")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", help="Ray cluster to join (auto, ray://HOST:10001); implies --ray [default: a local Ray "
                          "instance].", show_default=False)]


def _input_options(value: Optional[str]) -> Optional[list[str]]:
    """--input-options: split like a shell would; each word must be an ffmpeg option or its value."""
    if value is None:
        return None
    import shlex

    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise typer.BadParameter(f"cannot split {value!r} ({exc}); quote it like a shell command line") from None
    if words and not words[0].startswith("-"):
        raise typer.BadParameter(f"{value!r} does not start with an option; give ffmpeg input options such as "
                                 "\"-f v4l2 -framerate 30\"")
    if "-i" in words:
        raise typer.BadParameter("leave -i out: the input is the argument of emo predict")
    return words


# The scoring options predict, evaluate and extract share, in help order: declared once here and added to
# each command's signature by `scoring_options`.
_SCORING = {
    "fps": (FpsOpt, 5.0),
    "batch_size": (BatchSizeOpt, 64),
    "detector": (DetectorOpt, Detector(DEFAULT_DETECTOR)),
    "detect": (DetectOpt, None),
    "tta": (TTAOpt, TTA.auto),
    "face_experts": (FaceExpertsOpt, "all"),
    "pooling": (PoolingOpt, Pooling.mean),
}


ScoringOpts = dict  # where a command's signature takes the shared scoring options (`scoring_options`)


def scoring_options(command):
    """Give COMMAND the shared scoring options (``_SCORING``) in place of its ``scoring`` parameter.

    Typer reads a command's options from its signature, so they are spliced into it there; the
    command receives them as one dict, ``scoring``, for `_pipeline_options`.
    """
    import functools
    import inspect

    signature = inspect.signature(command, eval_str=True)  # Typer needs the Annotated objects, not strings
    params = []
    for name, param in signature.parameters.items():
        if name != "scoring":
            params.append(param)
            continue
        params += [inspect.Parameter(option, param.kind, annotation=annotation, default=default)
                   for option, (annotation, default) in _SCORING.items()]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        scoring = {name: kwargs.pop(name, default) for name, (_, default) in _SCORING.items()}
        return command(*args, scoring=scoring, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    return wrapper


def _pipeline_options(*, fps: float, batch_size: int, detector: "Detector | str", detect: Optional[bool],
                      tta: "TTA | str", face_experts: str, pooling: "Pooling | str",
                      modality: "Modality | str" = Modality.both, **more):
    """The pipeline's Options from the scoring options (``_SCORING``), the modality and ``more`` (the others)."""
    from emocli.pipeline.options import Options

    modality = Modality(modality)
    return Options(fps=fps or None, batch_size=batch_size, detector=Detector(detector).value, detect=detect,
                   use_face=modality != Modality.voice, use_voice=modality != Modality.face, tta=TTA(tta).value,
                   face_experts=face_experts, pooling=Pooling(pooling).value, **more)


Balance = _choices("Balance", "none", "sqrt", "full")
Precision = _choices("Precision", "float32", "mixed_bfloat16", "mixed_float16")


@app.command("train-video", epilog="\b\nExamples:\n  emo train-video ../shared/data/fer2013/train --out runs/face --epochs 30\n  emo train-video fer2013/train rafdb/train affectnet/train --holdout 0.1 --balance sqrt --init models/default --out runs/multi\n  emo train-video --features runs/afew_feats --split Train --out runs/afew_head\n")
def train_video(
    data: Annotated[Optional[list[Path]], typer.Argument(
        help="Folders of face images, one sub-folder per emotion (FER2013 layout); several corpora train one "
             "network, each with its own held-out part.", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", callback=_out_folder, help="Bundle folder to write face.keras/face.json into.",
                                      show_default=False)] = ...,
    backbone: Annotated[str, typer.Option(help="emo-cnn (default, trained end to end), mini-xception:PATH, "
                                               "vggface (needs --weights) or keras:PATH.keras, keras:PATH.keras#LAYER "
                                               "(frozen backbone + retrained head).")] = "emo-cnn",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 30,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per training step.")] = 128,
    lr: Annotated[float, typer.Option(callback=_number(0.0, 1.0, lo_open=True),
                                      help="Peak Adam learning rate (cosine decay after 1 warm-up epoch).")] = 1e-3,
    holdout: Annotated[list[float], typer.Option(callback=_number(0.01, 0.5), help="Share of each corpus held out to pick the "
                                                                         "best epoch: once for all, or once per "
                                                                         "DATA folder in order.")] = [0.1],
    balance: Annotated[Balance, typer.Option(help="Sample weights over corpus x class: none, sqrt (1/sqrt(count)) "
                                                  "or full (1/count); they also weigh the held-out accuracy.")
                       ] = Balance.none,
    width: Annotated[int, typer.Option(min=4, help="emo-cnn: filters in the first block (doubles per block).")] = 32,
    seed: Annotated[int, typer.Option(help="Random seed (split, init, augmentation).")] = 0,
    holdout_seed: Annotated[Optional[int], typer.Option(help="Seed of the held-out split alone (default: --seed); keep "
                                                             "it fixed across runs that will be compared or averaged.",
                                                        show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use at most this many training images (quick runs).")] = None,
    features: Annotated[Optional[Path], typer.Option(help="Instead of DATA: an `emo extract` folder; retrain only the "
                                                          "softmax on its fc2 features (no media decoded again).")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Start from the face network of this bundle (fine-tuning or "
                                                      "a warm restart) instead of new weights.")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="vggface: VGG-Face weight file (.h5 of keras-vggface or "
                                                         "deepface; see docs/vggface.md); default: $EMO_VGGFACE_WEIGHTS.",
                                                    show_default=False)] = None,
    head: Annotated[Optional[Head], typer.Option(help="vggface: exp1 = frozen fc6 + FC 256; exp2 = frozen conv "
                                                      "blocks + FC 512-256; default: exp2.", show_default=False)] = None,
    rotation: Annotated[float, typer.Option(callback=_number(0, 180), help="Augmentation: largest random rotation, degrees "
                                                                 "(the thesis's 30 by default).")] = 30.0,
    zoom: Annotated[float, typer.Option(callback=_number(0, 0.9), help="Augmentation: largest random zoom, as a share.")] = 0.15,
    shift: Annotated[float, typer.Option(callback=_number(0, 0.9), help="Augmentation: largest random shift, as a share of "
                                                              "the side.")] = 0.10,
    precision: Annotated[Precision, typer.Option(help="Training arithmetic: mixed_bfloat16 about doubles speed on "
                                                      "CPUs with AVX512-BF16/AMX, mixed_float16 on GPUs (emo-cnn "
                                                      "only; saved networks are always float32).")] = "float32",
    exclude: Annotated[Optional[Path], typer.Option(help="A file of image paths (one per line, or a CSV whose first "
                                                         "column is the path) kept out of training and of the "
                                                         "held-out part: a test set kept unseen.",
                                                    show_default=False)] = None,
    teacher: Annotated[Optional[list[Path]], typer.Option(help="Knowledge distillation: a face bundle trained on the "
                                                               "same DATA with the same held-out split; repeat for "
                                                               "an ensemble. Its averaged scores join the labels as "
                                                               "training targets.", show_default=False)] = None,
    distill: Annotated[float, typer.Option(callback=_number(0.0, 1.0), help="With --teacher: the teachers' share of the "
                                                                  "training targets (the labels' is the rest).")] = 0.5,
    refresh_bn: Annotated[bool, typer.Option("--refresh-bn", help="After training, re-estimate the BatchNorm "
                                                                   "statistics on the un-augmented training faces; "
                                                                   "kept if the held-out accuracy gains (see `emo "
                                                                   "refresh-bn`).")] = False,
    split: SplitOpt = None,
    allow_eval_split: AllowEvalSplitOpt = False,
) -> None:
    """Train the face-expression network on folder-per-class face images."""
    from emocli.train.face import TrainOptions, train_video_command, train_video_features_command

    if (not data) == (features is None):
        raise typer.BadParameter("pass either DATA (folders of face images) or --features DIR")
    if data and len(holdout) not in (1, len(data)):
        raise typer.BadParameter(f"given {len(holdout)} times for {len(data)} folders; give it once, or once per "
                                 "folder in the same order", param_hint="--holdout")
    if features is not None and exclude is not None:
        raise typer.BadParameter("--exclude belongs to DATA folders of images, not to --features")
    if features is not None and teacher:
        raise typer.BadParameter("--teacher belongs to DATA folders of images, not to --features")
    if features is not None and refresh_bn:
        raise typer.BadParameter("--refresh-bn belongs to DATA folders of images, not to --features")
    if features is None and (split is not None or allow_eval_split):
        raise typer.BadParameter("--split belongs to --features (a DATA folder's train split is used)")
    try:
        if features is not None:
            train_video_features_command(features=features, out=out, holdout=holdout[0], seed=seed, console=_stderr(),
                                         split=split, allow_eval_split=allow_eval_split)
            return
        options = TrainOptions(backbone=backbone, epochs=epochs, batch_size=batch_size, learning_rate=lr,
                               holdout=tuple(holdout), width=width, seed=seed, holdout_seed=holdout_seed, limit=limit,
                               weights=weights, head=head.value if head is not None else None, init=init,
                               precision=Precision(precision).value,
                               augmentation={"rotation": rotation, "zoom": zoom, "shift": shift},
                               balance=Balance(balance).value, exclude=exclude, teachers=tuple(teacher or ()),
                               distill=distill, refresh_bn=refresh_bn)
        train_video_command(data=data, out=out, options=options, console=_stderr())
    except _emo_errors() as exc:
        raise fail(str(exc)) from None


VoiceFeatures = _choices("VoiceFeatures", "rich", "thesis68", "whisper", "whisper+rich")


@app.command("train-audio", epilog="\b\nExamples:\n  emo train-audio ravdess emodb --out runs/voice --test-speakers ravdess_02,emodb_03\n  emo train-audio ravdess emodb --feature-set whisper+rich --cache runs/voice_cache --out runs/voice\n")
def train_audio(
    data: Annotated[Optional[list[Path]], typer.Argument(help="Corpus folders (RAVDESS, EmoDB, ...; layout detected "
                                                              "from the file names) or CSV manifests with a speaker "
                                                              "column.", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", callback=_out_folder, help="Bundle folder to write voice.npz/voice.json into.",
                                      show_default=False)] = ...,
    features: Annotated[Optional[Path], typer.Option(help="Instead of DATA: an `emo extract` folder; fit the SVM on "
                                                          "its voice features (no audio decoded again).",
                                                     show_default=False)] = None,
    corpus: Annotated[Optional[str], typer.Option(callback=_layout_option, help="Layout of every DATA folder (ravdess, emodb, cremad, tess, "
                                                       "savee, manifest) instead of detecting it.",
                                                  show_default=False)] = None,
    test_speakers: Annotated[str, typer.Option(help="Comma-separated speakers held out of training and reported "
                                                    "at the end (ravdess_02 or Actor_02, emodb_03).")] = "",
    feature_set: Annotated[Optional[VoiceFeatures], typer.Option(
        show_default=False, help="rich: 289 statistics incl. pitch; thesis68: mean and std of the 34 pyAudioAnalysis "
                                 "features; whisper: 768 pooled Whisper tiny.en encoder values; whisper+rich: both "
                                 "[default: the feature set of the voice model already in --out (the shipped bundle: "
                                 "whisper+rich), else rich].")] = None,
    balanced: Annotated[bool, typer.Option(help="Weight classes inversely to their frequency.")] = True,
    augment: Annotated[bool, typer.Option(help="Also train on 0.9x and 1.1x speed copies of every training clip.")]
    = True,
    perturb: Annotated[str, typer.Option(help="Also train on one more copy of every training clip per name: noise "
                                              "(pink noise 10-20 dB below the speech), reverb (a synthetic room, "
                                              "RT60 0.3-0.9 s); comma list, e.g. noise,reverb.")] = "",
    repeats: Annotated[int, typer.Option(min=1, help="Repeats of the speaker-grouped 4-fold search for C and gamma.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed of the speaker shuffles.")] = 0,
    workers: Annotated[Optional[int], typer.Option(min=1, show_default=False, help=f"Processes computing features "
                                                   f"[default: {WORKERS_DEFAULT}].")] = None,
    cache: Annotated[Optional[Path], typer.Option(callback=_cache_folder,
                                                  help="Folder caching per-clip features (.npz) between runs.",
                                                  show_default=False)] = None,
    split: SplitOpt = None,
    allow_eval_split: AllowEvalSplitOpt = False,
    speaker_norm: Annotated[bool, typer.Option(help="Also train a model on features z-normalised per speaker "
                                                    "(voice_speaker.*), used where emo knows the speaker: evaluate "
                                                    "--speaker-norm, predict --speaker-of, long streams.")] = False,
    vad: Annotated[bool, typer.Option(help="Give a bundle without a speech-activity gate emo's (Silero VAD, copied "
                                           "from the shipped bundle), so music, noise and silence are not "
                                           "classified; --no-vad leaves only the level gate.")] = True,
) -> None:
    """Train the voice model (StandardScaler + RBF SVM) on speech corpora, validated by speaker."""
    from emocli.train.voice import train_audio_command, train_audio_features_command

    if (not data) == (features is None):
        raise typer.BadParameter("pass either DATA (corpus folders) or --features DIR")
    if features is None and (split is not None or allow_eval_split):
        raise typer.BadParameter("--split belongs to --features (held-out speakers: --test-speakers)")
    if features is not None and speaker_norm:
        raise typer.BadParameter("--speaker-norm needs corpus folders (DATA), whose file names say who speaks")
    if features is not None and perturb.strip():
        raise typer.BadParameter("--perturb needs corpus folders (DATA): it alters the audio before features")
    try:
        if features is not None:
            train_audio_features_command(features=features, out=out, balanced=balanced, seed=seed, console=_stderr(),
                                         split=split, allow_eval_split=allow_eval_split, vad=vad)
            return
        train_audio_command(data=data, out=out, corpus=corpus,
                            test_speakers=[s for s in test_speakers.split(",") if s.strip()],
                            feature_set=None if feature_set is None else feature_set.value, balanced=balanced,
                            augment=augment, repeats=repeats,
                            seed=seed, workers=workers, cache=cache, console=_stderr(),
                            speaker_norm=speaker_norm, vad=vad,
                            perturbations=tuple(p.strip() for p in perturb.split(",") if p.strip()))
    except _emo_errors() as exc:
        raise fail(str(exc)) from None


def _emo_errors():
    from emocli.errors import EmoError

    return EmoError


FuseMethod = _choices("FuseMethod", *FUSE_METHODS)
FaceMode = _choices("FaceMode", "main", "all")
OutFormat = _choices("OutFormat", "table", "json", "csv")
FuseRule = _choices("FuseRule", *FUSE_RULES)


@app.command("fuse", epilog="\b\nExamples:\n  emo fuse runs/bundle --method confusion --rule product\n  emo fuse runs/bundle --method feature-svm --features runs/afew_feats --split Train\n")
def fuse(
    model: Annotated[Path, typer.Argument(help="Bundle folder holding a face and a voice model.")],
    method: Annotated[FuseMethod, typer.Option(help="equal (0.5/0.5), confusion (per-emotion weights from "
                                                    "validation recall), learned (logistic regression on the two "
                                                    "score vectors), feature-svm / feature-dense (face features + "
                                                    "68 voice statistics -> PCA 68 -> SVM or dense 14 + softmax).")
                      ] = FuseMethod(DEFAULT_FUSE_METHOD),
    features: Annotated[Optional[Path], typer.Option(help="`emo extract` output to fit learned/feature methods on.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Fit on this split of the extracted items only.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    rule: Annotated[FuseRule, typer.Option(help="How the weighted scores combine: sum (the thesis's weighted sum) "
                                                "or product (log-linear: a weighted product of the two calibrated "
                                                "probability vectors).")] = FuseRule(DEFAULT_FUSE_RULE),
) -> None:
    """Set how face and voice are combined, and save it into the bundle."""
    from emocli.errors import EmoError
    from emocli.train.fusion import fuse_command

    try:
        fuse_command(bundle=model, method=method.value, features=features, split=split, seed=seed,
                     console=_stderr(), rule=FuseRule(rule).value)
    except EmoError as exc:
        raise fail(str(exc)) from None


@app.command("tune-views", epilog="\b\nExamples:\n  emo tune-views runs/face ../shared/data/fer2013/train\n  emo tune-views runs/face ../shared/data/fer2013/train --write\n")
def tune_views(
    model: Annotated[Path, typer.Argument(help="Face bundle made by `emo train-video`.")],
    data: Annotated[Path, typer.Argument(help="The folder the bundle was trained on (its held-out part is rebuilt "
                                              "from face.json).")],
    write: Annotated[bool, typer.Option("--write", help="Store the best views in face.json and refresh the "
                                                        "manifest.")] = False,
) -> None:
    """Choose the face model's test-time views (mirror, zoom, shifts) on held-out training images."""
    from emocli.train.tuning import tune_views_command

    try:
        tune_views_command(bundle=model, data=data, write=write, console=_stderr())
    except _emo_errors() as exc:
        raise fail(str(exc)) from None


ExpertsBundleOpt = Annotated[Optional[Path], typer.Option(
    "--model", "-m", show_default=False, help="Bundle with both face experts [default: the shipped bundle].")]


def _or_shipped(model: Optional[Path]) -> Path:
    """``model``, or the shipped bundle when it is None (resolved at run time: the CLI imports no bundle code)."""
    if model is not None:
        return model
    from emocli.bundle import DEFAULT_BUNDLE

    return DEFAULT_BUNDLE


@app.command("train-head", epilog="\b\nExamples:\n  emo train-head ../shared/data\n  emo train-head ../shared/data --model mybundle --write\n")
def train_head(
    data: Annotated[Path, typer.Argument(help="The folder holding affectnet/train, sfew/Train and rafdb/train "
                                              "(../shared/data): their training parts train the head, the halves "
                                              "`emo calibrate-experts` holds out choose C and the temperature.")],
    model: ExpertsBundleOpt = None,
    cache: Annotated[Path, typer.Option(callback=_cache_folder,
                                        help="Feature cache, keyed by the bundle's face network (resumable).")] = Path(
        "runs/face_head"),
    reuse_embeddings: Annotated[Optional[Path], typer.Option(help="Read the MobileFaceNet's outputs from this cache "
                                                                  "folder (the same faces): only emo-cnn runs.",
                                                             show_default=False)] = None,
    write: Annotated[bool, typer.Option("--write", help="Store the head (face_head.npz, named in experts.json) and "
                                                        "refresh the manifest.")] = False,
) -> None:
    """Fit the face head (a softmax layer on both face experts' features) on colour face corpora."""
    from emocli.train.head import HeadArgs, run

    try:
        run(HeadArgs(data=data, bundle=_or_shipped(model), cache=cache, reuse_embeddings=reuse_embeddings,
                     write=write))
    except _emo_errors() as exc:
        raise fail(str(exc)) from None


@app.command("tune-prior", epilog="\b\nExamples:\n  emo tune-prior runs/face ../shared/data/fer2013/train\n  emo tune-prior runs/face ../shared/data/fer2013/train --write\n")
def tune_prior(
    model: Annotated[Path, typer.Argument(help="Face bundle made by `emo train-video`.")],
    data: Annotated[Path, typer.Argument(help="The folder the bundle was trained on (its held-out part is rebuilt "
                                              "from face.json; its class shares are the prior).")],
    write: Annotated[bool, typer.Option("--write", help="Store the chosen adjustment in face.json and refresh the "
                                                        "manifest.")] = False,
    max_accuracy_loss: Annotated[float, typer.Option(callback=_number(0.0, 1.0), help="Held-out accuracy a "
                                                     "stronger adjustment may cost.")] = 0.005,
) -> None:
    """Choose the face network's class-prior adjustment (logit adjustment) on held-out training images."""
    from emocli.train.tuning import tune_prior_command

    try:
        tune_prior_command(bundle=model, data=data, write=write, console=_stderr(),
                           max_accuracy_loss=max_accuracy_loss)
    except _emo_errors() as exc:
        raise fail(str(exc)) from None


@app.command("calibrate-experts", epilog="\b\nExamples:\n  emo calibrate-experts ../shared/data\n  emo calibrate-experts ../shared/data --model mybundle --write\n")
def calibrate_experts(
    data: Annotated[Path, typer.Argument(help="The folder holding affectnet/train, sfew/Train and fer2013/val "
                                              "(../shared/data): a fixed share of AffectNet and SFEW, which neither "
                                              "network trained on, is held out and halved into calib and test.")],
    model: ExpertsBundleOpt = None,
    cache: Annotated[Path, typer.Option(callback=_cache_folder,
                                        help="Per-image score cache, keyed by the bundle's face network.")] = Path(
        "runs/face_experts"),
    write: Annotated[bool, typer.Option("--write", help="Store the temperatures and weights in experts.json and "
                                                        "refresh the manifest.")] = False,
) -> None:
    """Fit the face experts' temperatures and weights on held-out faces new to both networks."""
    from emocli.train.calibration import calibrate_experts as run

    try:
        run(data, _or_shipped(model), cache=cache, write=write, console=_stderr())
    except _emo_errors() as exc:
        raise fail(str(exc)) from None


@app.command("ensemble", epilog="\b\nExamples:\n  emo ensemble runs/face2 runs/face3 ../shared/data/fer2013/train --out runs/face23 --write\n")
def ensemble(
    a: Annotated[Path, typer.Argument(help="First face bundle (its views and face.json are kept).")],
    b: Annotated[Path, typer.Argument(help="Second face bundle, trained on DATA with the same held-out part.")],
    data: Annotated[Path, typer.Argument(help="The folder both bundles were trained on.")],
    out: Annotated[Path, typer.Option("--out", "-o", callback=_out_folder, help="Bundle folder to write the averaged network into.",
                                      show_default=False)] = ...,
    write: Annotated[bool, typer.Option("--write", help="Save the average when it beats both members on the "
                                                        "held-out images.")] = False,
) -> None:
    """Average two face networks into one, if that helps on held-out training images."""
    from emocli.train.tuning import ensemble_command

    try:
        ensemble_command(a=a, b=b, data=data, out=out, write=write, console=_stderr())
    except _emo_errors() as exc:
        raise fail(str(exc)) from None


@app.command("refresh-bn", epilog="\b\nExamples:\n  emo refresh-bn runs/face ../shared/data/fer2013/train --out runs/face_bn --write\n")
def refresh_bn(
    model: Annotated[Path, typer.Argument(help="Face bundle trained by `emo train-video` on DATA.")],
    data: Annotated[Path, typer.Argument(help="The folder the bundle was trained on.")],
    out: Annotated[Path, typer.Option("--out", "-o", callback=_out_folder, help="Bundle folder to write the refreshed network into.",
                                      show_default=False)] = ...,
    write: Annotated[bool, typer.Option("--write", help="Save it when it beats the bundle on the held-out "
                                                        "images.")] = False,
) -> None:
    """Re-estimate the face network's BatchNorm statistics on its un-augmented training faces."""
    from emocli.train.tuning import refresh_bn_command

    try:
        refresh_bn_command(bundle=model, data=data, out=out, write=write, console=_stderr())
    except _emo_errors() as exc:
        raise fail(str(exc)) from None


@app.command("predict", epilog="\b\nExamples:\n  emo predict clip.avi\n  emo predict clips/ --json > results.jsonl\n  find corpus -name '*.avi' | emo predict - --workers 2 > results.jsonl\n  emo predict interview.mp4 --window 2 --face-experts emo-cnn\n  ffmpeg -re -i talk.mp4 -f mpegts - | emo predict - --window 2\n  emo predict rtsp://camera.local/stream --window 2 -o live.csv --plot timeline.png\n")
@scoring_options
def predict(
    inputs: Annotated[list[str], typer.Argument(help="Video, image or audio files, folders, or - to read "
                                                     "paths (one per line) or media bytes from stdin.",
                                                show_default=False)],
    model: ModelOpt = None,
    json_out: Annotated[Optional[bool], typer.Option("--json/--table", help="JSON lines or Rich tables "
                                                     "[default: a table on a terminal, JSON lines otherwise].",
                                                     show_default=False)] = None,
    out_format: Annotated[Optional[OutFormat], typer.Option(
        "--format", help="table, json (JSON lines) or csv (one header, then a row per segment and per result) "
                         "[default: a table on a terminal, JSON lines otherwise; with -o FILE.csv, csv].",
        show_default=False)] = None,
    frames: Annotated[bool, typer.Option(
        "--frames", help="Also write a line (CSV row) per scored frame: time, face box (x0, y0, x1, y1 in the "
                         "input's pixels) and face scores; JSON or CSV only.")] = False,
    plot: Annotated[Optional[Path], typer.Option(
        help="With --window: write a PNG of the fused scores over time (stacked, one colour per emotion; "
             "windows without a face or a voice hatched), one panel per input, when the run ends.",
        show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write the results (JSON lines or CSV) to this file instead of stdout; it is "
                               "written under a temporary name and renamed when the run ends (Ctrl-C too).",
        show_default=False)] = None,
    scoring: ScoringOpts = None,
    modality: ModalityOpt = Modality.both,
    max_seconds: Annotated[Optional[float], typer.Option(callback=_number(0.1, 1e6), help="Analyse at most this many "
                                                         "seconds of each input (0.1 to 1e6).")] = None,
    window: Annotated[Optional[float], typer.Option(callback=_number(0.5, 86400.0), help="Also score consecutive segments of this many "
                                                               "seconds (JSON: lines with \"segment\").")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, show_default=False, help="Worker processes that decode, "
                                                   "find faces and compute voice features in parallel, feeding one "
                                                   f"model [default: {WORKERS_DEFAULT}; 1 for paths on stdin].")] = None,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    submission: Annotated[Optional[Path], typer.Option(help="Also write the EmotiW submission layout here: one "
                                                          "<clip>.txt per input holding its label (Angry, ..., Surprise).")
                          ] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first input that fails.")] = False,
    speaker_of: Annotated[Optional[str], typer.Option(
        "--speaker-of", help="Speaker-adaptive voice scoring for a bulk run: a REGEX that finds the speaker in each "
        "input's name (its 'speaker' group, else group 1, else the match; e.g. '(\\d{4})_' for CREMA-D) or a CSV "
        "file with path,speaker columns. Each voice is scored against its speaker's own mean and spread over the "
        "run (speakers with at least 6 clips). Results come when every input is scored, in input order.",
        show_default=False)] = None,
    adapt: Annotated[bool, typer.Option(
        "--adapt", help="Speaker-adaptive voice scoring of --window segments and live streams: once 20 s of voiced "
        "windows are in, each window's voice is scored against the stream's running mean and spread (\"adapted\" "
        "in each segment line). For one person per stream.")] = False,
    annotate: Annotated[Optional[Path], typer.Option(
        help="Also write the input video again with each scored face's box and label and a bar chart of the "
             "fused scores, held from each scored frame to the next; same size, rate and sound (.mp4, .mov or "
             ".mkv; a still image: .png or .jpg). One input file.", show_default=False)] = None,
    faces: Annotated[FaceMode, typer.Option(
        help="main: score the main speaker's face in each frame (a note counts the other faces seen); all: "
             "also score every other face large enough, linked into tracks across frames, with a result per "
             "track (JSON \"faces\"; a table column each). The fused result stays the main face's.")
    ] = FaceMode.main,
    input_options: Annotated[Optional[str], typer.Option(
        "--input-options", callback=_input_options,
        help="ffmpeg input options for live inputs (pipes, URLs, devices), e.g. \"-f v4l2 -framerate 30 "
             "-video_size 640x480\" for a webcam (/dev/videoN gets -f v4l2 by itself).", show_default=False)] = None,
) -> None:
    """Score the seven emotions in each input: face, voice and the two fused.

    Live inputs (- with media bytes, FIFOs, URLs such as rtsp:// or https://, /dev/videoN) are
    decoded in one pass as they arrive; with --window each segment is written as soon as its
    window has closed. Ctrl-C ends a live stream and still writes its result (exit 130).

    Exit code 0 when every input succeeded, 1 when any failed (each failure is still a
    result line with "status": "error"), 2 for bad usage, 130 when interrupted.
    """
    from emocli.errors import EmoError
    from emocli.pipeline.core import Pipeline

    err = _stderr()
    live_opts = tuple(input_options or ())
    fmt = _output_format(out_format, json_out, output)
    as_json = fmt != "table"
    if frames and not as_json:
        raise typer.BadParameter("per-frame lines are for scripts: add --format csv, --json or -o FILE",
                                 param_hint="--frames")
    if plot is not None and not window:
        raise typer.BadParameter("the timeline is drawn from the segments: add --window SECONDS",
                                 param_hint="--plot")
    source = None if annotate is None else _annotate_source(inputs)
    _check_predict_outputs(inputs, output=output, plot=plot, annotate=annotate, submission=submission)
    opts = _pipeline_options(**scoring, modality=modality, max_seconds=max_seconds, window=window,
                             frames=frames or source is not None, adapt=adapt, faces=FaceMode(faces).value)
    rule = None
    if (speaker_of is not None or adapt) and modality == Modality.face:
        raise typer.BadParameter(f"{'--speaker-of' if speaker_of is not None else '--adapt'} adapts the voice; it "
                                 "cannot be used with --modality face")
    if speaker_of is not None:
        from emocli.voice.speaker import SpeakerRule

        try:
            rule = SpeakerRule(speaker_of)
        except EmoError as exc:  # a CSV that cannot be read (before ValueError: it is one)
            raise fail(str(exc)) from None
        except ValueError as exc:  # a malformed regular expression: a usage error
            raise typer.BadParameter(str(exc)) from None
    try:
        # with Ray the workers load the face network; here only check the bundle
        pipe = Pipeline(model, opts, role="prepare" if ray or ray_address else "full")
        adapting = "--speaker-of" if rule is not None else "--adapt" if adapt else None
        if adapting and not (pipe.has_voice and pipe.voice.has_speaker_model):
            raise fail(f"{pipe.bundle}: this bundle has no speaker-normalised voice model for {adapting}; "
                       "retrain it with `emo train-audio ... --speaker-norm`, or use the shipped bundle")
        if adapting:
            pipe.voice.speaker_model  # a damaged voice_speaker.* fails here, before any input is decoded
    except EmoError as exc:
        raise fail(str(exc)) from None
    out_console = None
    if not as_json:
        from rich.console import Console

        out_console = Console()
        out_console.on_broken_pipe = _broken_pipe  # Rich's own handler exits with 1
    from emocli.report.output import LineWriter, Timeline

    sink = None if output is None else _OutputFile(output)
    writer = LineWriter(fmt, sink.fh if sink is not None else None) if as_json else None
    timeline = Timeline() if plot is not None else None
    try:
        _predict_run(pipe, opts, inputs, live_opts=live_opts, writer=writer, out_console=out_console, err=err,
                     ray=ray, ray_address=ray_address, workers=workers, submission=submission, fail_fast=fail_fast,
                     timeline=timeline, rule=rule, annotate=None if source is None else (source, annotate),
                     frames=frames)
    finally:  # however the run ends (Ctrl-C, a failed input), what was computed is kept
        failed = False
        if sink is not None:
            try:
                sink.close()
                err.print(f"wrote {output}", markup=False)
            except typer.Exit:  # its one line is printed
                failed = True
        if timeline is not None:
            from emocli.report.output import plot_timeline

            try:
                plot_timeline(timeline, plot)
                err.print(f"wrote {plot}", markup=False)
            except EmoError as exc:
                fail(str(exc))
                failed = True
        if failed:
            raise typer.Exit(1)


def _check_predict_outputs(inputs: list[str], **outputs: Optional[Path]) -> None:
    """predict's outputs, before any work: none may be an input file (or an existing media file of an input
    folder), two may not name one file, and each must be writable (exit 1 with one line otherwise)."""
    from emocli.errors import OutputError
    from emocli.files import check_outputs
    from emocli.media.ffmpeg import MEDIA_EXTS

    files = [Path(i) for i in inputs if i != "-" and Path(i).is_file()]
    folders = [Path(i) for i in inputs if i != "-" and Path(i).is_dir()]
    names = {"output": "-o", "plot": "--plot", "annotate": "--annotate"}
    try:
        check_outputs({names[k]: v for k, v in outputs.items() if k in names},
                      folders={"--submission": outputs.get("submission")}, inputs=files, input_folders=folders,
                      media_exts=MEDIA_EXTS)
    except OutputError as exc:
        raise fail(str(exc)) from None


def _output_format(out_format: "OutFormat | None", json_out: Optional[bool], output: Optional[Path]) -> str:
    """table, json or csv, from --format, --json/--table and -o's file extension (bad usage when they clash)."""
    if out_format is not None and json_out is not None and out_format != (OutFormat.json if json_out else OutFormat.table):
        raise typer.BadParameter(f"--format {out_format.value} contradicts --{'json' if json_out else 'table'}; "
                                 "give one of them")
    fmt = out_format.value if out_format is not None else None
    if fmt is None and json_out is not None:
        fmt = "json" if json_out else "table"
    if output is not None:
        if fmt == "table":
            raise typer.BadParameter("a table is for the terminal: with -o use --format json or csv",
                                     param_hint="--output")
        return fmt or ("csv" if output.suffix.lower() == ".csv" else "json")
    return fmt or ("table" if sys.stdout.isatty() else "json")


class _OutputFile:
    """-o FILE: results go to a temporary file beside it, renamed onto it when the run ends, however it ends,
    so a reader never sees a torn file and nothing computed is lost (Ctrl-C on a live stream included)."""

    def __init__(self, target: Path):
        from emocli.files import is_special, temporary_beside, write_error

        self.target = target
        self.tmp = None  # a device or FIFO (-o /dev/null) is written directly, never replaced
        try:
            if is_special(target):
                self.fh = open(target, "w", encoding="utf-8", newline="")
            else:
                fd, self.tmp = temporary_beside(target)
                self.fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise fail(str(write_error(target, exc))) from None

    def close(self) -> None:
        """Flush and rename into place; a failed write (a full disk) is one line naming the file, exit 1."""
        from emocli.files import publish, write_error

        try:
            self.fh.close()
            if self.tmp is not None:
                publish(self.tmp, self.target)
        except OSError as exc:
            if self.tmp is not None and self.tmp.exists():
                self.tmp.unlink()
            raise fail(str(write_error(self.target, exc))) from None


def _predict_run(pipe, opts, inputs, *, live_opts, writer, out_console, err, ray, ray_address, workers, submission,
                 fail_fast, timeline, rule=None, annotate=None, frames=False) -> None:
    """The predict loop: inputs in, a line (or table) per segment and per result out.

    ``annotate``: (input file, output file) of ``--annotate``, written once the result is out;
    ``frames``: whether per-frame lines were asked for (``--annotate`` needs them either way).
    """
    from emocli.runners.pool import run_bulk
    from emocli.errors import EmoError
    from emocli.media.inputs import expand_inputs

    as_json = writer is not None
    view = None
    from emocli.report.output import ProgressBar

    # the number of inputs (folders walked once): the progress bar's total, and --workers' default
    n_inputs = _count_inputs(inputs) if err.is_terminal or workers is None else None
    total = n_inputs if err.is_terminal else None
    # a live input's panel (LiveView) has the terminal to itself when the results go there
    bar = ProgressBar(err, total, show=total is not None or not sys.stdout.isatty())
    if ray or ray_address:
        from emocli.media.inputs import files_only
        from emocli.runners.ray import ray_predict

        try:
            results = ray_predict(pipe.bundle, opts, files_only(expand_inputs(inputs, input_options=live_opts),
                                                                "is read on this machine: run it without --ray"),
                                  address=ray_address)
        except EmoError as exc:
            bar.close()
            raise fail(str(exc)) from None
    else:
        from emocli.report.output import LiveView, segment_line

        view = LiveView(out_console) if out_console is not None and out_console.is_terminal else None

        def on_segment(name: str, seg: dict) -> None:
            if timeline is not None:
                timeline.add(name, seg)
            if as_json:
                _emit(writer.write, {"file": name, "segment": seg})
            elif view is not None:
                _emit(view.segment, name, seg)
            else:
                _emit(segment_line, seg, console=out_console)

        def on_frame(name: str, frame: dict) -> None:
            _emit(writer.write, {"file": name, "frame": frame})

        results = run_bulk(pipe, expand_inputs(inputs, input_options=live_opts), workers=_workers(workers, n_inputs),
                           on_segment=on_segment, on_frame=on_frame, stop=_STREAM_STOP, on_progress=bar.media)
    if rule is not None:
        from emocli.voice.speaker import adapt_results

        results = adapt_results(pipe, results, rule)
    kept: list = []
    if annotate is not None:
        results = _keep_frames(results, kept, show=frames)
    shown, written = [], {}
    try:
        failed = _print_results(results, bar=bar, err=err, writer=writer, out_console=out_console,
                                submission=submission, fail_fast=fail_fast, shown=shown, written=written,
                                timeline=timeline, view=view)
    finally:
        bar.close()
        if view is not None:
            view.stop()
    if len(shown) > 1:  # a table run over several inputs ends with one line per input
        from emocli.report.output import summary_table

        _emit(summary_table, shown, console=out_console)
    if _STREAM_STOP.is_set():  # Ctrl-C ended a live stream: its result is out, now exit as interrupted
        raise _Interrupted()
    if annotate is not None and kept and kept[0].status == "ok":
        _write_annotation(kept[0], *annotate, pipe=pipe, opts=opts, err=err)
    if failed:
        raise typer.Exit(1)


def _annotate_source(inputs: list[str]) -> Path:
    """--annotate: the one input file it draws on; any other input is an error (exit 1) before anything runs."""
    from emocli.media.inputs import expand_inputs
    from emocli.media.live import LiveSource

    what = "draws on one video (or image) file"
    if len(inputs) != 1:
        raise fail(f"--annotate {what}, and {len(inputs)} inputs were given; run `emo predict FILE --annotate "
                   "OUT.mp4` once per file")
    arg = inputs[0]
    if arg == "-" or Path(arg).is_dir() or any(isinstance(src, LiveSource) for _, src, _ in expand_inputs([arg])):
        raise fail(f"{'<stdin>' if arg == '-' else arg}: --annotate {what}, not a folder, stdin or a live stream; "
                   "save the stream to a file first (ffmpeg -i URL -t 60 clip.mp4) and annotate that")
    return Path(arg)


def _keep_frames(results, kept: list, *, show: bool):
    """Pass results on, keeping each in ``kept`` (its frame records feed --annotate); without --frames their
    frame lines are not printed."""
    import dataclasses

    for res in results:
        kept.append(res)
        yield res if show else dataclasses.replace(res, frames=None)


def _write_annotation(res, source: Path, target: Path, *, pipe, opts, err) -> None:
    """--annotate: draw ``res`` on ``source`` into ``target``; a failure is one line and exit 1 (the result is
    already out)."""
    from emocli.report.annotate import annotate
    from emocli.errors import EmoError
    from emocli.report.output import ProgressBar

    bar = ProgressBar(err, 1)
    try:
        annotate(source, target, res, pipe.fusion, fps=opts.fps, max_seconds=opts.max_seconds,
                 progress=lambda done, total: bar.media(res.file, "annotate", done, total))
    except EmoError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{target}: cannot write the annotated video there ({exc.strerror or exc}); choose a folder "
                   "you can write to") from None
    finally:
        bar.close()
    err.print(f"wrote {target}", markup=False)


def _count_inputs(inputs: list[str]) -> int | None:
    """How many inputs a run has, when that is cheap to know (files and folders; not stdin or pipes)."""
    from emocli.media.inputs import expand_inputs

    paths = [Path(a) for a in inputs]
    if any(a == "-" for a in inputs) or not all(p.is_file() or p.is_dir() for p in paths):
        return None
    return sum(1 for _ in expand_inputs(inputs))


def _print_results(results, *, bar, err, writer, out_console, submission, fail_fast, shown, written,
                   timeline=None, view=None) -> int:
    """Write each result as it comes (JSON line, CSV row or table), its error on stderr; return how many failed."""
    failed = 0
    for res in results:
        if view is not None:
            view.stop()  # a live stream's panel gives way to its result table
        bar.advance(res.file)
        with bar.paused():
            failed += _print_result(res, err=err, writer=writer, out_console=out_console, submission=submission,
                                    shown=shown, written=written, timeline=timeline)
        if failed and fail_fast:
            break
    return failed


def _print_result(res, *, err, writer, out_console, submission, shown, written, timeline) -> int:
    """One result's lines (or table), its error on stderr; 1 if it failed (or its submission file clashed)."""
    from rich.markup import escape

    from emocli.report.output import printable, result_table

    failed = 0
    if res.status != "ok":
        failed += 1
        err.print(f"[red]error:[/red] {escape(printable(res.error or ''))}")
    if submission is not None and res.status == "ok":
        from emocli.report.output import submission_name, write_submission

        name = submission_name(res)
        if name in written:  # two inputs of one name in different folders: never overwrite the first
            failed += 1
            err.print(f"[red]error:[/red] {escape(printable(res.file))}: its submission file {name} was already "
                      f"written for {escape(printable(written[name]))}; rename one of them or run them "
                      "separately (its result line is still printed)")
        else:
            from emocli.errors import EmoError

            written[name] = res.file
            try:
                write_submission(submission, res)
            except EmoError as exc:  # a full disk mid-run: said, and the result line still follows
                failed += 1
                err.print(f"[red]error:[/red] {escape(printable(str(exc)))} (its result line is still printed)")
    if timeline is not None:
        for seg in res.segments or []:
            timeline.add(res.file, seg)
    if writer is not None:
        for frame in res.frames or []:
            _emit(writer.write, {"file": res.file, "frame": frame})
        for seg in res.segments or []:
            _emit(writer.write, {"file": res.file, "segment": seg})
        _emit(writer.write, res.to_json())
    else:
        from emocli.report.output import segment_line

        for seg in res.segments or []:
            _emit(segment_line, seg, console=out_console)
        _emit(result_table, res, console=out_console)
        shown.append(res)
    return failed


@app.command("evaluate", epilog="\b\nExamples:\n  emo evaluate AFEW --split Val --plot cm.png --predictions val.csv\n  emo evaluate ../shared/data/fer2013/val --no-detect --modality face --json\n")
@scoring_options
def evaluate(
    dataset: Annotated[Path, typer.Argument(help="Labelled corpus folder (AFEW, image folders, RAVDESS, CREMA-D, "
                                                 "TESS, SAVEE, EmoDB) or a CSV manifest.")],
    split: CorpusSplitOpt = None,
    layout: LayoutOpt = None,
    model: ModelOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object on stdout.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG here: row-normalised confusion matrices of "
                                                      "the modalities that ran and their per-class recall.")] = None,
    report_path: Annotated[Optional[Path], typer.Option("--report", help="Also write the JSON report to this file.")] = None,
    predictions: Annotated[Optional[Path], typer.Option(help="Write one CSV row per item here: true label, face, "
                                                             "voice and fused label and scores, notes.",
                                                        show_default=False)] = None,
    scoring: ScoringOpts = None,
    modality: ModalityOpt = Modality.both,
    speaker_norm: Annotated[bool, typer.Option(help="Also score each voice against its speaker's own mean and "
                                                    "spread over the evaluated items (speakers named by the corpus "
                                                    "layout or the manifest's speaker column; labels unused). The "
                                                    "report's figures are then the adapted ones (\"adaptation\": "
                                                    "\"speaker\"), the unadapted ones under \"plain\".")] = False,
    workers: Annotated[Optional[int], typer.Option(min=1, show_default=False, help="Worker processes that decode, "
                                                   "find faces and compute voice features in parallel, feeding one "
                                                   f"model, capped at the CPU count [default: {WORKERS_DEFAULT}].")
                       ] = None,
) -> None:
    """Accuracy, UAR, macro-F1, per-class recall and confusion matrices for face, voice and fused."""
    import json

    from emocli.files import atomic_write_text
    from emocli.corpus.layouts import load_corpus
    from emocli.errors import EmoError
    from emocli.runners.evaluate import evaluate_items, metrics_table, plot_confusions, select_split, training_overlap
    from emocli.pipeline.core import Pipeline

    err = _stderr()
    try:
        items = select_split(load_corpus(dataset, layout), split)
        opts = _pipeline_options(**scoring, modality=modality)
        pipe = Pipeline(model, opts)
        if speaker_norm:
            if not (pipe.has_voice and pipe.voice.has_speaker_model):
                raise fail(f"{pipe.bundle}: this bundle has no speaker-normalised voice model for --speaker-norm; "
                           "retrain it with `emo train-audio ... --speaker-norm`, or use the shipped bundle")
            pipe.voice.speaker_model  # a damaged voice_speaker.* fails here, before any item is scored
            if not any(it.speaker for it in items):
                raise fail(f"{dataset}: no item names its speaker, so --speaker-norm has nothing to adapt to; use a "
                           "corpus layout with speakers (RAVDESS, CREMA-D, EmoDB, SAVEE, TESS) or a manifest with "
                           "a speaker column")
        from emocli.files import check_outputs
        from emocli.media.ffmpeg import MEDIA_EXTS

        check_outputs({"--report": report_path, "--predictions": predictions, "--plot": plot},
                      inputs=[dataset, *(it.path for it in items)] if dataset.is_file() else [it.path for it in items],
                      input_folders=[dataset] if dataset.is_dir() else [], media_exts=MEDIA_EXTS)
    except EmoError as exc:
        raise fail(str(exc)) from None
    from tqdm import tqdm

    with tqdm(total=len(items), desc="evaluate", unit="item", file=sys.stderr, disable=not err.is_terminal) as bar:
        ev = evaluate_items(items, pipe, progress=lambda i, n: bar.update(i - bar.n), speaker_norm=speaker_norm,
                            workers=_workers(workers, len(items)))
    report = ev.report()
    from rich.markup import escape

    try:
        overlap, seen = training_overlap(pipe.bundle, items, dataset.parent if dataset.is_file() else dataset)
    except EmoError as exc:
        raise fail(str(exc)) from None
    report.update({"dataset": str(dataset), "split": split, "model": str(pipe.bundle), "training_overlap": overlap,
                   "unseen": None})
    for mod in ("face", "voice"):
        parts = [(name, o) for name, o in overlap.items() if o["modality"] == mod]
        if not parts or mod not in report["modalities"]:
            continue
        what = ", ".join(f"{name} {o['n']}" for name, o in parts)
        err.print(f"[yellow]warning:[/yellow] the bundle's {mod} model has seen {len(seen[mod])} of the {len(items)} "
                  f"item(s) scored ({escape(what)}; e.g. {escape(parts[0][1]['files'][0])}): its figures on them "
                  "measure memory, not generalisation; the figures on the unseen items are under \"unseen\"")
    if any(seen.values()):
        from emocli.runners.evaluate import unseen_report

        report["unseen"] = unseen_report(report, seen)
    from emocli.runners.evaluate import predictions_csv

    written_ok = True
    for path, write in ((report_path, lambda p: atomic_write_text(p, json.dumps(report, indent=2) + "\n")),
                        (predictions, lambda p: atomic_write_text(p, predictions_csv(report))),
                        (plot, lambda p: plot_confusions(report, p))):
        if path is None:
            continue
        try:  # a full disk or a vanished folder: one line, and the report still reaches stdout
            write(path)
            err.print(f"wrote {path}", markup=False)
        except EmoError as exc:
            fail(str(exc))
            written_ok = False
    if json_out:
        print(json.dumps(report))
    else:
        from rich.console import Console

        from rich.markup import escape

        title = escape(f"{dataset}" + (f" [{split}]" if split else ""))
        if report["adaptation"]:
            a = report["speaker_adaptation"]
            metrics_table({"labels": report["labels"], "n_failed": 0, "n_items": report["n_items"], **report["plain"]},
                          console=Console(),
                          title=f"{title}: without speaker adaptation")
            title += (f": speaker-adapted voice ({a['n_adapted']} item(s) of {len(a['speakers_adapted'])} "
                      f"speaker(s) with >= {a['min_clips']} voiced clips)")
        metrics_table(report, title=title, console=Console())
        if report["unseen"]:
            u = report["unseen"]
            n = {m: u[m]["n_seen"] for m in report["modalities"]}
            metrics_table({"labels": report["labels"], "n_failed": 0, "n_items": report["n_items"], **u},
                          console=Console(), title=f"{title}: items the bundle has not seen (left out: "
                          + ", ".join(f"{m} {k}" for m, k in n.items()) + ")")
    if report["n_failed"] or not written_ok:
        raise typer.Exit(1)


@app.command("extract", epilog="\b\nExamples:\n  emo extract AFEW --out runs/afew_feats --workers 2\n  emo extract AFEW --out runs/afew_feats --resume\n")
@scoring_options
def extract(
    dataset: Annotated[Path, typer.Argument(help="Labelled corpus folder or CSV manifest (see `emo evaluate`).")],
    out: Annotated[Path, typer.Option("--out", "-o", callback=_out_folder, help="Output folder (items/*.npz + index.csv).")],
    split: CorpusSplitOpt = None,
    layout: LayoutOpt = None,
    model: ModelOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted extraction: skip finished items.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="With --resume, redo items that failed.")] = False,
    workers: Annotated[Optional[int], typer.Option(min=1, show_default=False, help="Parallel worker processes "
                                                   f"[default: {WORKERS_DEFAULT}].")] = None,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    scoring: ScoringOpts = None,
) -> None:
    """Extract face features (fc2), per-frame face scores and voice statistics for every item."""
    from emocli.bundle import DEFAULT_BUNDLE, verify_bundle
    from emocli.corpus.layouts import load_corpus
    from emocli.errors import EmoError
    from emocli.runners.evaluate import select_split
    from emocli.runners.extract import check_out_dir, lock_out_dir, settings_for

    err = _stderr()
    bundle = model or DEFAULT_BUNDLE
    opts = _pipeline_options(**scoring, keep_frames=True)
    lock = None  # the output folder's lock, held until this command ends
    try:
        items = select_split(load_corpus(dataset, layout), split)
        manifest = verify_bundle(bundle)
        lock = lock_out_dir(out)
        check_out_dir(out, settings_for(dataset, layout, split, bundle, manifest, opts), resume=resume)
    except EmoError as exc:
        if lock is not None:
            lock.close()
        raise fail(str(exc)) from None
    try:
        _extract_locked(items, dataset=dataset, out=out, bundle=bundle, opts=opts, ray=ray, ray_address=ray_address,
                        workers=workers, retry_failed=retry_failed, err=err)
    finally:
        lock.close()


def _extract_locked(items, *, dataset, out, bundle, opts, ray, ray_address, workers, retry_failed, err) -> None:
    """The extraction itself, once the output folder is locked and checked."""
    import json

    from emocli.errors import EmoError
    from emocli.runners.extract import run_extraction
    from tqdm import tqdm

    root = dataset.parent if dataset.is_file() else dataset
    with tqdm(total=len(items), desc="extract", unit="item", file=sys.stderr, disable=not err.is_terminal) as bar:
        try:
            if ray or ray_address:
                from emocli.runners.ray import ray_extract

                summary = ray_extract(items, root=root, out=out, bundle=bundle, options=opts, address=ray_address,
                                      retry_failed=retry_failed, progress=lambda row: bar.update(1))
            else:
                summary = run_extraction(items, root=root, out=out, bundle=bundle, options=opts,
                                         workers=_workers(workers, len(items)),
                                         retry_failed=retry_failed, progress=lambda row: bar.update(1))
        except EmoError as exc:
            raise fail(str(exc)) from None
    reasons = ", ".join(f"{k}: {v}" for k, v in summary["failed_by_reason"].items())
    err.print(f"extract: {summary['items']} items: {summary['done']} done, {summary['skipped']} already finished, "
              f"{summary['failed']} failed{f' ({reasons})' if reasons else ''}; "
              f"{summary['face_only']} face only (no voice), {summary['voice_only']} voice only (no face)")
    for f in summary["failures"][:10]:
        err.print(f"  [red]failed[/red] {f['error']}")
    print(json.dumps(summary))
    if summary["failed"]:
        raise typer.Exit(1)


class _Interrupted(BaseException):
    """Ctrl-C or SIGTERM. A BaseException of our own so that Click does not turn it into "Aborted!" + exit 1."""


class _PipeClosed(BaseException):
    """stdout was closed by the reader (`emo predict ... | head -1`)."""


class _StdoutFailed(BaseException):
    """stdout cannot take the results (a full disk): one line on stderr, exit 1."""


class _StreamStop(threading.Event):
    """Set by Ctrl-C to end the live stream being read; ``live`` says whether one is being read now."""

    live = False


_STREAM_STOP = _StreamStop()


_SIGNAL = {"received": None}  # the signal that stopped the run: SIGINT (Ctrl-C) or SIGTERM (kill, timeout, a scheduler)


def _on_signal(signum, frame):
    """Ctrl-C and SIGTERM stop a run the same way: what is finished is written (``-o`` renamed into
    place), a live stream first ends and writes its result; a second signal stops at once."""
    _SIGNAL["received"] = signum
    if _STREAM_STOP.live and not _STREAM_STOP.is_set():
        _STREAM_STOP.set()  # the stream's segments and result are still written; a second Ctrl-C stops at once
        return
    raise _Interrupted()


def _broken_pipe() -> None:
    raise BrokenPipeError()


def _emit(write, *args, **kwargs) -> None:
    """Write a result; a closed stdout ends the run quietly, a failing one with one line."""
    try:
        write(*args, **kwargs)
    except BrokenPipeError:
        raise _PipeClosed() from None
    except OSError as exc:
        raise _StdoutFailed(f"cannot write the results to stdout ({exc.strerror or exc}); "
                            "free some disk space or send the output elsewhere") from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null: Python would fail again when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """emo's own warnings as one yellow line on stderr; any other as Python shows it."""
    from emocli.errors import EmoWarning

    if not issubclass(category, EmoWarning):
        return _python_show_warning(message, category, filename, lineno, file, line)
    from rich.markup import escape

    from emocli.report.output import printable

    _stderr().print(f"[yellow]warning:[/yellow] {escape(printable(str(message)))}")


_python_show_warning = None


def main() -> None:
    """Console-script entry point: exit 130 on Ctrl-C and 143 on SIGTERM (finished results written), 0 quietly when stdout is closed."""
    import errno
    import signal
    import warnings

    global _python_show_warning
    _python_show_warning, warnings.showwarning = warnings.showwarning, _show_warning
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        app()
    except (_Interrupted, KeyboardInterrupt):
        signum = _SIGNAL["received"] or signal.SIGINT
        _stderr().print("[yellow]terminated[/yellow]" if signum == signal.SIGTERM else "[yellow]interrupted[/yellow]")
        sys.exit(128 + int(signum))
    except (_PipeClosed, BrokenPipeError):
        _silence_stdout()
        sys.exit(0)
    except _StdoutFailed as exc:
        _silence_stdout()
        fail(str(exc))
        sys.exit(1)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        _silence_stdout()
        fail(f"{exc.filename or 'output'}: {exc.strerror}; free some disk space and run again")
        sys.exit(1)
