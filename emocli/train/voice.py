"""What ``emo train-audio`` does, separate from argument parsing: voice features of speech corpora
(cached), a speaker-independent held-out split, the SVM, and the speech gate copied in."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emocli import fingerprints
from emocli.bundle import DEFAULT_BUNDLE, write_manifest
from emocli.corpus.layouts import corpus_names, detect_layout, load_corpus
from emocli.errors import DatasetError, EmoError, ModelError, ParameterError
from emocli.files import atomic_path, sha256_file
from emocli.labels import LABELS
from emocli.media.ffmpeg import SAMPLE_RATE, load_audio
from emocli.report.metrics import classification_report
from emocli.report.output import ProgressBar
from emocli.runners.extract import extraction_model, load_extracted
from emocli.runners.pool import process_pool, worker_count
from emocli.train.data import trained_items, training_split
from emocli.voice.activity import SAMPLE_RATE as VAD_RATE, VAD_FILE, VAD_LICENSE
from emocli.voice.encoder import ENCODER_CACHE_ID, embed, shipped_encoder
from emocli.voice.features import (DEFAULT_FEATURE_SET, ENCODER_SETS, PERTURBATIONS, STEP, WINDOW, clip_vector,
                                   feature_dimension, perturb, window_features)
from emocli.voice.model import DEFAULT_C_GRID, DEFAULT_GAMMA_GRID, Frames, Selection, VoiceModel
from emocli.voice.speaker import MIN_CLIPS, MODEL_NAME, normalise_groups


def train_audio_features_command(*, features: Path, out: Path, balanced: bool, seed: int, console,
                                 split: str | None = None, allow_eval_split: bool = False, vad: bool = True) -> dict:
    """Train the voice SVM on the voice features of an `emo extract` folder (no audio decoded again);
    with ``vad``, a bundle without a speech-activity gate gets the shipped one."""

    check_voice_pair(out, speaker_norm=False)
    items, split = training_split(load_extracted(features), split, allow_eval_split=allow_eval_split,
                                  where=features)
    items = [d for d in items if d["voice_features"].size]
    if not items:
        raise DatasetError(f"{features}: no extracted item has voice features; extract a corpus with audio first")
    console.print(f"training on {len(items)} clips" + (f" of split {split}" if split else " (no splits)"))
    base_dir = extraction_model(features)
    base = VoiceModel.load(base_dir)  # the features were computed with this model's settings
    st = base.settings_
    x = np.stack([d["voice_features"] for d in items]).astype(np.float64)
    y = [d["label"] for d in items]
    groups = [d["speaker"] or d["id"] for d in items]
    method = "speaker" if all(d["speaker"] for d in items) else "clip (no speaker ids: random)"
    model = VoiceModel(feature_set=st["feature_set"],
                       frames=Frames(float(st["window_s"]), float(st["step_s"]), int(st["sample_rate"])),
                       class_weight="balanced" if balanced else None,
                       selection=Selection(seed=seed, n_folds=min(5, len(set(groups)))))
    model.fit(x, y, groups)
    extra = {"trained_on_features": str(features), "n_clips": len(items), "grouping": method,
             "n_speakers": len({d["speaker"] for d in items}) if all(d["speaker"] for d in items) else None,
             **trained_items(features, split, items)}
    model.save(out, extra=extra)
    if vad:
        add_speech_gate(out, model.sample_rate, console)
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {out}/voice.skops: {len(items)} clips, grouped by {method}; validation UAR "
                  f"{model.validation_['uar']:.3f}")
    return extra


VOICE_CACHE_VERSION = 1  # bump when window_features changes what it computes
AUGMENT_SPEEDS = (0.9, 1.1)  # speed-perturbed copies of every training clip (--augment)


def _voice_cache_key(digest: str, *, window: float, step: float, sr: int, speed: float | str) -> str:
    """Cache file name for one copy of a clip: changes with the file's content (``digest``, its
    sha256) and the settings (``speed``: the copy, a speed factor or a perturbation's name).

    The content, not the path or modification time, so a corpus copied, moved or touched again
    keeps its cache (recomputing RAVDESS + EmoDB + SAVEE's features takes about an hour on two
    cores); hashing a clip costs about a millisecond, once for all its copies.
    """
    import hashlib

    key = f"{digest}|{window}|{step}|{sr}|{speed}|v{VOICE_CACHE_VERSION}"
    return hashlib.sha1(key.encode()).hexdigest() + ".npz"


def _voice_window_features(task: tuple) -> tuple[str, tuple, list | None, str | None]:
    """Worker: decode one file and compute the (36, n) window features of each copy of the clip
    (1.0 = as recorded, another number = a speed factor, "noise" or "reverb": see
    :func:`emocli.voice.features.perturb`, seeded by the file's name so a copy is the same in every
    run); with the task's encoder flag, a (window features, pooled speech-encoder embedding) pair
    per copy; reuse and fill the cache.

    Returns (path, copies, list of feature arrays or None, error message or None): an
    unreadable file is an expected per-item failure, reported by the caller.
    """
    import zlib

    path, speeds, window, step, sr, cache, *rest = task
    encoder = bool(rest and rest[0])  # also the pooled speech-encoder embedding (whisper feature sets)
    out, audio = [], None

    def cached(target: Path | None, compute):
        nonlocal audio
        if target is not None and target.is_file():
            try:
                with np.load(target, allow_pickle=False) as z:
                    return z["frames"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is recomputed
        if audio is None:
            audio = load_audio(path, sr=sr)
        value = compute()
        if target is not None:
            with atomic_path(target, suffix=".npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, frames=value)
        return value

    try:
        seed = zlib.crc32(Path(path).name.encode())
        digest = sha256_file(path) if cache else None
        for speed in speeds:
            key = _voice_cache_key(digest, window=window, step=step, sr=sr, speed=speed) if cache else None
            frames = cached(Path(cache) / key if key else None,
                            lambda: window_features(perturb(audio, sr, speed, seed=seed), sr, window=window, step=step))
            if not encoder:
                out.append(frames)
                continue

            emb = cached(Path(cache) / f"{key[:-4]}-enc{ENCODER_CACHE_ID}.npz" if key else None,
                         lambda: embed(perturb(audio, sr, speed, seed=seed), sr, shipped_encoder()))
            out.append((frames, emb))
    except (EmoError, OSError) as exc:
        return path, speeds, None, str(exc)
    return path, speeds, out, None


def _voice_corpus(root: Path, corpus: str | None) -> tuple[str, list]:
    layout = corpus or detect_layout(root)
    items = load_corpus(root, layout, modality="audio")
    unnamed = [it.path for it in items if not it.speaker]
    if unnamed:
        raise DatasetError(f"{unnamed[0]}: no speaker id ({len(unnamed)} such files in {root}); the voice model is "
                           "validated on held-out speakers, so every file needs one (use a CSV manifest with a "
                           "speaker column)")
    return layout, items


def _resolve_speakers(wanted: list[str], speakers: set[str]) -> list[str]:
    """Map ``--test-speakers`` entries to corpus speaker ids (``ravdess_02``; ``Actor_02`` and a bare
    ``02`` work when unambiguous)."""
    out = []
    for w in wanted:
        w = w.strip()
        if not w:
            continue
        if w in speakers:
            out.append(w)
            continue
        m = w[len("actor_"):] if w.lower().startswith("actor_") else w
        cands = sorted(s for s in speakers if s.split("_", 1)[-1] == m
                       and (not w.lower().startswith("actor_") or s.startswith("ravdess_")))
        if len(cands) == 1:
            out.append(cands[0])
        elif not cands:
            raise DatasetError(f"--test-speakers: no speaker {w!r} in the corpora; speakers are "
                               f"{', '.join(sorted(speakers))}")
        else:
            raise DatasetError(f"--test-speakers: {w!r} is ambiguous ({', '.join(cands)}); write the full id")
    return sorted(set(out))


def _print_scores(console, title: str, sc: dict) -> None:
    from rich.table import Table

    count = (f"{sc['clips']} clips x {sc['repeats']} repeats" if "repeats" in sc else f"{sc['n']} clips")
    console.print(f"{title}: accuracy {sc['accuracy']:.3f}, UAR {sc['uar']:.3f} ({count})")
    console.print("  recall: " + ", ".join(f"{k} {v:.2f}" for k, v in sc["recall"].items() if v is not None))
    table = Table(title=f"{title}: confusion (rows true, columns predicted)", title_justify="left")
    table.add_column("")
    for lab in sc["labels"]:
        table.add_column(lab[:5], justify="right")
    for lab, row in zip(sc["labels"], sc["confusion"]):
        table.add_row(lab, *(str(v) for v in row))
    console.print(table)


@dataclass
class VoiceRows:
    """The clip vectors of a train-audio run: one row per clip and speed (1.0 = as recorded)."""
    x: np.ndarray  # (n, d) clip vectors
    y: np.ndarray  # emotion names
    groups: np.ndarray  # speakers
    path: np.ndarray  # the clip of each row
    copy: np.ndarray  # 0 for the recording, k > 0 for its k-th speed-perturbed copy
    failed: list[tuple[str, str]]  # (path, error) of the clips that could not be used
    seconds: float  # extraction time

    corpus: np.ndarray | None = None  # the corpus (folder or manifest) of each row, where known

    @property
    def augmented(self) -> np.ndarray:
        return self.copy > 0


def _voice_corpora(data: list[Path], corpus: str | None, test_speakers: list[str], console):
    """Read each corpus folder's clips; (items, {folder: layout}, held-out speakers, {item path: corpus name})."""
    items, layouts, corpus_of = [], {}, {}
    for root, name in zip(data, corpus_names(data)):
        layout, found = _voice_corpus(Path(root), corpus)
        layouts[str(root)] = layout
        items.extend(found)
        corpus_of.update({str(it.path): name for it in found})
        console.print(f"{root}: {layout}, {len(found)} clips of {len({it.speaker for it in found})} speakers")
    held = _resolve_speakers(test_speakers, {it.speaker for it in items})
    return items, layouts, held, corpus_of


def _voice_rows(items, held: list[str], *, feature_set: str, augment: bool, workers: int | None, cache: Path | None,
                console, perturbations: tuple[str, ...] = ()) -> VoiceRows:
    """Each clip's vector (and, with ``augment``, its training speed copies', then one copy per
    name of ``perturbations``), in worker processes, through the cache; unreadable clips are
    reported and skipped."""
    from rich.markup import escape

    t0 = time.time()
    cache_dir = None
    if cache is not None:
        cache_dir = Path(cache)
        cache_dir.mkdir(parents=True, exist_ok=True)
    speeds_train = (1.0, *(AUGMENT_SPEEDS if augment else ()), *perturbations)
    tasks = [(str(it.path), (1.0,) if it.speaker in held else speeds_train, WINDOW, STEP, SAMPLE_RATE,
              str(cache_dir) if cache_dir else None, feature_set in ENCODER_SETS) for it in items]

    workers = worker_count(workers, len(items))
    console.print(f"computing voice features of {len(tasks)} clips"
                  + (f" (+ {len(speeds_train) - 1} augmented copies of each training clip)" if len(speeds_train) > 1
                     else "")
                  + f" with {workers} worker(s)" + (f", cache {cache_dir}" if cache_dir else "") + " ...")
    frames_of: dict[str, list] = {}
    failed: list[tuple[str, str]] = []
    if workers == 1:
        results = map(_voice_window_features, tasks)
        pool = None
    else:

        pool = process_pool(workers)
        results = pool.map(_voice_window_features, tasks, chunksize=8)
    bar = ProgressBar(console, len(tasks), what="voice features")
    try:
        for path, _speeds, frames, err in results:
            bar.advance()
            if frames is None:
                failed.append((path, err))
                console.print(f"[yellow]skipped[/yellow] {escape(err)}")
            else:
                frames_of[path] = frames
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    seconds = time.time() - t0
    console.print(f"  {seconds:.0f} s; {len(frames_of)} clips usable, {len(failed)} skipped")
    rows = [(it, k) for it in items if str(it.path) in frames_of for k in range(len(frames_of[str(it.path)]))]

    def vector(got) -> np.ndarray:
        frames, emb = got if isinstance(got, tuple) else (got, None)
        return clip_vector(feature_set, frames=frames, embedding=emb)

    return VoiceRows(x=np.stack([vector(frames_of[str(it.path)][k]) for it, k in rows]),
                     y=np.array([it.label for it, _ in rows]), groups=np.array([it.speaker for it, _ in rows]),
                     path=np.array([str(it.path) for it, _ in rows]),
                     copy=np.array([k for _, k in rows]), failed=failed, seconds=seconds)


def _fit_voice(model, rows: VoiceRows, train: np.ndarray, console, *, x: np.ndarray | None = None) -> None:
    """Choose C and gamma and fit ``model`` on the training rows (``x``: other vectors of the same rows)."""
    x = rows.x if x is None else x
    t1 = time.time()
    model.fit(x[train], rows.y[train], rows.groups[train], augmented=rows.augmented[train],
              corpora=None if rows.corpus is None else rows.corpus[train],
              progress=lambda msg: console.print("  " + msg))
    console.print(f"  {time.time() - t1:.0f} s; chosen C {model.C_:g}, gamma {model.gamma_x_:g}/d = "
                  f"{model.gamma_:.2e}")


def add_speech_gate(out: Path, sample_rate: int, console) -> bool:
    """Give the voice bundle ``out`` emo's speech-activity gate if it has none: Silero VAD's weights
    and licence from the shipped bundle (converted, not trained: the same for every 16 kHz voice
    model), so music, noise and silence are not classified by the new model either. Returns
    whether it copied them."""
    import shutil

    source = DEFAULT_BUNDLE / VAD_FILE
    if (out / VAD_FILE).is_file() or int(sample_rate) != VAD_RATE or not source.is_file():
        return False
    for name in (VAD_FILE, VAD_LICENSE):
        if (DEFAULT_BUNDLE / name).is_file():
            with atomic_path(out / name) as tmp:
                shutil.copyfile(DEFAULT_BUNDLE / name, tmp)
    console.print(f"{out}/{VAD_FILE}: emo's speech-activity gate (Silero VAD) copied from the shipped bundle "
                  "(--no-vad leaves it out)")
    return True


def bundle_feature_set(out: Path) -> str | None:
    """The feature set of the voice model already in ``out`` (None when it has none that can be read)."""
    try:
        meta = json.loads((Path(out) / "voice.json").read_text())
        fs = meta["features"]["feature_set"]
        return fs if isinstance(fs, str) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_voice_pair(out: Path, *, speaker_norm: bool) -> None:
    """Refuse to retrain only the plain voice model of a bundle that has a speaker-adapted one: the two
    would disagree in features or training clips. Called before any work, so nothing is lost."""
    if speaker_norm:
        return
    stale = sorted(p.name for p in Path(out).glob("voice_speaker.*")) if Path(out).is_dir() else []
    if stale:
        raise ModelError(f"{out}: holds a speaker-adapted voice model ({', '.join(stale)}) made with the plain one; "
                         "retraining only the plain model would leave the two disagreeing in features and clips: "
                         f"add --adapted-model to retrain both, or delete {Path(out) / 'voice_speaker.*'} first")


@dataclass(frozen=True)
class VoiceTrainOptions:
    """How ``emo train-audio`` trains a voice model (the command line's options; voice.json records them).

    ``layout``: the corpora's layout (None: detected); ``test_speakers``: speakers held out and
    reported; ``feature_set``: None keeps the bundle's own (else the default); ``balanced``:
    class weights; ``augment``: 0.9x/1.1x speed copies; ``repeats`` and ``seed``: the speaker-grouped
    search for C and gamma (``c_grid``: its C values, None for the default grid); ``workers`` and
    ``cache``: feature extraction; ``gamma_grid``: the gammas searched (None: the default);
    ``select_by``: "speaker" folds or "corpus" (leave one corpus out); ``speaker_norm``: also the
    speaker-normalised model;
    ``perturbations``: noise or reverb copies; ``vad``: copy the speech gate into the bundle.
    """

    layout: str | None = None
    test_speakers: tuple[str, ...] = ()
    feature_set: str | None = None
    balanced: bool = True
    augment: bool = True
    repeats: int = 3
    seed: int = 0
    workers: int | None = None
    cache: Path | None = None
    c_grid: tuple[float, ...] | None = None
    gamma_grid: tuple[float, ...] | None = None
    select_by: str = "speaker"
    speaker_norm: bool = False
    perturbations: tuple[str, ...] = ()
    vad: bool = True


def train_audio_command(*, data: list[Path], out: Path, options: VoiceTrainOptions, console) -> dict:
    """Extract voice features of one or more corpora (``data``), fit a :class:`VoiceModel` on the speakers
    not held out, report the held-out speakers, and save voice.npz / voice.json into ``out``.

    With ``augment``, every training clip also contributes 0.9x and 1.1x speed copies
    (:data:`AUGMENT_SPEEDS`); they are trained on but never scored, and held-out speakers are
    never augmented. ``perturbations`` (names of :data:`emocli.voice.features.PERTURBATIONS`) add
    one copy each of every training clip: pink noise at 10-20 dB below the speech, or a
    synthetic room's reverberation (RT60 0.3-0.9 s). ``select_by`` "corpus" chooses C and gamma by
    leaving each corpus out in turn; voice.json's validation then holds the left-out table.

    With ``speaker_norm``, a second model is fitted on features z-normalised per speaker
    (:mod:`emocli.voice.speaker`; each speed copy of a speaker counts as a speaker of its own, its
    statistics from its own clips) and saved beside the plain one as voice_speaker.*; held-out
    speakers are reported normalised by their own clips' statistics. With ``vad``, a bundle
    without a speech-activity gate gets the shipped one (:func:`add_speech_gate`)."""
    o = options
    check_voice_pair(out, speaker_norm=o.speaker_norm)
    feature_set = _feature_set_for(out, o, console)
    items, layouts, held, corpus_of = _voice_corpora(data, o.layout, list(o.test_speakers), console)
    if o.select_by == "corpus" and len(set(corpus_of.values())) < 2:
        raise DatasetError("--select-by corpus leaves each corpus out in turn: give two corpora or more")
    rows = _voice_rows(items, held, feature_set=feature_set, augment=o.augment, workers=o.workers, cache=o.cache,
                       console=console, perturbations=tuple(o.perturbations))
    rows.corpus = np.array([corpus_of[p] for p in rows.path])
    train = ~np.isin(rows.groups, held)
    if len(np.unique(rows.groups[train])) < 2:
        raise DatasetError("fewer than 2 training speakers are left; hold out fewer --test-speakers")

    def new_model() -> VoiceModel:
        return VoiceModel(feature_set=feature_set, class_weight="balanced" if o.balanced else None,
                          selection=Selection(C_grid=tuple(o.c_grid or DEFAULT_C_GRID),
                                              gamma_grid=tuple(o.gamma_grid or DEFAULT_GAMMA_GRID),
                                              n_repeats=o.repeats, seed=o.seed, by=o.select_by))

    trained_on = {"corpora": layouts, "n_clips": int((train & ~rows.augmented).sum()),
                  "speakers": sorted(set(rows.groups[train])),
                  "augment_speeds": list(AUGMENT_SPEEDS) if o.augment else []}
    if o.perturbations:
        trained_on["perturbations"] = list(o.perturbations)
    extra: dict = {"trained_on": trained_on, "held_out_speakers": held, "extraction_seconds": round(rows.seconds, 1),
                   "skipped_files": [{"path": p, "error": e} for p, e in rows.failed]}
    model, saved = _plain_voice_model(new_model(), rows, out=out, extra=extra, held=held,
                                      speaker_norm=o.speaker_norm, console=console)
    if o.speaker_norm:
        _speaker_voice_model(new_model(), rows, out=out, extra=extra, held=held, console=console)
        saved = f"voice.npz, voice.json and {MODEL_NAME}.*"
    if o.vad:
        add_speech_gate(out, model.sample_rate, console)
    failed_paths = {str(p) for p, _ in rows.failed}
    fingerprints.write(out, {"voice.svm": [it.path for it in items if it.speaker not in held
                                           and str(it.path) not in failed_paths]}, replace=("voice",))
    write_manifest(out, labels=list(LABELS))
    console.print(f"saved {out}/{saved}")
    return model.metadata(extra)


def _feature_set_for(out: Path, o: VoiceTrainOptions, console) -> str:
    """The feature set to train with (the bundle's own unless given), checked with the perturbations."""
    feature_set = o.feature_set
    if feature_set is None:
        kept = bundle_feature_set(out)
        feature_set = kept or DEFAULT_FEATURE_SET
        console.print(f"feature set {feature_set}" + (f" (the one {out}/voice.json was trained on; --feature-set "
                                                      "changes it)" if kept else " (the default)"))
    feature_dimension(feature_set)  # unknown names fail before any work
    unknown = sorted(set(o.perturbations) - set(PERTURBATIONS))
    if unknown:
        raise ParameterError(f"unknown perturbation(s) {', '.join(unknown)}; use {', '.join(PERTURBATIONS)}")
    return feature_set


def _plain_voice_model(model: VoiceModel, rows: VoiceRows, *, out: Path, extra: dict, held: list[str],
                       speaker_norm: bool, console) -> tuple[VoiceModel, str]:
    """The plain model fitted on the speakers not ``held`` out, reported and saved (or, when only the
    speaker-normalised model is new, the bundle's own kept): (model, what was saved)."""
    test = np.isin(rows.groups, held)
    train = ~test
    reused = _same_plain_model(out, model, extra["trained_on"], held) if speaker_norm else None
    if reused is not None:
        console.print(f"{out}/voice.json: a plain model trained on the same clips, features and selection is there; "
                      "kept as it is (only the speaker-normalised model is fitted)")
        return reused, "voice.* (kept)"
    n_real = extra["trained_on"]["n_clips"]
    how = ("leaving each corpus out in turn" if model.select_by == "corpus" else
           f"{model.n_repeats} x {model.n_folds}-fold speaker-grouped splits")
    console.print(f"choosing C and gamma on {how} of {n_real} clips"
                  + (f" (+ {int(rows.augmented[train].sum())} augmented)" if rows.augmented[train].any() else "")
                  + f", {len(np.unique(rows.groups[train]))} speakers ({model.feature_set}, {rows.x.shape[1]} "
                  "features) ...")
    _fit_voice(model, rows, train, console)
    _print_scores(console, f"validation ({model.select_by}-grouped)", model.validation_)
    _print_left_out(console, model.validation_)
    model_extra = dict(extra)
    if test.any():
        model_extra["test"] = _held_out_scores(model, rows.x[test], rows.y[test], held, console, "held-out speakers")
    model.save(out, extra=model_extra)
    return model, "voice.npz and voice.json"


def _speaker_voice_model(sp: VoiceModel, rows: VoiceRows, *, out: Path, extra: dict, held: list[str],
                         console) -> None:
    """The speaker-normalised model (voice_speaker.*) fitted on the speakers not ``held`` out, reported
    and saved."""
    test = np.isin(rows.groups, held)
    train = ~test
    # a speed copy sounds like another speaker: it is normalised by its own statistics
    xs = normalise_groups(rows.x, [f"{g}#{k}" for g, k in zip(rows.groups, rows.copy)])
    console.print("speaker-normalised model: features z-normalised with each speaker's own mean and std ...")
    _fit_voice(sp, rows, train, console, x=xs)
    _print_scores(console, f"speaker-normalised validation ({sp.select_by}-grouped)", sp.validation_)
    _print_left_out(console, sp.validation_)
    sp_extra = {**extra, "adaptation": {"kind": "speaker", "normalisation": "z-score of each feature with the "
                                        "speaker's own mean and std over their clips (labels unused)",
                                        "min_clips": MIN_CLIPS}}
    if test.any():
        sp_extra["test"] = _held_out_scores(sp, xs[test], rows.y[test], held, console,
                                            "held-out speakers, speaker-normalised")
    sp.save(out, extra=sp_extra, name=MODEL_NAME, packed=True)  # read once per adapted run: packed


def _print_left_out(console, validation: dict) -> None:
    """The leave-one-corpus-out table of a selection by corpus (nothing otherwise)."""
    for name, r in validation.get("per_corpus", {}).items():
        console.print(f"  left out {name}: {r['n']} clips, accuracy {r['accuracy']:.3f}, UAR {r['uar']:.3f}, "
                      f"largest prediction share {r['top_share']:.2f} ({r['top_class']})")


def _same_plain_model(out: Path, model, trained_on: dict, held: list[str]):
    """The plain voice model already in ``out`` when it was trained exactly as ``model`` would be
    (same corpora, clips, speakers held out, features and selection), else None."""

    path = Path(out) / "voice.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        sel, svm = meta["selection"], meta["svm"]
        same = (meta["trained_on"] == json.loads(json.dumps(trained_on)) and meta["held_out_speakers"] == held
                and meta["features"]["feature_set"] == model.feature_set and sel["repeats"] == model.n_repeats
                and sel["seed"] == model.seed and sel["C_grid"] == [float(c) for c in model.C_grid]
                and sel["gamma_grid_x"] == [float(g) for g in model.gamma_grid]
                and sel.get("by", "speaker") == model.select_by and svm["class_weight"] == model.class_weight)
        return VoiceModel.load(out) if same else None
    except (OSError, ValueError, KeyError, TypeError, ModelError):
        return None


def _held_out_scores(model, x: np.ndarray, y: np.ndarray, held: list[str], console, title: str) -> dict:
    """Accuracy, UAR, recall and confusion of ``model`` on held-out rows (printed too)."""
    pred = model.predict(x)
    labels = model.labels
    known = np.isin(y, labels)
    sc = classification_report([labels.index(v) for v in y[known]], [labels.index(v) for v in pred[known]], labels,
                               absent=None)
    sc["speakers"] = held
    _print_scores(console, f"{title} {', '.join(held)}", sc)
    return sc
