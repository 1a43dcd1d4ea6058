"""The training commands: ``train-video``, ``train-audio``, ``fuse``, and the tuning of a trained face
network (``tune-views``, ``tune-prior``, ``train-expert``, ``train-head``, ``calibrate-experts``,
``calibrate-small-faces``, ``ensemble``, ``refresh-bn``)."""

from __future__ import annotations


from pathlib import Path
from typing import Annotated, Optional

import typer

from emocli.choices import DEFAULT_EXPERT_STAGE, DEFAULT_FUSE_METHOD, DEFAULT_FUSE_RULE, LAYOUTS
from emocli.cli.base import EmoCommand, app, emo_errors, fail, stderr_console
from emocli.cli.options import (WORKERS_DEFAULT, AllowEvalSplitOpt, Balance, FuseMethod, FuseRule, Head, HeadFraming,
                                Precision, SelectBy, SplitOpt, VoiceFeatures, check_cache_folder, check_layout,
                                check_out_folder, number_in, number_list)


_TrainVideoData = Annotated[Optional[list[Path]], typer.Argument(
    help="Folders of face images, one sub-folder per emotion (FER2013 layout); several corpora train one "
    "network, each with its own held-out part.", show_default=False)]
_TrainVideoOut = Annotated[Path, typer.Option("--out", "-o", callback=check_out_folder, help="Bundle folder to write face.keras/face.json into.",
    show_default=False)]
_TrainVideoBackbone = Annotated[str, typer.Option(metavar="<backbone>", help="emo-cnn (default, trained end to end), mini-xception:PATH, "
    "vggface (needs --weights) or keras:PATH.keras, keras:PATH.keras#LAYER "
    "(frozen backbone + retrained head).")]
_TrainVideoEpochs = Annotated[int, typer.Option(min=1, help="Training epochs.")]
_TrainVideoBatchSize = Annotated[int, typer.Option(min=1, help="Images per training step.")]
_TrainVideoLr = Annotated[float, typer.Option(callback=number_in(0.0, 1.0, lo_open=True),
    help="Peak Adam learning rate (cosine decay after 1 warm-up epoch).")]
_TrainVideoHoldout = Annotated[list[float], typer.Option(callback=number_in(0.01, 0.5), metavar="<share>",
    help="Share of each corpus held out to pick the "
    "best epoch: once for all, or once per "
    "DATA folder in order.")]
_TrainVideoBalance = Annotated[Balance, typer.Option(help="Sample weights over corpus x class: none, sqrt (1/sqrt(count)) "
    "or full (1/count); they also weigh the held-out accuracy.")
]
_TrainVideoWidth = Annotated[int, typer.Option(min=4, help="emo-cnn: filters in the first block (doubles per block).")]
_TrainVideoSeed = Annotated[int, typer.Option(help="Random seed (split, init, augmentation).")]
_TrainVideoHoldoutSeed = Annotated[Optional[int], typer.Option(help="Seed of the held-out split alone (default: --seed); keep "
    "it fixed across runs that will be compared or averaged.",
    show_default=False)]
_TrainVideoLimit = Annotated[Optional[int], typer.Option(min=1, help="Use at most this many training images (quick runs).")]
_TrainVideoFeatures = Annotated[Optional[Path], typer.Option(help="Instead of DATA: an `emo extract` folder; retrain only the "
    "softmax on its fc2 features (no media decoded again).")]
_TrainVideoInit = Annotated[Optional[Path], typer.Option(help="Start from the face network of this bundle (fine-tuning or "
    "a warm restart) instead of new weights.")]
_TrainVideoWeights = Annotated[Optional[Path], typer.Option(help="vggface: VGG-Face weight file (.h5 of keras-vggface or "
    "deepface; see docs/vggface.md); default: $EMO_VGGFACE_WEIGHTS.",
    show_default=False)]
_TrainVideoHead = Annotated[Optional[Head], typer.Option("--transfer", help="vggface: the thesis's transfer "
    "experiment: exp1 = frozen fc6 + FC 256; exp2 = frozen conv blocks + FC 512-256; default: exp2 (--head is its "
    "former name).", show_default=False)]
_TrainVideoRotation = Annotated[float, typer.Option(callback=number_in(0, 180), help="Augmentation: largest random rotation, degrees "
    "(the thesis's 30 by default).")]
_TrainVideoZoom = Annotated[float, typer.Option(callback=number_in(0, 0.9), help="Augmentation: largest random zoom, as a share.")]
_TrainVideoShift = Annotated[float, typer.Option(callback=number_in(0, 0.9), help="Augmentation: largest random shift, as a share of "
    "the side.")]
_TrainVideoPrecision = Annotated[Precision, typer.Option(help="Training arithmetic: mixed_bfloat16 about doubles speed on "
    "CPUs with AVX512-BF16/AMX, mixed_float16 on GPUs (emo-cnn "
    "only; saved networks are always float32).")]
_TrainVideoExclude = Annotated[Optional[Path], typer.Option(help="A file of image paths (one per line, or a CSV whose first "
    "column is the path) kept out of training and of the "
    "held-out part: a test set kept unseen.",
    show_default=False)]
_TrainVideoTeacher = Annotated[Optional[list[Path]], typer.Option(metavar="<bundle>",
    help="Knowledge distillation: a face bundle trained on the "
    "same DATA with the same held-out split; repeat for "
    "an ensemble. Its averaged scores join the labels as "
    "training targets.", show_default=False)]
_TrainVideoDistill = Annotated[float, typer.Option(callback=number_in(0.0, 1.0), help="With --teacher: the teachers' share of the "
    "training targets (the labels' is the rest).")]
_TrainVideoRefreshBn = Annotated[bool, typer.Option("--refresh-bn", help="After training, re-estimate the BatchNorm "
    "statistics on the un-augmented training faces; "
    "kept if the held-out accuracy gains (see `emo "
    "refresh-bn`).")]


@app.command("train-video", cls=EmoCommand, short_help="Train the face network on face images.", epilog="\b\nExamples:\n  emo train-video ../shared/data/fer2013/train --out runs/face --epochs 30\n  emo train-video fer2013/train rafdb/train affectnet/train --holdout 0.1 --balance sqrt --init models/default --out runs/multi\n  emo train-video --features runs/afew_feats --split Train --out runs/afew_head\n")
def train_video(
    data: _TrainVideoData = None,
    out: _TrainVideoOut = ...,
    backbone: _TrainVideoBackbone = "emo-cnn",
    epochs: _TrainVideoEpochs = 30,
    batch_size: _TrainVideoBatchSize = 128,
    lr: _TrainVideoLr = 1e-3,
    holdout: _TrainVideoHoldout = [0.1],
    balance: _TrainVideoBalance = Balance.none,
    width: _TrainVideoWidth = 32,
    seed: _TrainVideoSeed = 0,
    holdout_seed: _TrainVideoHoldoutSeed = None,
    limit: _TrainVideoLimit = None,
    features: _TrainVideoFeatures = None,
    init: _TrainVideoInit = None,
    weights: _TrainVideoWeights = None,
    head: _TrainVideoHead = None,
    rotation: _TrainVideoRotation = 30.0,
    zoom: _TrainVideoZoom = 0.15,
    shift: _TrainVideoShift = 0.10,
    precision: _TrainVideoPrecision = "float32",
    exclude: _TrainVideoExclude = None,
    teacher: _TrainVideoTeacher = None,
    distill: _TrainVideoDistill = 0.5,
    refresh_bn: _TrainVideoRefreshBn = False,
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
            train_video_features_command(features=features, out=out, holdout=holdout[0], seed=seed, console=stderr_console(),
                                         split=split, allow_eval_split=allow_eval_split)
            return
        options = TrainOptions(backbone=backbone, epochs=epochs, batch_size=batch_size, learning_rate=lr,
                               holdout=tuple(holdout), width=width, seed=seed, holdout_seed=holdout_seed, limit=limit,
                               weights=weights, head=head.value if head is not None else None, init=init,
                               precision=Precision(precision).value,
                               augmentation={"rotation": rotation, "zoom": zoom, "shift": shift},
                               balance=Balance(balance).value, exclude=exclude, teachers=tuple(teacher or ()),
                               distill=distill, refresh_bn=refresh_bn)
        train_video_command(data=data, out=out, options=options, console=stderr_console())
    except emo_errors() as exc:
        raise fail(str(exc)) from None


class TrainAudioCommand(EmoCommand):
    aliases = {**EmoCommand.aliases, "--speaker-norm": "--adapted-model", "--no-speaker-norm": "--no-adapted-model"}


@app.command("train-audio", cls=TrainAudioCommand, short_help="Train the voice model on speech corpora.", epilog="\b\nExamples:\n  emo train-audio ravdess emodb --out runs/voice --test-speakers ravdess_02,emodb_03\n  emo train-audio ravdess emodb --feature-set whisper+rich --cache runs/voice_cache --out runs/voice\n")
def train_audio(
    data: Annotated[Optional[list[Path]], typer.Argument(help="Corpus folders (RAVDESS, EmoDB, ...; layout detected "
                                                              "from the file names) or CSV manifests with a speaker "
                                                              "column.", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", callback=check_out_folder, help="Bundle folder to write voice.npz/voice.json into.",
                                      show_default=False)] = ...,
    features: Annotated[Optional[Path], typer.Option(help="Instead of DATA: an `emo extract` folder; fit the SVM on "
                                                          "its voice features (no audio decoded again).",
                                                     show_default=False)] = None,
    layout: Annotated[Optional[str], typer.Option(callback=check_layout, metavar=f"<{'|'.join(LAYOUTS)}>",
                                                  help="Layout of every DATA folder instead of detecting it.",
                                                  show_default=False)] = None,
    corpus: Annotated[Optional[str], typer.Option("--corpus", callback=check_layout, hidden=True,
                                                  help="Former name of --layout, kept for one release.")] = None,
    test_speakers: Annotated[str, typer.Option(metavar="<speakers>", help="Comma-separated speakers held out of training and reported "
                                                    "at the end (ravdess_02 or Actor_02, emodb_03).")] = "",
    feature_set: Annotated[Optional[VoiceFeatures], typer.Option(
        show_default=False, help="rich: 289 statistics incl. pitch; thesis68: mean and std of the 34 pyAudioAnalysis "
                                 "features; whisper: 768 pooled Whisper tiny.en encoder values; whisper+rich: both "
                                 "[default: the feature set of the voice model already in --out (the shipped bundle: "
                                 "whisper+rich), else rich].")] = None,
    balanced: Annotated[bool, typer.Option(help="Weight classes inversely to their frequency.")] = True,
    augment: Annotated[bool, typer.Option(help="Also train on 0.9x and 1.1x speed copies of every training clip.")]
    = True,
    perturb: Annotated[str, typer.Option(metavar="<names>", help="Also train on one more copy of every training clip per name: noise "
                                              "(pink noise 10-20 dB below the speech), reverb (a synthetic room, "
                                              "RT60 0.3-0.9 s); comma list, e.g. noise,reverb.")] = "",
    repeats: Annotated[int, typer.Option(min=1, help="Repeats of the speaker-grouped 4-fold search for C and gamma.")] = 3,
    select_by: Annotated[SelectBy, typer.Option(
        help="How C and gamma are chosen: speaker (speaker-grouped folds) or corpus (leave each DATA corpus out "
             "in turn, trained on the others: rewards what holds on corpora unlike the training ones; voice.json "
             "then holds the left-out table).")] = SelectBy.speaker,
    c_grid: Annotated[Optional[str], typer.Option(metavar="<values>", callback=number_list,
                                                  help="SVM C values searched, comma list [default: 1,3,10,30,100].",
                                                  show_default=False)] = None,
    gamma_grid: Annotated[Optional[str], typer.Option(metavar="<values>", callback=number_list,
                                                      help="RBF gammas searched, as multiples of 1/features, comma "
                                                           "list [default: 0.1,0.25,0.5].", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the speaker shuffles.")] = 0,
    workers: Annotated[Optional[int], typer.Option(min=1, show_default=False, help=f"Processes computing features "
                                                   f"[default: {WORKERS_DEFAULT}].")] = None,
    cache: Annotated[Optional[Path], typer.Option(callback=check_cache_folder,
                                                  help="Folder caching per-clip features (.npz) between runs.",
                                                  show_default=False)] = None,
    split: SplitOpt = None,
    allow_eval_split: AllowEvalSplitOpt = False,
    speaker_norm: Annotated[bool, typer.Option(
        "--adapted-model/--no-adapted-model", help="Also train the adapted voice model (voice_speaker.*: the same SVM "
        "on features z-normalised per speaker) that --adapt speaker|run|stream scores with (--speaker-norm is its "
        "former name).")] = False,
    vad: Annotated[bool, typer.Option(help="Give a bundle without a speech-activity gate emo's (Silero VAD, copied "
                                           "from the shipped bundle), so music, noise and silence are not "
                                           "classified; --no-vad leaves only the level gate.")] = True,
) -> None:
    """Train the voice model (StandardScaler + RBF SVM) on speech corpora, validated by speaker."""
    from emocli.train.voice import VoiceTrainOptions, train_audio_command, train_audio_features_command

    if (not data) == (features is None):
        raise typer.BadParameter("pass either DATA (corpus folders) or --features DIR")
    if features is None and (split is not None or allow_eval_split):
        raise typer.BadParameter("--split belongs to --features (held-out speakers: --test-speakers)")
    if features is not None and speaker_norm:
        raise typer.BadParameter("--adapted-model needs corpus folders (DATA), whose file names say who speaks")
    if features is not None and perturb.strip():
        raise typer.BadParameter("--perturb needs corpus folders (DATA): it alters the audio before features")
    try:
        if features is not None:
            train_audio_features_command(features=features, out=out, balanced=balanced, seed=seed, console=stderr_console(),
                                         split=split, allow_eval_split=allow_eval_split, vad=vad)
            return
        options = VoiceTrainOptions(
            layout=layout or corpus, test_speakers=tuple(s for s in test_speakers.split(",") if s.strip()),
            feature_set=None if feature_set is None else feature_set.value, balanced=balanced, augment=augment,
            repeats=repeats, seed=seed, workers=workers, cache=cache, speaker_norm=speaker_norm, vad=vad,
            c_grid=c_grid, gamma_grid=gamma_grid, select_by=select_by.value,
            perturbations=tuple(p.strip() for p in perturb.split(",") if p.strip()))
        train_audio_command(data=data, out=out, options=options, console=stderr_console())
    except emo_errors() as exc:
        raise fail(str(exc)) from None


@app.command("fuse", cls=EmoCommand, short_help="Set how face and voice scores are fused.", epilog="\b\nExamples:\n  emo fuse runs/bundle --method confusion --rule product\n  emo fuse runs/bundle --method feature-svm --features runs/afew_feats --split Train\n")
def fuse(
    model: Annotated[Path, typer.Argument(help="Bundle folder holding a face and a voice model.")],
    method: Annotated[FuseMethod, typer.Option(help="equal (0.5/0.5), confusion (per-emotion weights from "
                                                    "validation recall), learned (logistic regression on the two "
                                                    "score vectors), feature-svm / feature-dense (face features + "
                                                    "68 voice statistics -> PCA 68 -> SVM or dense 14 + softmax).")
                      ] = FuseMethod(DEFAULT_FUSE_METHOD),
    features: Annotated[Optional[Path], typer.Option(help="`emo extract` output to fit learned/feature methods on.")] = None,
    split: Annotated[Optional[str], typer.Option(metavar="<split>",
                                                 help="Fit on this split of the extracted items only.")] = None,
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
                     console=stderr_console(), rule=FuseRule(rule).value)
    except EmoError as exc:
        raise fail(str(exc)) from None


_FaceBundleArg = Annotated[Path, typer.Argument(help="Face bundle made by `emo train-video`.")]
_TrainedOnArg = Annotated[Path, typer.Argument(help="The folder the bundle was trained on (its held-out part is "
                                                    "rebuilt from face.json).")]
_NewBundleOpt = Annotated[Path, typer.Option("--out", "-o", callback=check_out_folder,
                                             help="Bundle folder to write the new network into.", show_default=False)]
_SaveIfBetterOpt = Annotated[bool, typer.Option("--write", help="Save the new network when it beats the bundle(s) it "
                                                                "came from on the held-out images.")]


def _write_opt(what: str):
    """``--write`` of a tuning command: ``what`` it stores, then the manifest's refresh."""
    return Annotated[bool, typer.Option("--write", help=f"Store {what} and refresh the manifest.")]


def _cache_opt(what: str):
    """``--cache`` of a command that scores faces with the bundle's networks: ``what`` it keeps."""
    return Annotated[Path, typer.Option(callback=check_cache_folder, help=f"{what}, keyed by the bundle's face network.")]


_HeadData = Annotated[Path, typer.Argument(help="The folder holding affectnet/train, sfew/Train and rafdb/train "
                                                 "(../shared/data): their training parts train the head, the halves "
                                                 "`emo calibrate-experts` holds out choose C and the temperature.")]
_ExpertsData = Annotated[Path, typer.Argument(help="The folder holding affectnet/train, sfew/Train and fer2013/val "
                                                    "(../shared/data): a fixed share of AffectNet and SFEW, which "
                                                    "neither network trained on, is held out and halved into calib "
                                                    "and test.")]
_ViewsWrite = _write_opt("the best views in face.json")
_HeadCache = _cache_opt("Feature cache (resumable)")
_HeadWrite = _write_opt("the head (face_head.npz, named in experts.json)")
_PriorWrite = _write_opt("the chosen adjustment in face.json")
_ExpertsCache = _cache_opt("Per-image score cache")
_ExpertsWrite = _write_opt("the temperatures and weights in experts.json")


def _run(command, *args, **kwargs):
    """Run a training command; an :class:`~emocli.errors.EmoError` from it is one line, exit 1."""
    try:
        return command(*args, **kwargs)
    except emo_errors() as exc:
        raise fail(str(exc)) from None


@app.command("tune-views", cls=EmoCommand, short_help="Choose the face network's test-time views.", epilog="\b\nExamples:\n  emo tune-views runs/face ../shared/data/fer2013/train\n  emo tune-views runs/face ../shared/data/fer2013/train --write\n")
def tune_views(
    model: _FaceBundleArg,
    data: _TrainedOnArg,
    write: _ViewsWrite = False,
) -> None:
    """Choose the face model's test-time views (mirror, zoom, shifts) on held-out training images."""
    from emocli.train.tuning import tune_views_command

    _run(tune_views_command, bundle=model, data=data, write=write, console=stderr_console())


ExpertsBundleOpt = Annotated[Optional[Path], typer.Option(
    "--bundle", metavar="<bundle>", show_default=False, help="Bundle with both face experts [default: the shipped "
    "bundle].")]


def _or_shipped(model: Optional[Path]) -> Path:
    """``model``, or the shipped bundle when it is None (resolved at run time: the CLI imports no bundle code)."""
    if model is not None:
        return model
    from emocli.bundle import DEFAULT_BUNDLE

    return DEFAULT_BUNDLE


@app.command("train-head", cls=EmoCommand, short_help="Fit the face head on both face experts.", epilog="\b\nExamples:\n  emo train-head ../shared/data\n  emo train-head ../shared/data --bundle mybundle --write\n")
def train_head(
    data: _HeadData,
    model: ExpertsBundleOpt = None,
    cache: _HeadCache = Path("runs/face_head"),
    reuse_embeddings: Annotated[Optional[Path], typer.Option(help="Read the MobileFaceNet's outputs from this cache "
                                                                  "folder (the same faces): only emo-cnn runs.",
                                                             show_default=False)] = None,
    framing: Annotated[HeadFraming, typer.Option(help="The faces it learns from: image (each file as the crop, as "
                                                   "--no-detect reads it), image+video (also as emo's detector crops "
                                                   "it in a video frame, each at half weight), or choose: whichever "
                                                   "the calib halves favour, both framings scored.")] = HeadFraming.choose,
    write: _HeadWrite = False,
) -> None:
    """Fit the face head (a softmax layer on both face experts' features) on colour face corpora."""
    from emocli.train.head import HeadArgs, run

    _run(run, HeadArgs(data=data, bundle=_or_shipped(model), cache=cache, reuse_embeddings=reuse_embeddings,
                       write=write, framing=framing.value))


_ExpertData = Annotated[Path, typer.Argument(help="The folder holding affectnet/train, sfew/Train and rafdb/train "
                                                   "(../shared/data): their training parts train the expert, the "
                                                   "calib halves of `emo calibrate-experts` and `emo train-head` "
                                                   "choose the epoch.")]
_ExpertCache = Annotated[Path, typer.Option(callback=check_cache_folder, help="Aligned face crops, keyed by the "
                                                                            "image list.")]


@app.command("train-expert", cls=EmoCommand, short_help="Fine-tune the RAF-DB face expert on the face corpora.", epilog="\b\nExamples:\n  emo train-expert ../shared/data --out runs/expert\n  emo calibrate-experts ../shared/data --bundle runs/expert --write\n  emo train-head ../shared/data --bundle runs/expert --write\n")
def train_expert(
    data: _ExpertData,
    out: _NewBundleOpt = ...,
    model: ExpertsBundleOpt = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (the best on the calib halves is kept).")] = 5,
    lr: Annotated[float, typer.Option("--learning-rate", "--lr", callback=number_in(0.0, 1.0, lo_open=True),
                                      help="Adam learning rate.")] = 1e-4,
    batch_size: Annotated[int, typer.Option(min=1, help="Faces per training step.")] = 64,
    cache: _ExpertCache = Path("runs/face_expert"),
    seed: Annotated[int, typer.Option(help="Random seed (initial shuffle, batches).")] = 0,
    mirror: Annotated[bool, typer.Option("--mirror", help="Train on each face and its mirror image too (twice the "
                                                      "cost per epoch).")] = False,
    from_stage: Annotated[str, typer.Option(help="The first stage trained: 7x7 (the last; its input computed once), "
                                                 "or 14x14, 28x28, all (on images augmented like video frames; "
                                                 "about 8, 12, 16 min an epoch on 2 CPU cores).")] = DEFAULT_EXPERT_STAGE,
) -> None:
    """Fine-tune the RAF-DB MobileFaceNet's last stages on AffectNet, SFEW and RAF-DB training faces
    into a new bundle (then refit the experts' calibration and the face head on it)."""
    from emocli.train.expert import ExpertArgs, run

    _run(run, ExpertArgs(data=data, bundle=_or_shipped(model), out=out, epochs=epochs, learning_rate=lr,
                         batch_size=batch_size, cache=cache, seed=seed, mirror=mirror, from_stage=from_stage))


@app.command("tune-prior", cls=EmoCommand, short_help="Choose the face network's class-prior adjustment.", epilog="\b\nExamples:\n  emo tune-prior runs/face ../shared/data/fer2013/train\n  emo tune-prior runs/face ../shared/data/fer2013/train --write\n")
def tune_prior(
    model: _FaceBundleArg,
    data: Annotated[Path, typer.Argument(help="The folder the bundle was trained on (its held-out part is rebuilt "
                                              "from face.json; its class shares are the prior).")],
    write: _PriorWrite = False,
    max_accuracy_loss: Annotated[float, typer.Option(callback=number_in(0.0, 1.0), help="Held-out accuracy a "
                                                     "stronger adjustment may cost.")] = 0.005,
) -> None:
    """Choose the face network's class-prior adjustment (logit adjustment) on held-out training images."""
    from emocli.train.tuning import tune_prior_command

    _run(tune_prior_command, bundle=model, data=data, write=write, console=stderr_console(),
         max_accuracy_loss=max_accuracy_loss)


@app.command("calibrate-experts", cls=EmoCommand, short_help="Fit the face experts' temperatures and weights.", epilog="\b\nExamples:\n  emo calibrate-experts ../shared/data\n  emo calibrate-experts ../shared/data --bundle mybundle --write\n")
def calibrate_experts(
    data: _ExpertsData,
    model: ExpertsBundleOpt = None,
    cache: _ExpertsCache = Path("runs/face_experts"),
    write: _ExpertsWrite = False,
) -> None:
    """Fit the face experts' temperatures and weights on held-out faces new to both networks."""
    from emocli.train.calibration import calibrate_experts as run

    _run(run, data, _or_shipped(model), cache=cache, write=write, console=stderr_console())


@app.command("calibrate-small-faces", cls=EmoCommand, short_help="Fit how faces under 64 px are scored.", epilog="\b\nExamples:\n  emo calibrate-small-faces ../shared/data\n  emo calibrate-small-faces ../shared/data --bundle mybundle --write\n")
def calibrate_small_faces(
    data: Annotated[Path, typer.Argument(help="The folder holding affectnet/, sfew/, rafdb/ and fer2013/ "
                                              "(../shared/data): their held-out calib faces, shown small.")],
    model: ExpertsBundleOpt = None,
    side: Annotated[int, typer.Option(min=8, max=63, help="Side, px, the colour calib faces are shrunk to.")] = 48,
    write: Annotated[bool, typer.Option("--write", help="Store the mix in the bundle's experts.json.")] = False,
) -> None:
    """Fit the mix of emo-cnn and the RAF-DB expert for faces under 64 px (one weight for colour, one for grey)
    on held-out faces shown small."""
    from emocli.train.small_faces import calibrate_small_faces as run

    _run(run, data, _or_shipped(model), side=side, write=write, console=stderr_console())


@app.command("ensemble", cls=EmoCommand, short_help="Average two face networks, if that helps.", epilog="\b\nExamples:\n  emo ensemble runs/face2 runs/face3 ../shared/data/fer2013/train --out runs/face23 --write\n")
def ensemble(
    a: Annotated[Path, typer.Argument(help="First face bundle (its views and face.json are kept).")],
    b: Annotated[Path, typer.Argument(help="Second face bundle, trained on DATA with the same held-out part.")],
    data: Annotated[Path, typer.Argument(help="The folder both bundles were trained on.")],
    out: _NewBundleOpt = ...,
    write: _SaveIfBetterOpt = False,
) -> None:
    """Average two face networks into one, if that helps on held-out training images."""
    from emocli.train.tuning import ensemble_command

    _run(ensemble_command, a=a, b=b, data=data, out=out, write=write, console=stderr_console())


@app.command("refresh-bn", cls=EmoCommand, short_help="Re-estimate the face network's BatchNorm statistics.", epilog="\b\nExamples:\n  emo refresh-bn runs/face ../shared/data/fer2013/train --out runs/face_bn --write\n")
def refresh_bn(
    model: _FaceBundleArg,
    data: _TrainedOnArg,
    out: _NewBundleOpt = ...,
    write: _SaveIfBetterOpt = False,
) -> None:
    """Re-estimate the face network's BatchNorm statistics on its un-augmented training faces."""
    from emocli.train.tuning import refresh_bn_command

    _run(refresh_bn_command, bundle=model, data=data, out=out, write=write, console=stderr_console())
