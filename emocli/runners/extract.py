"""``emo extract``: decode a corpus once and keep what every experiment needs.

On-disk format (``OUT/``)::

    extract.json          settings: corpus, layout, model bundle + manifest sha256, fps, detector
    items/<id>.npz        one finished item (np.savez, no pickled objects):
                            label, path, speaker, split            str scalars
                            labels                                 (7,) str: column order below
                            face_features  (n, F) float32          fc2 activations (F: the network's width, 256 for
                                                                   emo-cnn), one row per face frame
                            frame_scores   (n, 7)   float32        face scores per frame (experts combined)
                            frame_scores_emo_cnn, frame_scores_rafdb
                                           (n, 7)   float32        each face expert's calibrated frame scores
                                                                   (when the bundle has experts)
                            expert_features (n, 512) float32       the rafdb expert's face embeddings ((0, 512)
                                                                   when it did not run)
                            frame_times    (n,)     float64        seconds
                            face_scores    (7,) or (0,)            frame_scores pooled over the clip (--pooling)
                            voice_stats68  (68,) or (0,)           mean + std of the 34 short-term features
                            voice_features (d,) or (0,)            the voice model's own feature vector
                            voice_scores   (7,) or (0,)            voice model probabilities
    items/<id>.error.json an item that failed, with the reason
    index.csv             one row per item (rebuilt at the end of every run)

Every file is written to a temporary name and renamed into place, so an item is either
finished or absent: a run killed at any moment is resumed with ``--resume``, which skips
finished items (failed ones too, unless ``--retry-failed``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emocli.errors import DatasetError
from emocli.face.experts import EMBEDDING_SIZE
from emocli.files import atomic_path, atomic_write_text
from emocli.pipeline.core import Pipeline
from emocli.runners.pool import process_pool, worker_pipeline

ITEMS = "items"
SETTINGS = "extract.json"
INDEX = "index.csv"
TEMP_SUFFIX = ".part"  # item files are written under hidden .NAME.XXXX.part names: never an item pattern
INDEX_FIELDS = ("id", "path", "label", "speaker", "split", "status", "frames_used", "face", "voice", "error")


def item_id(path: Path, root: Path) -> str:
    """A stable, file-system-safe id: readable stem + hash of the path relative to the corpus root."""
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        rel = Path(path).resolve()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem)[:60]
    return f"{stem}-{hashlib.sha1(str(rel).encode()).hexdigest()[:10]}"


def settings_for(dataset: Path, layout: str | None, split: str | None, bundle: Path, manifest: dict,
                 options) -> dict[str, Any]:
    opts = asdict(options)
    opts.pop("keep_frames", None)
    sha = hashlib.sha256(json.dumps(manifest.get("files", {}), sort_keys=True).encode()).hexdigest()
    return {"dataset": str(Path(dataset).resolve()), "layout": layout, "split": split,
            "model": str(Path(bundle).resolve()), "model_files_sha256": sha, "options": opts}


LOCK = ".emo-extract.lock"  # held (flock) by the run writing into an output folder


def lock_out_dir(out: Path):
    """Take the output folder's lock, or refuse: two runs writing one folder would redo every item.

    Returns the open lock file; the lock lasts until it is closed or the process ends.
    """
    import fcntl
    import os

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / LOCK, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise DatasetError(f"{out}: another emo extract (pid {pid}) is writing into this folder; wait for it to "
                           "finish (then --resume if needed), or choose another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def check_out_dir(out: Path, settings: dict, *, resume: bool) -> None:
    """Refuse to mix runs: an existing output folder needs --resume and the same settings."""
    out = Path(out)
    s_path = out / SETTINGS
    if s_path.is_file():
        if not resume:
            raise DatasetError(f"{out}: already holds an extraction; pass --resume to finish it, "
                               "or choose another --out")
        old = read_json_object(s_path)  # any JSON object, read with a one-line error when damaged
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise DatasetError(f"{out}: was extracted with other settings ({', '.join(diff)}); "
                               "use a new --out, or rerun with the same options")
    elif out.exists() and any(p.name != LOCK for p in out.iterdir()):
        raise DatasetError(f"{out}: folder exists and is not an emo extraction; choose another --out")
    # settings first: a folder holding extract.json is resumable whatever happens next
    atomic_write_text(s_path, json.dumps(settings, indent=2) + "\n")
    (out / ITEMS).mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    if resume:
        remove_damaged(out)


def item_files(out: Path, ending: str) -> list[Path]:
    """Finished item files (``*.npz`` or ``*.error.json``), sorted; temporary files are hidden and never match."""
    return sorted(p for p in (Path(out) / ITEMS).glob(f"*{ending}") if not p.name.startswith("."))


def remove_stale_temps(out: Path) -> int:
    """Delete what a killed run left half-written (hidden ``.NAME.XXXX`` files of :func:`atomic_path`)."""
    out = Path(out)
    stale = [p for p in (out / ITEMS).glob(".*") if p.is_file()]
    stale += [p for name in (SETTINGS, INDEX) for p in out.glob(f".{name}.*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def _read_item(p: Path) -> dict[str, np.ndarray]:
    """Every array of an item file (no pickle); raises DatasetError naming it when it is damaged."""
    try:
        with np.load(p, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        missing = [k for k in ("label", "path", "speaker", "split", "frame_times", "face_scores", "voice_scores")
                   if k not in d]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
    except Exception as exc:  # truncated zip, pickled object arrays, missing arrays
        raise DatasetError(f"{p}: damaged extracted item ({type(exc).__name__}: {exc}); rerun `emo extract` with "
                           "--resume on its folder to redo it") from None
    return d


def read_json_object(p: Path) -> dict:
    try:
        d = json.loads(p.read_text())
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{p}: damaged extraction record ({exc}); rerun `emo extract` with --resume on its "
                           "folder to redo it") from None
    return d


def remove_damaged(out: Path) -> int:
    """Delete the item files of an extraction that cannot be read back (truncated, pickled arrays, not
    JSON), so that ``--resume`` redoes their items; returns how many."""
    gone = 0
    for ending, read in ((".npz", _read_item), (".error.json", read_json_object)):
        for p in item_files(out, ending):
            try:
                read(p)
            except DatasetError:
                p.unlink(missing_ok=True)
                gone += 1
    return gone


def is_finished(out: Path, iid: str, *, retry_failed: bool) -> bool:
    if (out / ITEMS / f"{iid}.npz").is_file():
        return True
    return not retry_failed and (out / ITEMS / f"{iid}.error.json").is_file()


# ------------------------------------------------------------------------------------------
# Work on one item (in this process or a worker)

def _empty(n: int = 0) -> np.ndarray:
    return np.zeros((0,) if n == 0 else (0, n), np.float32)


def process_item(item, iid: str, out: Path, pipe=None) -> dict[str, Any]:
    """Run the pipeline on one item and write its .npz (or .error.json); return its index row.

    Without ``pipe``: the pipeline of this worker process (:func:`emocli.runners.pool.worker_pipeline`).
    """
    if pipe is None:

        pipe = worker_pipeline()
    res = pipe.run(item.path)
    row = {"id": iid, "path": str(item.path), "label": item.label, "speaker": item.speaker or "",
           "split": item.split or "", "status": res.status, "frames_used": res.frames_used,
           "face": int(res.face_scores is not None), "voice": int(res.voice_scores is not None),
           "error": res.error or ""}
    items_dir = Path(out) / ITEMS
    (items_dir / f"{iid}.error.json").unlink(missing_ok=True)
    if res.status != "ok":
        atomic_write_text(items_dir / f"{iid}.error.json", json.dumps({**row, "error_type": res.error_type}) + "\n")
        row["error_type"] = res.error_type
        return row
    labels = pipe.fusion.labels
    vec = (lambda d: _empty() if d is None else np.array([d[lab] for lab in labels], np.float32))
    arrays = {
        "label": np.str_(item.label), "path": np.str_(str(item.path)), "speaker": np.str_(item.speaker or ""),
        "split": np.str_(item.split or ""), "labels": np.array(labels),
        "face_features": (res.face_features if res.face_features is not None
                          else _empty(pipe.face_model.n_features if pipe.face_model is not None else 0)),
        "frame_scores": res.frame_scores if res.frame_scores is not None else _empty(len(labels)),
        "frame_times": res.frame_times if res.frame_times is not None else np.zeros(0),
        "face_scores": vec(res.face_scores),
        "voice_stats68": res.voice_stats68 if res.voice_stats68 is not None else _empty(),
        "voice_features": res.voice_features if res.voice_features is not None else _empty(),
        "voice_scores": vec(res.voice_scores),
        # the rafdb face expert's 512-d embeddings per frame (empty when it did not run)
        "expert_features": res.expert_features if res.expert_features is not None else _empty(EMBEDDING_SIZE),
    }
    for name, scores in (res.expert_frame_scores or {}).items():  # each expert's calibrated frame scores
        arrays[f"frame_scores_{name.replace('-', '_')}"] = scores
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_path(items_dir / f"{iid}.npz", suffix=TEMP_SUFFIX) as tmp:
        tmp.write_bytes(buf.getvalue())
    return row


def _run_one(args) -> dict[str, Any]:
    item, iid, out = args
    return process_item(item, iid, out)


# ------------------------------------------------------------------------------------------


def run_extraction(items, *, root: Path, out: Path, bundle: Path, options, workers: int = 1,
                   retry_failed: bool = False,
                   progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Process every unfinished item; return a summary (done, skipped, failed by reason)."""
    out = Path(out)
    todo, skipped = plan(items, root=root, out=out, retry_failed=retry_failed)
    rows: list[dict[str, Any]] = []
    if workers <= 1 or len(todo) <= 1:
        pipe = Pipeline(bundle, options) if todo else None
        for it, iid, o in todo:
            row = process_item(it, iid, o, pipe)
            rows.append(row)
            if progress:
                progress(row)
    else:

        with process_pool(workers, bundle=bundle, options=options) as pool:
            for row in pool.map(_run_one, todo, chunksize=1):
                rows.append(row)
                if progress:
                    progress(row)
    write_index(out)
    return summary(len(items), skipped, rows)


def plan(items, *, root: Path, out: Path, retry_failed: bool) -> tuple[list[tuple], int]:
    """(items still to do as (item, id, out) jobs, number already finished)."""
    todo, skipped = [], 0
    for it in items:
        iid = item_id(it.path, root)
        if is_finished(Path(out), iid, retry_failed=retry_failed):
            skipped += 1
        else:
            todo.append((it, iid, out))
    return todo, skipped


def summary(n_items: int, skipped: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a run did: items done, skipped (already finished), failed by reason, one-modality items."""
    failed = Counter(r.get("error_type") or "error" for r in rows if r["status"] != "ok")
    return {
        "items": n_items, "done": sum(r["status"] == "ok" for r in rows), "skipped": skipped,
        "failed": sum(failed.values()), "failed_by_reason": dict(failed),
        "face_only": sum(r["status"] == "ok" and not r["voice"] for r in rows),
        "voice_only": sum(r["status"] == "ok" and not r["face"] for r in rows),
        "failures": [{"path": r["path"], "error": r["error"]} for r in rows if r["status"] != "ok"],
    }


def write_index(out: Path) -> Path:
    """Rebuild index.csv from the finished item files."""
    out = Path(out)
    rows = []
    for p in item_files(out, ".npz"):
        z = _read_item(p)
        rows.append({"id": p.stem, "path": str(z["path"]), "label": str(z["label"]),
                     "speaker": str(z["speaker"]), "split": str(z["split"]), "status": "ok",
                     "frames_used": int(len(z["frame_times"])), "face": int(z["face_scores"].size > 0),
                     "voice": int(z["voice_scores"].size > 0), "error": ""})
    for p in item_files(out, ".error.json"):
        d = read_json_object(p)
        rows.append({k: d.get(k, "") for k in INDEX_FIELDS})
    rows.sort(key=lambda r: r["path"])
    with atomic_path(out / INDEX, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=INDEX_FIELDS)
            w.writeheader()
            w.writerows(rows)
    return out / INDEX


def extraction_model(out: Path) -> Path:
    """The model bundle an extraction was made with (its extract.json's ``model``); DatasetError when damaged."""
    d = read_json_object(Path(out) / SETTINGS)
    if not isinstance(d.get("model"), str):
        raise DatasetError(f"{Path(out) / SETTINGS}: names no model bundle; rerun `emo extract` into a new --out")
    return Path(d["model"])


def load_extracted(out: Path) -> list[dict[str, Any]]:
    """Finished items of an extraction, as dicts of arrays (labels aligned to emo's order)."""
    out = Path(out)
    if not (out / SETTINGS).is_file():
        raise DatasetError(f"{out}: not an emo extraction folder (no {SETTINGS}); run `emo extract` first")
    items = []
    for p in item_files(out, ".npz"):
        d = _read_item(p)
        for k in ("label", "path", "speaker", "split"):
            d[k] = str(d[k])
        d["id"] = p.stem
        items.append(d)
    return items
