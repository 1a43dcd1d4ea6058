"""Options shared by the commands: choice lists (read from :mod:`emocli.choices` and the modules that
own them), number and folder checks, and the scoring options of predict, evaluate and extract."""

from __future__ import annotations

import re
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from emocli.choices import (ADAPT_MODES, BALANCES, DEFAULT_BATCH, DEFAULT_DETECTOR, DEFAULT_FPS, DETECTORS,
                            FACE_MODES, FEATURE_SETS, FUSE_METHODS, FUSE_RULES, HEAD_FRAMINGS, HEADS, LAYOUTS, MODALITIES,
                            OUTPUT_FORMATS, POOLINGS, PRECISIONS, TTA_CHOICES)
from emocli.cli.base import fail


def number_list(value: Optional[str]) -> Optional[tuple[float, ...]]:
    """A comma list of positive numbers ("3,10"), or None."""
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        out = ()
    if not out or any(not (v > 0 and v < float("inf")) for v in out):
        raise typer.BadParameter(f"{value!r} is not a comma list of positive numbers, e.g. 3,10")
    return out


def require_adapted_model(pipe, flag: str) -> None:
    """Refuse, in one line (exit 1), a bundle without the adapted voice model ``flag`` scores with (``emo
    train-audio --adapted-model``); load it now, so a damaged voice_speaker.* fails before any input is scored."""
    if not (pipe.has_voice and pipe.voice.has_speaker_model):
        raise fail(f"{pipe.bundle}: this bundle has no speaker-normalised voice model for {flag}; "
                   "retrain it with `emo train-audio ... --adapted-model`, or use the shipped bundle")
    pipe.voice.speaker_model


def check_layout(value: Optional[str]) -> Optional[str]:
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


def resolve_workers(workers: int | None, n_inputs: int | None) -> int:
    """``--workers`` as given, capped at the CPU count, or its default for ``n_inputs`` inputs
    (None: not known, e.g. paths on stdin): see :func:`emocli.runners.pool.worker_count`."""
    from emocli.runners.pool import worker_count

    return worker_count(workers, n_inputs)


WORKERS_DEFAULT = "one per CPU for 4 or more inputs, else 1"


SplitOpt = Annotated[Optional[str], typer.Option(
    metavar="<split>",
    help="With --features: train on the extracted items of this split [default: the training split (Train) "
         "when the items have splits, else all of them].", show_default=False)]
AllowEvalSplitOpt = Annotated[bool, typer.Option(
    "--allow-eval-split", help="Allow --split to name an evaluation split (Val, Test, ...).")]


def number_in(lo: float, hi: float, *, lo_open: bool = False):
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


check_out_folder = _folder_option("--out")
check_cache_folder = _folder_option("--cache")


def _choices(name: str, *values: str) -> type[Enum]:
    """A str Enum for an option's fixed choices (member names: the values with - and + as _)."""
    return Enum(name, [(re.sub(r"\W", "_", v), v) for v in values], type=str)


Head = _choices("Head", *HEADS)
Detector = _choices("Detector", *DETECTORS)
Modality = _choices("Modality", *MODALITIES)
TTA = _choices("TTA", *TTA_CHOICES)


_TTA_HELP = ("Test-time views per face: auto = the bundle's views (mirror, zoom, shifts) for still images, and "
             "spread for video frames (each frame one of the bundle's views and its mirror, in turn: the clip "
             "averages them all at the cost of crop + mirror); or bundle, spread, mirror, none for every input "
             "(--tta is its former name).")


Pooling = _choices("Pooling", *POOLINGS)


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
    "--face-experts", metavar="<experts>", callback=_check_experts,
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
    "--bundle", metavar="<bundle>", help="Model bundle folder [default: the shipped models/default]; --model and -m "
    "are its former names.", show_default=False)]
FpsOpt = Annotated[float, typer.Option(callback=number_in(0.0, 1000.0),
                                        help="Frames per second to score (0: every frame; at most 1000).")]
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="Face crops per network call.")]
DetectorOpt = Annotated[Detector, typer.Option(
    help="Face detector: yunet (finds faces from 10 % to 90 % of the frame's width, turned or cut by its edge; "
         "a frame with no face is looked at again at two other sizes), "
         "blazeface (MediaPipe's, misses close-ups), or haar (the thesis's).")]
ModalityOpt = Annotated[Modality, typer.Option(help="Use both modalities, or only the face or the voice.")]
TTAOpt = Annotated[TTA, typer.Option("--views", help=_TTA_HELP)]
CorpusSplitOpt = Annotated[Optional[str], typer.Option(metavar="<split>",
                                                       help="Only the items of this split (e.g. Val for AFEW).")]
LayoutOpt = Annotated[Optional[str], typer.Option(help="Corpus layout [default: detected from the naming].",
                                                  callback=check_layout, metavar=f"<{'|'.join(LAYOUTS)}>")]
RayOpt = Annotated[bool, typer.Option("--ray", help="Run on Ray (pip install 'emocli[ray]'): one model-holding actor "
                                                    "per CPU instead of --workers; every worker must see the inputs, "
                                                    "the model and any output folder (shared filesystem). See "
                                                    "docs/scale.md.")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", metavar="<address>", help="Ray cluster to join (auto, ray://HOST:10001); implies --ray [default: a local Ray "
                          "instance].", show_default=False)]


def parse_input_options(value: Optional[str]) -> Optional[list[str]]:
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
SCORING = {
    "fps": (FpsOpt, DEFAULT_FPS),
    "batch_size": (BatchSizeOpt, DEFAULT_BATCH),
    "detector": (DetectorOpt, Detector(DEFAULT_DETECTOR)),
    "detect": (DetectOpt, None),
    "tta": (TTAOpt, TTA.auto),
    "face_experts": (FaceExpertsOpt, "all"),
    "pooling": (PoolingOpt, Pooling.mean),
}


ScoringOpts = dict  # where a command's signature takes the shared scoring options (`scoring_options`)


def scoring_options(command):
    """Give COMMAND the shared scoring options (``SCORING``) in place of its ``scoring`` parameter.

    Typer reads a command's options from its signature, so they are spliced into it there; the
    command receives them as one dict, ``scoring``, for `pipeline_options`.
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
                   for option, (annotation, default) in SCORING.items()]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        scoring = {name: kwargs.pop(name, default) for name, (_, default) in SCORING.items()}
        return command(*args, scoring=scoring, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)
    return wrapper


def pipeline_options(*, fps: float, batch_size: int, detector: "Detector | str", detect: Optional[bool],
                      tta: "TTA | str", face_experts: str, pooling: "Pooling | str",
                      modality: "Modality | str" = Modality.both, **more):
    """The pipeline's Options from the scoring options (``SCORING``), the modality and ``more`` (the others)."""
    from emocli.pipeline.options import Options

    modality = Modality(modality)
    return Options(fps=fps or None, batch_size=batch_size, detector=Detector(detector).value, detect=detect,
                   use_face=modality != Modality.voice, use_voice=modality != Modality.face, tta=TTA(tta).value,
                   face_experts=face_experts, pooling=Pooling(pooling).value, **more)


Balance = _choices("Balance", *BALANCES)
Precision = _choices("Precision", *PRECISIONS)
HeadFraming = _choices("HeadFraming", *HEAD_FRAMINGS)


VoiceFeatures = _choices("VoiceFeatures", *FEATURE_SETS)


FuseMethod = _choices("FuseMethod", *FUSE_METHODS)
FaceMode = _choices("FaceMode", *FACE_MODES)
AdaptMode = _choices("AdaptMode", *ADAPT_MODES)  # predict --adapt
SelectBy = _choices("SelectBy", "speaker", "corpus")  # train-audio --select-by
AdaptCorpus = _choices("AdaptCorpus", *(m for m in ADAPT_MODES if m != "stream"))  # evaluate --adapt
OutFormat = _choices("OutFormat", *OUTPUT_FORMATS)
EVALUATE_FORMATS = ("table", "json", "csv")  # evaluate: the report, or a row per item
# The output options of the commands that write results (predict, evaluate): one declaration each
JsonTableOpt = Annotated[Optional[bool], typer.Option(
    "--json/--table", help="JSON or Rich tables, as --format json or table [default: tables on a terminal, JSON "
                           "otherwise].", show_default=False)]
EvalFormat = _choices("EvalFormat", *EVALUATE_FORMATS)
FuseRule = _choices("FuseRule", *FUSE_RULES)


def output_format(out_format: "Enum | None", json_out: Optional[bool], output: Optional[Path],
                  output_dir: Optional[Path] = None, *, formats: tuple[str, ...] = OUTPUT_FORMATS) -> str:
    """table, json, csv or a timeline format, from --format, --json/--table and -o's file extension (bad usage
    when they clash). One rule for every command that writes results (predict, evaluate); ``formats``: the
    ones the command writes."""
    if out_format is not None and json_out is not None and out_format.value != ("json" if json_out else "table"):
        raise typer.BadParameter(f"--format {out_format.value} contradicts --{'json' if json_out else 'table'}; "
                                 "give one of them")
    fmt = out_format.value if out_format is not None else None
    if fmt is None and json_out is not None:
        fmt = "json" if json_out else "table"
    if output is not None or output_dir is not None:
        if fmt == "table":
            raise typer.BadParameter("a table is for the terminal: to a file use --format "
                                     + ", ".join(f for f in formats if f != "table"),
                                     param_hint="--output" if output is not None else "--output-dir")
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        fmt = fmt or (suffix if suffix in formats and suffix != "table" else "json")
    fmt = fmt or ("table" if sys.stdout.isatty() else "json")
    if fmt not in formats:
        raise typer.BadParameter(f"this command writes {', '.join(formats)}, not {fmt}", param_hint="--format")
    return fmt
