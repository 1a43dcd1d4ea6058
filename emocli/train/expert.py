"""Fine-tune the RAF-DB MobileFaceNet on the colour face corpora (``emo train-expert``).

The face expert learned from RAF-DB alone; the face head on top of it is a linear layer. This
trains the expert's last stage (the 7x7 blocks, the global depthwise convolution, the 512-d
embedding and its classifier: 0.6 M of its 1.2 M weights) on the *training* parts of AffectNet, SFEW
and RAF-DB, the same faces ``emo train-head`` fits the head on, aligned as ``predict`` aligns
them (YuNet's landmarks on the ArcFace template). The trunk before it stays frozen, so its output
is computed once per face and an epoch costs minutes, not the 18 of the whole network, on two
CPU cores. Loss: the classifier's cross-entropy, each face weighted 1/sqrt(n) of its corpus x
class. After each epoch the expert's own scores are measured on the calib halves
(``emo calibrate-experts``' AffectNet and SFEW halves, ``emo train-head``'s RAF-DB half) and the
epoch with the best mean UAR is kept; the test halves are not read.

``--from-stage 14x14`` (or ``28x28``, ``all``) trains from an earlier stage on: the frozen part
before it still runs, so each epoch reads the aligned faces themselves, each changed the way video
frames differ from photographs (:func:`emocli.train.augment.frame_like`); 10-13 min an epoch from
the 14x14 stage on two CPU cores. The shipped expert is the last-stage one trained on from 14x14.

    emo train-expert ../shared/data --out runs/expert        # a bundle with the new expert
    emo calibrate-experts ../shared/data --bundle runs/expert --write
    emo train-head ../shared/data --bundle runs/expert --write

The new bundle is a copy of ``--bundle`` (default: the shipped one) with the new
``face_expert_rafdb.onnx``; its face head and small-face mix, fitted on the old expert, are left out
until ``emo train-head`` and ``emo calibrate-small-faces`` fit them again. Aligned crops are cached in ``--cache``.
Needs the ``onnx`` package (``pip install 'emo[train]'``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emocli import fingerprints
from emocli.bundle import models_dir, read_manifest_unchecked, write_manifest
from emocli.choices import DEFAULT_EXPERT_STAGE
from emocli.errors import DatasetError, ModelError, OutputError, ParameterError
from emocli.face.detect import YUNET_FILE
from emocli.face.experts import EXPERT_SIZE, EXPERTS_FILE, HEAD_FILE, RAFDB_FILE, ExpertSet, YuNetLandmarks
from emocli.face.mobilefacenet import LAST_STAGE, STAGE_INPUTS, to_keras, write_onnx
from emocli.files import atomic_write_text
from emocli.labels import LABELS
from emocli.media.ffmpeg import read_image
from emocli.report.metrics import classification_report
from emocli.train.calibration import FINE_TUNE_INFO, HELDOUT, align_crops, expert_key, face_sets, rafdb_halves
from emocli.train.head import balance_weights

TRAIN = ("affectnet-train", "sfew-train", "rafdb-train")
CALIB = ("affectnet-calib", "sfew-calib", "rafdb-calib")
CHUNK = 256  # faces aligned per step


@dataclass
class ExpertArgs:
    """What one fine-tuning run is given (the CLI's options)."""
    data: Path
    bundle: Path
    out: Path
    epochs: int = 5
    learning_rate: float = 1e-4
    batch_size: int = 64
    cache: Path = Path("runs/face_expert")
    seed: int = 0
    mirror: bool = False  # train on each face and its mirror image
    from_stage: str = DEFAULT_EXPERT_STAGE  # first stage trained (STAGE_INPUTS); before 7x7: on augmented images


def aligned_faces(name: str, paths: list[Path], landmarker, cache: Path) -> np.ndarray:
    """Aligned EXPERT_SIZE x EXPERT_SIZE uint8 RGB crops of a set, as ``predict`` gives the expert; cached, keyed by the
    image list."""
    key = hashlib.sha256("\n".join(str(p) for p in paths).encode()).hexdigest()
    path = cache / f"{name}.crops.npz"
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == key:
                return z["crops"]
    out = []
    t0 = time.perf_counter()
    for k in range(0, len(paths), CHUNK):
        aligned, _, _ = align_crops([read_image(p) for p in paths[k:k + CHUNK]], landmarker)
        out.append(np.asarray(aligned, np.uint8).reshape(-1, EXPERT_SIZE, EXPERT_SIZE, 3))
        print(f"{name}: aligned {min(k + CHUNK, len(paths))}/{len(paths)} faces "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    crops = np.concatenate(out) if out else np.zeros((0, EXPERT_SIZE, EXPERT_SIZE, 3), np.uint8)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, crops=crops, key=np.array(key))
    return crops


def trunk_outputs(trunk, faces: np.ndarray, batch: int = 128) -> np.ndarray:
    """The frozen trunk's output (N, 14, 14, 128) float16 for uint8 faces."""
    out = [np.asarray(trunk((faces[k:k + batch].astype(np.float32) / 255.0 - 0.5) / 0.5, training=False), np.float16)
           for k in range(0, len(faces), batch)]
    return np.concatenate(out) if out else np.zeros((0,) + tuple(trunk.output.shape[1:]), np.float16)


def calib_uar(last, acts: dict[str, np.ndarray], sets, names: tuple[str, ...] = CALIB) -> dict[str, float]:
    """The expert's own UAR on each calib set in ``names``."""
    out = {}
    for name in names:
        logits = np.asarray(last.predict(acts[name].astype(np.float32), batch_size=256, verbose=0)[1])
        out[name] = classification_report(sets[name][1], logits.argmax(1), LABELS)["uar"]
    return out


def keep_best_epoch(model, epochs: int, train_epoch, calib_uars) -> tuple[list[dict], int, float]:
    """Run ``train_epoch()`` ``epochs`` times; before the first (epoch 0: the expert as it came) and after
    each, measure ``calib_uars()`` (UAR per calib set) and log it; leave the best epoch's weights (by mean
    calib UAR) in ``model``. Returns (history, the chosen epoch, its mean calib UAR)."""
    history, best = [], None
    for epoch in range(epochs + 1):
        t0 = time.perf_counter()
        if epoch:
            train_epoch()
        uars = calib_uars()
        mean = float(np.mean(list(uars.values())))
        history.append({"epoch": epoch, "seconds": round(time.perf_counter() - t0, 1), "calib_uar": uars,
                        "mean_calib_uar": mean})
        print(f"epoch {epoch}: {time.perf_counter() - t0:.0f} s; calib UAR "
              + " ".join(f"{n.split('-')[0]} {u:.3f}" for n, u in uars.items()) + f" mean {mean:.3f}",
              file=sys.stderr, flush=True)
        if best is None or mean > best[0]:
            best = (mean, epoch, model.get_weights())
    mean, epoch, weights = best
    model.set_weights(weights)
    return history, epoch, mean


def train_last_stage(last, acts: dict[str, np.ndarray], sets, train: list[str], calib: tuple[str, ...], *,
                     epochs: int, learning_rate: float, batch_size: int) -> tuple[list[dict], int, float]:
    """Train the last stage on the trunk outputs of the ``train`` sets (taken out of ``acts``), each face
    weighted 1/sqrt(n) of its corpus x class; after each epoch (epoch 0: the expert as it came) measure
    its own UAR on the ``calib`` sets, and leave the best epoch's weights in ``last``.
    Returns (history, the chosen epoch, its mean calib UAR)."""
    import keras

    model = keras.Model(last.inputs[0], keras.layers.Softmax(dtype="float32")(last.outputs[1]))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy")
    x = np.concatenate([acts.pop(n) for n in train]).astype(np.float32)
    y = keras.utils.to_categorical(np.concatenate([sets[n][1] for n in train]), len(LABELS))
    w = balance_weights([(n, sets[n][1]) for n in train])
    return keep_best_epoch(
        last, epochs, lambda: model.fit(x, y, sample_weight=w, batch_size=batch_size, epochs=1, shuffle=True,
                                        verbose=0),
        lambda: calib_uar(last, acts, sets, calib))


def normalise(faces: np.ndarray) -> np.ndarray:
    """uint8 RGB faces as the expert reads them: float32 in [-1, 1]."""
    return (faces.astype(np.float32) / 255.0 - 0.5) / 0.5


def train_from_images(net, faces: dict[str, np.ndarray], sets, train: list[str], calib: tuple[str, ...],
                      args: ExpertArgs) -> tuple[list[dict], int, float]:
    """Train ``net`` from ``args.from_stage`` on (frame-like augmented) images of the ``train`` sets, each
    face weighted 1/sqrt(n) of its corpus x class, the stages before it frozen; after each epoch (epoch 0:
    the expert as it came) measure its own UAR on the ``calib`` sets and leave the best epoch's weights
    in ``net``. Returns (history, the chosen epoch, its mean calib UAR)."""
    import keras

    from emocli.train.augment import frame_like

    start = STAGE_INPUTS[args.from_stage]
    frozen = start is not None
    for layer in net.layers:
        layer.trainable = not frozen
        if layer.name == start:
            frozen = False
    model = keras.Model(net.inputs[0], keras.layers.Softmax(dtype="float32")(net.outputs[1]))
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss="categorical_crossentropy")
    x = np.concatenate([faces[n] for n in train])
    y = keras.utils.to_categorical(np.concatenate([sets[n][1] for n in train]), len(LABELS))
    w = balance_weights([(n, sets[n][1]) for n in train]).astype(np.float32)
    rng = np.random.default_rng(args.seed)

    def train_epoch() -> None:
        order = rng.permutation(len(x))
        for k in range(0, len(order), args.batch_size):
            idx = np.sort(order[k:k + args.batch_size])
            model.train_on_batch(normalise(frame_like(x[idx], rng)), y[idx], sample_weight=w[idx])

    def calib_uars() -> dict[str, float]:
        return {name: classification_report(sets[name][1], np.asarray(net.predict(
            normalise(faces[name]), batch_size=128, verbose=0)[1]).argmax(1), LABELS)["uar"] for name in calib}

    return keep_best_epoch(net, args.epochs, train_epoch, calib_uars)


def check_args(args: ExpertArgs) -> None:
    """Refuse, before any work, a data folder without the corpora or an output that would overwrite."""
    missing = [sub for sub in (*HELDOUT, "rafdb/train") if not (Path(args.data) / sub).is_dir()]
    if missing:
        raise DatasetError(f"{args.data}: no {', '.join(missing)} folder(s); give the folder that holds affectnet/, "
                           "sfew/ and rafdb/ (../shared/data)")
    if not (Path(args.bundle) / RAFDB_FILE).is_file():
        raise DatasetError(f"{args.bundle}: no {RAFDB_FILE} to fine-tune; pass --bundle with a bundle that has it")
    out = Path(args.out)
    if out.resolve() == Path(args.bundle).resolve():
        raise OutputError(f"{out}: the bundle the expert comes from; pass a new folder to --out")
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"{out}: folder not empty; pass a new folder to --out (or remove it)")
    if args.from_stage not in STAGE_INPUTS:
        raise ParameterError(f"--from-stage {args.from_stage}: not a stage; pass one of {', '.join(STAGE_INPUTS)}")
    if args.mirror and args.from_stage != DEFAULT_EXPERT_STAGE:  # the augmentation mirrors half the faces already
        raise ParameterError(f"--mirror with --from-stage {args.from_stage}: earlier stages train on augmented "
                             "images that are mirrored half the time; leave --mirror out")
    cache = Path(args.cache).resolve()
    if cache == out.resolve() or out.resolve() in cache.parents:
        raise OutputError(f"{out}: would hold the crop cache ({args.cache}); pass --out and --cache folders apart")


def run(args: ExpertArgs) -> dict:
    """Fine-tune the expert from ``args.from_stage`` on, keep the best epoch on the calib halves, write the
    bundle. Returns the report."""
    import keras

    check_args(args)
    sets = face_sets(Path(args.data))
    empty = [n for n in (*TRAIN, "affectnet-calib", "sfew-calib", "rafdb-heldout") if not len(sets[n][0])]
    if empty:
        raise DatasetError(f"{args.data}: no faces in {', '.join(empty)}; each corpus needs enough faces per class "
                           "for a training part and calib halves")
    rafdb_halves(sets, {"rafdb-heldout": {}})  # the RAF-DB calib half of emo train-head (paths and labels only)
    keras.utils.set_random_seed(args.seed)
    src = Path(args.bundle) / RAFDB_FILE
    net = to_keras(src)
    landmarker = YuNetLandmarks(models_dir() / "detectors" / YUNET_FILE)
    t0 = time.perf_counter()
    faces = {n: aligned_faces(n, sets[n][0], landmarker, Path(args.cache)) for n in TRAIN + CALIB}
    if args.from_stage != DEFAULT_EXPERT_STAGE:
        history, epoch, mean = train_from_images(net, faces, sets, list(TRAIN), CALIB, args)
        return finish(args, net, sets, history, epoch, mean)
    trunk = keras.Model(net.inputs[0], net.get_layer(LAST_STAGE).output)
    last = keras.Model(net.get_layer(LAST_STAGE).output, net.outputs)
    acts = {n: trunk_outputs(trunk, faces[n]) for n in TRAIN + CALIB}
    if args.mirror:  # each training face once more, mirrored: the trunk is not symmetric, so it runs again
        acts.update({f"{n}-mirrored": trunk_outputs(trunk, faces[n][:, :, ::-1]) for n in TRAIN})
        sets.update({f"{n}-mirrored": sets[n] for n in TRAIN})
    del faces
    train = [n for n in acts if n not in CALIB]
    print(f"trunk outputs of {sum(len(v) for v in acts.values())} faces in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr, flush=True)

    history, epoch, mean = train_last_stage(last, acts, sets, train, CALIB, epochs=args.epochs,
                                            learning_rate=args.learning_rate, batch_size=args.batch_size)
    return finish(args, net, sets, history, epoch, mean)


def finish(args: ExpertArgs, net, sets, history: list[dict], epoch: int, mean: float) -> dict:
    """Write the bundle with the chosen epoch's expert (none when no epoch beat the expert as it came).
    Returns the report."""
    report = {"epochs": history, "chosen_epoch": epoch, "mean_calib_uar": mean, "trained_on": {
        n: len(sets[n][1]) for n in TRAIN}}
    if epoch == 0:
        raise ModelError(f"{args.data}: no epoch beat the expert as it came on the calib halves; nothing written "
                         "(try a lower --learning-rate)")
    write_bundle(args, net, report, [p for n in TRAIN for p in sets[n][0]])
    return report


def write_bundle(args: ExpertArgs, net, report: dict, train_paths: list[Path]) -> None:
    """``args.out``: a copy of the bundle with the fine-tuned expert, without the face head."""
    out, src = Path(args.out), Path(args.bundle)
    shutil.copytree(src, out, dirs_exist_ok=True)
    changed = write_onnx(net, src / RAFDB_FILE, out / RAFDB_FILE)
    # a bundle never calibrated (the recipe's, before `emo calibrate-experts`) gets the defaults
    path = out / EXPERTS_FILE
    es = ExpertSet.from_dict(json.loads(path.read_text()), path) if path.is_file() else ExpertSet()
    es.head_ = es.small_ = None  # fitted on the old expert's embedding and scores
    (out / HEAD_FILE).unlink(missing_ok=True)
    before = es.info_.get(FINE_TUNE_INFO)  # the expert was fine-tuned already: keep how, one level deep
    es.info_[FINE_TUNE_INFO] = {
        **report, "from_sha256": expert_key(src), "tensors_changed": changed,
        "learning_rate": args.learning_rate, "batch_size": args.batch_size, "seed": args.seed,
        "balance": "1/sqrt(n) per corpus x class", "mirror": args.mirror, "from_stage": args.from_stage,
        "augmentation": "emocli.train.augment.FrameLike()" if args.from_stage != DEFAULT_EXPERT_STAGE else None,
        "command": f"emo train-expert DATA --bundle {src} --out {out} --epochs {args.epochs} "
                   f"--learning-rate {args.learning_rate:g} --batch-size {args.batch_size} --seed {args.seed}"
                   + (" --mirror" if args.mirror else "")
                   + (f" --from-stage {args.from_stage}" if args.from_stage != DEFAULT_EXPERT_STAGE else ""),
        **({"after": before.get("command")} if before else {})}
    atomic_write_text(out / EXPERTS_FILE, json.dumps(es.to_dict(), indent=2) + "\n")
    fingerprints.add(out, "face.rafdb-expert-tuned", train_paths)
    man = read_manifest_unchecked(out)
    write_manifest(out, labels=man["labels"], settings=man.get("settings"))
    print(f"wrote {out} (epoch {report['chosen_epoch']}, mean calib UAR {report['mean_calib_uar']:.3f}); its face "
          f"head is left out, fitted on the old expert: next\n  emo calibrate-experts DATA --bundle {out} --write\n"
          f"  emo train-head DATA --bundle {out} --write\n  emo calibrate-small-faces DATA --bundle {out} --write",
          file=sys.stderr)
