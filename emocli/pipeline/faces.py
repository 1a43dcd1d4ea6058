"""The face stage: faces found, cropped and aligned in decoded frames, scored in batches by the
face network and its experts, and pooled into a clip's (or a track's, or a window's) face score.

:class:`FaceStage` holds what the bundle's face part loads once (network, experts, head,
detector); :meth:`FaceStage.chunks` runs no network (bulk workers call it) and a
:class:`FaceAccumulator` scores what it yields.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from dataclasses import dataclass, fields
from typing import Any, Iterator

import numpy as np

from emocli.choices import POOLINGS
from emocli.bundle import models_dir, read_json_document
from emocli.errors import MediaError, ModelError, NoFaceError, ParameterError
from emocli.face.detect import YUNET_FILE, FaceLinker, FaceTracker, every_face_in_frames, faces_in_frames, get_detector
from emocli.face.experts import (CROP_LANDMARKS, EMBEDDING_SIZE, EXPERT_MIN_FACE, EXPERT_SIZE, EXPERTS_FILE,
                                 HEAD_FILE, RAFDB_FILE, ExpertSet, OnnxExpert, align_face, expert_applies,
                                 get_landmarker, is_grey, parse_experts, softmax)
from emocli.face.model import FaceModel, Preprocessing, prepare_faces, read_face_meta
from emocli.fusion import align, normalise_present
from emocli.labels import LABELS
from emocli.media.ffmpeg import check_frame_size, ended_early, iter_frames, media_seconds, read_image
from emocli.pipeline.options import NO_FACE_NOTE, Options, Progress, Result, scores_dict, zero_nan
from emocli.quiet_imports import gpu_available

_ENDED_EARLY = "video stream ended early (damaged file): scored the frames decoded"
# A still image whose shorter side is at most this many pixels is taken for a face crop when the
# detector finds no face in it (FER2013 is 48 px, RAF-DB 100, AffectNet 96, SFEW 143): detectors
# miss faces that fill the whole image.
CROP_MAX_SIDE = 160
NEUTRAL_FLOOR = 0.05  # the least weight a frame gets under "expressive" pooling


def pool_frames(scores: np.ndarray, *, method: str = "mean", labels=LABELS) -> np.ndarray:
    """A clip's face score from its frames' scores (n, K), rows summing to 1.

    ``mean``: the thesis's average. ``expressive``: a weighted average whose weight per frame
    is its probability of *not* being neutral (at least ``NEUTRAL_FLOOR``), so that the many
    neutral frames of a person talking do not outvote the few that show the emotion, while a
    clip that is neutral throughout (all weights equally small) stays neutral.
    """
    scores = np.asarray(scores, np.float64)
    if method == "mean" or "neutral" not in labels:
        return scores.mean(0)
    w = pool_weights(scores, method=method, labels=labels)
    return (w[:, None] * scores).sum(0) / w.sum()


def pool_weights(scores: np.ndarray, *, method: str = "mean", labels=LABELS) -> np.ndarray:
    """Each frame's weight in :func:`pool_frames`: float64 (n,) (a stream pools by running sums of these)."""
    scores = np.asarray(scores, np.float64)
    if method not in POOLINGS:
        raise ParameterError(f"pooling must be one of {', '.join(POOLINGS)}, got {method!r}")
    if method == "mean" or "neutral" not in labels:
        return np.ones(len(scores))
    return np.maximum(1.0 - scores[:, list(labels).index("neutral")], NEUTRAL_FLOOR)



# A worker keeps up to this many bytes of one input's prepared faces in memory; later chunks wait in
# files under the run's spool folder, so --workers memory does not grow with a clip's length.
SPOOL_AFTER_BYTES = 32 * 2**20


@dataclass
class FaceBatch:
    """Faces found in decoded frames, ready for the networks (n faces; see :meth:`FaceStage.chunks`)."""

    times: np.ndarray  # (n,) seconds of their frames
    inputs: np.ndarray  # (n, size, size, C) float32 network input
    aligned: np.ndarray | None = None  # (n, 112, 112, 3) uint8 faces aligned for the rafdb expert, or None
    mask: np.ndarray | None = None  # (n,) bool: the faces the rafdb expert scores (None with ``aligned``)
    boxes: np.ndarray | None = None  # (n, 4) float32 x0, y0, x1, y1 in the input's pixels (NaN: no box)
    tracks: np.ndarray | None = None  # (n,) int track ids with ``--faces all`` (-1: none)
    main: np.ndarray | None = None  # (n,) bool: each frame's main face, with ``--faces all``
    # (n,) int8: faces under EXPERT_MIN_FACE px the expert scores too (1 colour, 2 grey; 0 the others),
    # mixed with emo-cnn by the bundle's small-face settings instead of the head
    small: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.times)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields that hold arrays, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def select(self, rows) -> "FaceBatch":
        """The faces ``rows`` picks (a bool mask or a slice)."""
        return FaceBatch(**{k: v[rows] for k, v in self.arrays().items()})

    @classmethod
    def concat(cls, batches: list["FaceBatch"]) -> "FaceBatch":
        """One batch of several, in order; a field some of them lack is None."""
        names = [f.name for f in fields(cls)]
        return cls(**{k: (np.concatenate([getattr(b, k) for b in batches])
                          if all(getattr(b, k) is not None for b in batches) else None) for k in names})


class FaceChunks:
    """Stage 1's faces of one input, :class:`FaceBatch` by batch as they were decoded.

    Batches stay in memory up to :data:`SPOOL_AFTER_BYTES`, then go to .npz files in ``spool`` (a
    folder the caller owns and removes); :meth:`drain` reads each back and deletes it.
    """

    def __init__(self, spool: Path | None = None):
        self.spool, self.chunks, self.nbytes = spool, [], 0

    def add(self, batch: FaceBatch) -> None:
        size = sum(a.nbytes for a in batch.arrays().values())
        if self.spool is None or self.nbytes + size <= SPOOL_AFTER_BYTES:
            self.chunks.append(batch)
            self.nbytes += size
            return
        fd, name = tempfile.mkstemp(suffix=".npz", dir=self.spool)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **batch.arrays())
        self.chunks.append(Path(name))

    def drain(self) -> Iterator[FaceBatch]:
        """Each batch in order; one read back from the spool is deleted there."""
        while self.chunks:
            chunk = self.chunks.pop(0)
            if isinstance(chunk, Path):
                with np.load(chunk) as z:
                    arrays = {k: z[k] for k in z.files}
                chunk.unlink(missing_ok=True)
                chunk = FaceBatch(**arrays)
            yield chunk

    def discard(self) -> None:
        """Drop the chunks not drained (their spool files too)."""
        for chunk in self.chunks:
            if isinstance(chunk, Path):
                chunk.unlink(missing_ok=True)
        self.chunks = []


class FaceStage:
    """The face half of a pipeline: the bundle's face network, experts and head, and the detector.

    ``labels`` is the fusion's label order, the one every face score leaves this stage in
    (:meth:`to_fusion`). With ``load=False`` (the bundle has no face model, or ``--no-face``)
    nothing is loaded and an accumulator of this stage stays empty. ``role="prepare"`` (bulk
    workers) loads no network: only :meth:`chunks` is called there.
    """

    def __init__(self, bundle: Path, files, options: Options, *, labels, role: str = "full", load: bool = True):
        self.bundle, self.options, self.role, self.labels = bundle, options, role, list(labels)
        self.gpu = False
        self.model = self.pre = self.experts = self.expert_net = self._landmarker = self._detector = None
        self.experts_used: tuple[str, ...] = ()
        if not load:
            return
        self.pre = Preprocessing.from_dict(read_face_meta(bundle)["preprocessing"])
        if role == "full":
            # On a GPU, Keras scores the batches there; on a CPU the bundle's face.tflite
            # runs on LiteRT, and TensorFlow is never imported (seconds of start-up).
            self.gpu = gpu_available()
            self.model = FaceModel.load(bundle, runtime=not self.gpu)
        self._load_experts(files)

    def _load_experts(self, files) -> None:
        """The face experts in use (``--face-experts``) and their calibration (experts.json)."""
        self.experts = ExpertSet(names=("emo-cnn",))
        if EXPERTS_FILE in files and RAFDB_FILE in files:
            doc = read_json_document(self.bundle / EXPERTS_FILE, fmt="emo-experts", what="face-expert settings",
                                     missing="missing", invalid="not valid JSON ({exc}); restore the bundle")
            self.experts = ExpertSet.from_dict(doc, self.bundle / EXPERTS_FILE)
        try:
            self.experts_used = parse_experts(self.options.face_experts, self.experts.names, self.experts.default_)
        except ValueError as exc:
            raise ModelError(f"{self.bundle}: {exc}") from None
        self.expert_net = self._landmarker = None
        if "rafdb" in self.experts_used and self.role == "full":
            self.expert_net = OnnxExpert(self.bundle / RAFDB_FILE)
            head = self.experts.head_
            if head is not None and head.n_inputs != EMBEDDING_SIZE + self.model.n_features:
                raise ModelError(f"{self.bundle / HEAD_FILE}: the face head takes {head.n_inputs} inputs but the "
                                 f"experts give {EMBEDDING_SIZE} + {self.model.n_features}; rerun "
                                 "`emo train-head DATA --model BUNDLE --write` for this bundle")

    @property
    def head(self):
        """The experts' learned head when both experts are in use and the bundle has one, else None."""
        if self.experts is None or self.experts.head_ is None or not {"emo-cnn", "rafdb"} <= set(self.experts_used):
            return None
        return self.experts.head_

    @property
    def landmarker(self):
        if self._landmarker is None:
            self._landmarker = get_landmarker(str(models_dir() / "detectors" / YUNET_FILE))
        return self._landmarker

    @property
    def detector(self):
        if self._detector is None:
            self._detector = get_detector(self.options.detector)
        return self._detector

    def chunks(self, info, rec, progress: Progress | None = None,
               ) -> "Iterator[tuple[np.ndarray, np.ndarray, Any, Any, np.ndarray, Any, Any]]":
        """(times, network inputs, aligned faces, mask, boxes, tracks, main) for the faces of each decoded frame
        (see :meth:`find`), by chunk.

        Boxes are float32 (n, 4) x0, y0, x1, y1 in the input's own pixels (NaN where there is none).
        With ``--faces all``, tracks are int (n,) track ids and main bool (n,) marks each frame's
        main face; else both are None.

        Aligned faces (uint8 (n, 112, 112, 3)) and the mask of those the rafdb expert scores are
        made only when it is in use (else both are None); see :meth:`aligned`. ``rec`` (a
        Result or Prepared) receives ``frames_seen`` and notes; ``progress`` (see
        :meth:`emocli.pipeline.core.Pipeline.run`) the seconds of video decoded.
        """
        opt = self.options
        tracker, linker = FaceTracker(min_face=opt.min_face), FaceLinker()
        if info.is_image:
            rec.frames_seen = 1
            check_frame_size(info)
            problems: list[str] = []
            img = read_image(info.path, problems=problems)
            if problems:
                rec.notes.append(f"image damaged ({problems[0]}): scored what decoded")
            _, crops, boxes, tracks, main = self.find([img], tracker, linker)
            if not crops and opt.detect is None and min(img.shape[:2]) <= CROP_MAX_SIDE:
                crops, boxes, tracks, main = self.whole([img])
                rec.notes.append(f"no face found in the {img.shape[1]}x{img.shape[0]} image ({opt.detector}): "
                                 "scored it whole as a face crop")
            elif crops and opt.detect is not False:
                rec.notes.append(f"face found by {opt.detector}")
            if not crops:
                damaged = f" (the image is damaged: {problems[0]})" if problems else ""
                raise NoFaceError(f"{info.path}: no face found in the image{damaged}; if the image is already a "
                                  f"cropped face, pass --no-detect (images up to {CROP_MAX_SIDE} px are taken whole "
                                  "without --detect)")
            self.other_faces_note(linker, rec)
            aligned, mask, small = self.aligned([img] * len(crops), boxes, crops)
            yield FaceBatch(np.zeros(len(crops)), prepare_faces(crops, self.pre), aligned, mask,
                            box_array(boxes, 1.0), tracks, main, small)
            return
        n_frames_found = 0
        step = 1.0 / (opt.fps or info.fps or 25.0)
        total = media_seconds(info, opt.max_seconds)
        try:
            for ts, frames in iter_frames(info.path, fps=opt.fps, info=info, max_side=opt.max_side,
                                          max_seconds=opt.max_seconds):
                rec.frames_seen += len(frames)
                if progress is not None:
                    progress("faces", min(float(ts[-1]) + step, total or float("inf")), total)
                idx, crops, boxes, tracks, main = self.find(frames, tracker, linker)
                if crops:
                    n_frames_found += len(set(idx))
                    aligned, mask, small = self.aligned([frames[i] for i in idx], boxes, crops)
                    yield FaceBatch(np.asarray(ts)[idx], prepare_faces(crops, self.pre), aligned, mask,
                                    box_array(boxes, info.width / frames.shape[2] if info.width else 1.0), tracks, main,
                                    small)
        except MediaError:
            if rec.frames_seen == 0:
                raise
            rec.notes.append(_ENDED_EARLY)
        if rec.frames_seen and _ENDED_EARLY not in rec.notes and ended_early(
                info, rec.frames_seen * step, step=step, max_seconds=opt.max_seconds):
            rec.notes.append(_ENDED_EARLY)
        self.frame_notes(rec, n_frames_found)
        self.other_faces_note(linker, rec)

    def find(self, frames, tracker, linker) -> tuple[list[int], list[np.ndarray], list, Any, Any]:
        """(frame indices, crops, detections, tracks, main) of the faces to score in a chunk of frames.

        ``--faces main``: the main face of each frame (the ``linker`` counts the others); tracks and
        main are None. ``--faces all``: every face large enough, with int track ids and bool main
        flags (n,). With ``--no-detect`` each frame is a face crop (``--faces all``: track 0).
        """
        opt = self.options
        if opt.detect is False:
            crops, boxes, tracks, main = self.whole(frames)
            return list(range(len(frames))), crops, boxes, tracks, main
        if opt.faces == "all":
            idx, crops, boxes, tracks, main = every_face_in_frames(frames, detector=self.detector, tracker=tracker,
                                                                   linker=linker, margin=opt.margin)
            return idx, crops, boxes, np.array(tracks, np.int64), np.array(main, bool)

        return (*faces_in_frames(frames, detector=self.detector, tracker=tracker, margin=opt.margin, linker=linker),
                None, None)

    def whole(self, frames) -> tuple[list[np.ndarray], list, Any, Any]:
        """Each frame taken whole as a face crop: (crops, boxes, tracks, main) as :meth:`find` gives them."""
        n = len(frames)
        if self.options.faces != "all":
            return list(frames), [None] * n, None, None
        return list(frames), [None] * n, np.zeros(n, np.int64), np.ones(n, bool)

    def frame_notes(self, rec, with_face: int) -> None:
        """After a video's (or stream's) frames: none decoded, or how many held a face and which detector
        found them (nothing with ``--no-detect``)."""
        det = self.options.detector
        if rec.frames_seen == 0:
            rec.notes.append("no video frames decoded")
        elif self.options.detect is False:
            return
        elif with_face == 0:
            rec.notes.append(f"{NO_FACE_NOTE} in {rec.frames_seen} frame(s) ({det})")
        else:
            rec.notes.append(f"faces found by {det} in {with_face} of {rec.frames_seen} frame(s)")

    def expert_notes(self, res, acc: "FaceAccumulator") -> None:
        """After a clip: how many faces the rafdb expert skipped (and why), and how many the small-face mix scored."""
        skipped = res.frames_used - acc.expert_counts.get("rafdb", 0)
        if "rafdb" in self.experts_used and res.frames_used and skipped:
            es = self.experts
            colour_small = es.small_weight(False) >= 1  # small colour faces left to emo-cnn too
            if self.head is None:  # grey faces of any size are emo-cnn's
                why = f"grey, or under {EXPERT_MIN_FACE} px" if colour_small else "grey"
            elif colour_small:
                why = f"under {EXPERT_MIN_FACE} px" if es.small_weight(True) >= 1 else f"colour and under {EXPERT_MIN_FACE} px"
            else:
                why = f"grey and under {EXPERT_MIN_FACE} px"
            res.notes.append(f"rafdb face expert skipped {skipped} of {res.frames_used} face(s) ({why}): emo-cnn "
                             "scored them alone")
        if acc.n_small:
            res.notes.append(f"{acc.n_small} face(s) under {EXPERT_MIN_FACE} px scored by the small-face mix of emo-cnn "
                             "and the rafdb expert")

    def other_faces_note(self, linker, rec) -> None:
        """``--faces main``: say how many other faces were seen (tracks that never held the main face)."""
        if linker.others and self.options.faces == "main":
            rec.notes.append(f"{linker.others} other face(s) seen and ignored; --faces all scores them")

    def aligned(self, frames, boxes, crops) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Faces aligned by five landmarks for the rafdb expert, the mask of those it scores, and
        which of those are small (:attr:`FaceBatch.small`).

        The expert learned from colour faces of 100 px and more: crops under ``EXPERT_MIN_FACE``
        pixels (FER2013-style crops, faces far from the camera) are left to emo-cnn unless the
        bundle has small-face settings (``emo calibrate-small-faces``), which mix the two for them;
        unless the bundle's face head is in use, grey faces (black-and-white film) of the size are
        left to emo-cnn (mask False, image left black). YuNet looks for the landmarks around each
        chosen box (the whole image when there is no box: an already-cropped face); where it
        finds none, the crop is warped by the landmarks of an average crop (CROP_LANDMARKS).
        Returns (None, None, None) when the expert is not in use.
        """
        if "rafdb" not in self.experts_used:
            return None, None, None

        out = np.zeros((len(crops), EXPERT_SIZE, EXPERT_SIZE, 3), np.uint8)
        mask = np.zeros(len(crops), bool)
        small = np.zeros(len(crops), np.int8)
        colour = self.head is None  # the head scores grey faces of the size too
        alone = "emo-cnn" not in self.experts_used
        for k, (frame, box, crop) in enumerate(zip(frames, boxes, crops)):
            if min(np.shape(crop)[:2]) < EXPERT_MIN_FACE:
                grey = is_grey(crop)
                if self.experts.small_ is None or (self.experts.small_weight(grey) >= 1 and not alone):
                    continue
                small[k] = 2 if grey else 1
            elif not expert_applies(crop, colour=colour):
                continue
            mask[k] = True
            if box is not None and box.landmarks is not None:  # the detector found them (YuNet)
                lm = np.asarray(box.landmarks, np.float32)
            else:
                lm = self.landmarker(frame, None if box is None else (box.x0, box.y0, box.x1, box.y1))
            if lm is not None:
                out[k] = align_face(frame, lm)
            else:
                h, w = crop.shape[:2]
                out[k] = align_face(crop, CROP_LANDMARKS * np.float32([w, h]))
        return out, mask, small

    def score_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Face scores (n, face labels) of images that already are face crops.

        Scored as ``predict --no-detect`` scores a still image: every face expert in use, the
        bundle's head, the still-image test-time views; in batches, for corpora of crops.
        """
        if not crops:
            return np.zeros((0, len(self.model.labels)), np.float32)
        acc = FaceAccumulator(self, Result(file=""), still=True)
        aligned, mask, small = self.aligned(crops, [None] * len(crops), crops)
        acc.add(FaceBatch(np.zeros(len(crops)), prepare_faces(crops, self.pre), aligned, mask, small=small))
        acc.flush()
        return np.concatenate(acc.scores)

    def to_fusion(self, scores: np.ndarray) -> np.ndarray:
        """Face scores (model order) in the fusion's label order; NaN for emotions the face model lacks."""
        return normalise_present(align(scores, self.model.labels, self.labels))

    def accumulator(self, res: Result, *, still: bool = False) -> "FaceAccumulator":
        """A new accumulator that scores this stage's faces into ``res``."""
        return FaceAccumulator(self, res, still=still)


class FaceAccumulator:
    """Scores face inputs in batches and keeps per-frame scores (and running sums) for a clip.

    Each frame's face score combines the experts in use (calibrated, see experts.ExpertSet);
    each expert's own frame scores are summed for the result's ``face_experts``. With
    ``--faces all`` the faces other than each frame's main one go to a second accumulator
    (``others``) and every scored face to the tracks' running sums (``pool``): the clip's own
    scores stay the main face's.
    """

    def __init__(self, stage: FaceStage, res: Result, *, still: bool = False, pool: "TrackPool | None" = None):
        self.stage, self.res, self.still = stage, res, still
        tta = stage.options.tta
        self.views = ("bundle" if still else "spread") if tta == "auto" else tta
        self.n_scored = 0  # faces scored so far: where the next face is in the cycle of "spread" views
        self.main = pool is None  # False for the ``others`` of a main accumulator
        self.pool = pool if pool is not None else TrackPool(stage) if stage.options.faces == "all" else None
        self.others: FaceAccumulator | None = None
        self.pending: list[FaceBatch] = []  # faces queued for the next network call
        self.expert_counts: dict[str, int] = {}
        self.n_pending = 0
        self.n_small = 0  # faces under EXPERT_MIN_FACE px scored by the small-face mix
        self.times: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.features: list[np.ndarray] = []
        self.expert_sums: dict[str, np.ndarray] = {}
        self.expert_frames: dict[str, list[np.ndarray]] = {}  # kept for `extract` only
        self.expert_features: list[np.ndarray] = []
        self.feat_sum = None
        # --frames: (times, boxes, scores, track ids)
        self.frame_log: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, batch: FaceBatch) -> None:
        """Queue faces; with ``--faces all`` those that are not their frame's main face go to ``others``."""
        n = len(batch)
        batch.boxes = np.full((n, 4), np.nan, np.float32) if batch.boxes is None else batch.boxes
        batch.tracks = np.full(n, -1, np.int64) if batch.tracks is None else batch.tracks
        if batch.main is not None and not batch.main.all():
            if self.others is None:
                self.others = FaceAccumulator(self.stage, Result(file=self.res.file), still=self.still, pool=self.pool)
            rest = batch.select(~batch.main)
            rest.main = None
            self.others.add(rest)
            batch = batch.select(batch.main)
            if not len(batch):
                return
        self.pending.append(batch)
        self.n_pending += len(batch)
        if self.n_pending >= self.stage.options.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return

        stage = self.stage
        batch = FaceBatch.concat(self.pending)
        self.pending, self.n_pending = [], 0
        x, t, boxes, tracks = batch.inputs, batch.times, batch.boxes, batch.tracks
        mask = batch.mask if batch.mask is not None else np.zeros(len(x), bool)
        small = batch.small if batch.small is not None else np.zeros(len(x), np.int8)
        aligned = batch.aligned[mask] if batch.aligned is not None else None
        head = stage.head
        large = mask & (small == 0)  # the faces the head scores
        feats, cnn = self._score_cnn(x, large if head is not None and stage.expert_net is not None else None)
        # each expert's calibrated scores; rafdb's for the frames it scores, NaN elsewhere
        cnn_cal = stage.experts.calibrate("emo-cnn", cnn)
        cal = {"emo-cnn": cnn_cal} if "emo-cnn" in stage.experts_used else {}
        emb = None
        if stage.expert_net is not None and mask.any():
            if stage.options.keep_frames or head is not None:
                emb, logits = stage.expert_net.logits(aligned, embeddings=True)
            else:
                logits = stage.expert_net.logits(aligned)
            if stage.options.keep_frames:
                full = np.zeros((len(x), emb.shape[1]), np.float32)
                full[mask] = emb
                self.expert_features.append(full)
            raf = align(softmax(logits), stage.expert_net.labels, stage.model.labels)
            cal["rafdb"] = np.full((len(x), raf.shape[1]), np.nan, np.float32)
            cal["rafdb"][mask] = stage.experts.calibrate("rafdb", raf)
        elif stage.expert_net is not None and stage.options.keep_frames:
            self.expert_features.append(np.zeros((len(x), EMBEDDING_SIZE), np.float32))
        # frames no expert in use scored (rafdb alone asked for, grey or small faces): emo-cnn decides them
        scores = stage.experts.mix(cal, fallback=cnn_cal)
        if head is not None and emb is not None and large.any():
            # frames both experts scored: the learned head on their features replaces the average;
            # it learned from emo-cnn features over mirror views (how video frames are scored)
            f = feats[large] if self.views in ("mirror", "spread") else stage.model.score_inputs(
                x[large], batch_size=stage.options.batch_size, features=True, views="mirror")[0]
            scores[large] = head.predict_proba(np.hstack([emb[small[mask] == 0], f]))
        if (small > 0).any():  # faces under EXPERT_MIN_FACE px: the bundle's small-face mix of the two
            rows = small > 0
            self.n_small += int(rows.sum())
            # raf holds the masked faces' rows, in order; the small ones are among them
            scores[rows] = stage.experts.small_mix(cnn[rows], raf[small[mask] > 0], small[rows] == 2,
                                                   use=stage.experts_used)
        for name, p in cal.items():
            ok = ~np.isnan(p[:, 0])
            self.expert_sums[name] = self.expert_sums.get(name, 0.0) + p[ok].sum(0)
            self.expert_counts[name] = self.expert_counts.get(name, 0) + int(ok.sum())
            if stage.options.keep_frames:
                self.expert_frames.setdefault(name, []).append(p)
        self.feat_sum = feats.sum(0) if self.feat_sum is None else self.feat_sum + feats.sum(0)
        if self.pool is not None:
            self.pool.add(tracks, t, boxes, scores, main=self.main)
        if self.main:  # the other faces live on in their tracks' running sums (memory stays flat on a stream)
            self.times.append(t)
            self.scores.append(scores)  # 7 floats per frame: small, and needed for pooling and --window
        if stage.options.frames:
            self.frame_log.append((t, boxes, scores, tracks))
        if stage.options.keep_frames:
            self.features.append(feats)
        self.res.frames_used += len(x)

    def _score_cnn(self, x: np.ndarray, head_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """emo-cnn's (features, scores) of network inputs, over this accumulator's views.

        With ``"spread"`` views, the faces the face head will score (``head_rows``) get the crop and
        its mirror, the views the head learned from; the others take the bundle's views in turn.
        """
        fm, bs = self.stage.model, self.stage.options.batch_size
        if self.views != "spread" or head_rows is None or not head_rows.any():
            out = fm.score_inputs(x, batch_size=bs, features=True, views=self.views, view_offset=self.n_scored)
            self.n_scored += len(x)
            return out
        feats = np.empty((len(x), fm.n_features), np.float32)
        cnn = np.empty((len(x), len(fm.labels)), np.float32)
        feats[head_rows], cnn[head_rows] = fm.score_inputs(x[head_rows], batch_size=bs, features=True,
                                                           views="mirror")
        rest = ~head_rows
        if rest.any():
            feats[rest], cnn[rest] = fm.score_inputs(x[rest], batch_size=bs, features=True, views="spread",
                                                     view_offset=self.n_scored)
            self.n_scored += int(rest.sum())
        return feats, cnn

    def take_frames(self, before: float = float("inf")) -> list[dict[str, Any]]:
        """The ``--frames`` records of the scored frames earlier than ``before`` s, removed from the log.

        With ``--faces all`` a record per face, each with its ``track`` and whether it is the frame's
        ``main`` face, ordered by time and track.
        """
        self.flush()
        stage = self.stage
        out, left = [], []
        for t, boxes, scores, tracks in self.frame_log:
            now = t < before
            for ti, b, p, k in zip(t[now], boxes[now], scores[now], tracks[now]):
                out.append({"time": round(float(ti), 3),
                            "box": None if np.isnan(b[0]) else [round(float(v), 1) for v in
                                                                (b[0], b[1], b[2] - b[0], b[3] - b[1])],
                            "face_scores": scores_dict(zero_nan(stage.to_fusion(p)),
                                                    stage.labels)})
                if k >= 0:
                    out[-1].update(track=int(k), main=self.main)
            if (~now).any():
                left.append((t[~now], boxes[~now], scores[~now], tracks[~now]))
        self.frame_log = left
        if self.others is not None:
            out += self.others.take_frames(before)
        return sorted(out, key=lambda f: (f["time"], f.get("track", 0)))

    def face_tracks(self) -> list[dict[str, Any]] | None:
        """``--faces all``: the result's ``faces`` (see :meth:`TrackPool.report`); None otherwise."""
        if self.pool is None:
            return None
        self.flush()
        if self.others is not None:
            self.others.flush()
        return self.pool.report()

    def clip_scores(self) -> np.ndarray | None:
        self.flush()
        if not self.res.frames_used:
            return None
        return pool_frames(np.concatenate(self.scores), method=self.stage.options.pooling,
                           labels=self.stage.model.labels)

    def expert_scores(self) -> dict[str, np.ndarray]:
        """Each expert's clip score (the mean of its calibrated frame scores), when more than one ran."""
        if len(self.stage.experts_used) < 2:
            return {}
        return {name: total / self.expert_counts[name] for name, total in self.expert_sums.items()
                if self.expert_counts.get(name)}

    def mean_features(self) -> np.ndarray | None:
        return None if self.feat_sum is None else self.feat_sum / self.res.frames_used

    def keep(self, res: Result) -> None:
        if self.scores:
            res.frame_times = np.concatenate(self.times)
            res.frame_scores = np.concatenate(self.scores)
            res.face_features = np.concatenate(self.features)
            res.expert_frame_scores = {k: np.concatenate(v) for k, v in self.expert_frames.items()}
            if self.expert_features:
                res.expert_features = np.concatenate(self.expert_features)

class TrackPool:
    """``--faces all``: per face track, the running sums its face score is pooled from (as a clip's
    frames are, see :func:`pool_frames`), its boxes, its first and last time, and how many of its
    frames were their frame's main face."""

    def __init__(self, stage: FaceStage):
        self.stage = stage
        self.tracks: dict[int, dict[str, Any]] = {}

    def add(self, tracks: np.ndarray, times: np.ndarray, boxes: np.ndarray, scores: np.ndarray, *,
            main: bool) -> None:
        """Scored faces: int (n,) track ids, (n,) seconds, float32 (n, 4) boxes, (n, K) face scores."""
        opt, labels = self.stage.options, self.stage.model.labels
        w = pool_weights(scores, method=opt.pooling, labels=labels)
        for k in np.unique(tracks):
            sel = tracks == k
            tr = self.tracks.setdefault(int(k), {"sum": 0.0, "weight": 0.0, "boxes": [], "first": float("inf"),
                                                 "last": float("-inf"), "n": 0, "main": 0})
            tr["sum"] = tr["sum"] + (w[sel, None] * scores[sel]).sum(0)
            tr["weight"] += float(w[sel].sum())
            tr["boxes"].append(boxes[sel])
            tr["first"] = min(tr["first"], float(times[sel].min()))
            tr["last"] = max(tr["last"], float(times[sel].max()))
            tr["n"] += int(sel.sum())
            tr["main"] += int(sel.sum()) if main else 0

    def report(self) -> list[dict[str, Any]]:
        """One entry per track, in the order they started: ``track``, ``main`` (the main face in most of its
        frames), ``box`` (median [x, y, w, h] in the input's pixels; None for whole-frame crops), ``label``,
        ``scores`` (pooled face scores), ``frames_used``, ``first`` and ``last`` (seconds)."""
        stage = self.stage
        labels = stage.labels
        out = []
        for k in sorted(self.tracks):
            tr = self.tracks[k]
            p = zero_nan(stage.to_fusion(tr["sum"] / tr["weight"]))
            x0, y0, x1, y1 = np.median(np.concatenate(tr["boxes"]), axis=0)
            out.append({"track": k, "main": tr["main"] * 2 > tr["n"],
                        "box": None if np.isnan(x0) else [round(float(v), 1) for v in (x0, y0, x1 - x0, y1 - y0)],
                        "label": labels[int(np.argmax(p))], "scores": scores_dict(p, labels), "frames_used": tr["n"],
                        "first": round(tr["first"], 3), "last": round(tr["last"], 3)})
        return out


def box_array(boxes, scale: float) -> np.ndarray:
    """float32 (n, 4) x0, y0, x1, y1 of detections (NaN for None), times ``scale`` (analysed -> input pixels)."""
    return np.array([[np.nan] * 4 if b is None else [b.x0 * scale, b.y0 * scale, b.x1 * scale, b.y1 * scale]
                     for b in boxes], np.float32).reshape(-1, 4)
