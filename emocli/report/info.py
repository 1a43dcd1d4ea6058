"""``emo info``: what a run would use. The bundle and each of its files (role, size, sha256, licence,
what it was trained on), the detectors and the speech encoder shipped beside it, the ffmpeg found,
and whether a GPU is used and why (not)."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from emocli import __version__
from emocli.bundle import models_dir, verify_bundle
from emocli.choices import DEFAULT_DETECTOR, DEFAULT_EXPERT_STAGE
from emocli.corpus.layouts import corpus_names
from emocli.files import cached_sha256
from emocli.media.ffmpeg import ffmpeg_exe
from emocli.quiet_imports import gpu_status

# What each file of a bundle is (a file not listed is described by its extension).
ROLES = {
    "manifest.json": "the manifest: labels, settings, library versions, sha256 of every file",
    "face.keras": "face network (Keras; scored on a GPU and for training)",
    "face.tflite": "face network (LiteRT; scored on a CPU)",
    "face_bn.npz": "face network's BatchNorm arrays (with face.tflite: the Keras network, for a GPU and training)",
    "face.json": "face network settings, training record, held-out figures",
    "face_history.csv": "face network training history, epoch by epoch",
    "face_expert_rafdb.onnx": "second face expert: the RAF-DB MobileFaceNet (opencv_zoo), dequantised",
    "face_head.npz": "face head: a softmax layer on both experts' features",
    "experts.json": "face experts' temperatures, weights, head and small-face settings",
    "voice.npz": "voice model: scaler and RBF SVM",
    "voice.json": "voice model settings, training record, held-out figures",
    "voice_speaker.npz": "speaker-adapted voice model: scaler and RBF SVM",
    "voice_speaker.json": "speaker-adapted voice model settings and figures",
    "voice_vad.npz": "speech gate: Silero VAD v6 (16 kHz branch)",
    "fusion.json": "how face and voice are fused",
    "training_items.npz": "fingerprints of every item each trained part saw",
}
OWN_LICENCE = "MIT (emo)"  # weights emo trained (their training data's own terms: DATA.md)
WEIGHTS = frozenset({"face.keras", "face.tflite", "face_bn.npz", "face_head.npz", "voice.npz", "voice_speaker.npz",
                     "face_expert_rafdb.onnx", "voice_vad.npz"})
DETECTORS = {"face_detection_yunet_2023mar.onnx": "yunet", "face_detection_full_range_sparse.tflite": "blazeface"}


def _licences(folder: Path) -> dict[str, str]:
    """``LICENSE.<stem>.<licence>.txt`` files of a folder, by the stem they cover."""
    out = {}
    for p in folder.glob("LICENSE.*.txt"):
        parts = p.name.split(".")
        if len(parts) >= 4:
            out[parts[1]] = f"{'.'.join(parts[2:-1])} ({p.name})"
    return out


def _trained_on(bundle: Path, name: str, counts: dict[str, int]) -> str | None:
    """What a trained file learned from, from its JSON record and the bundle's fingerprints."""
    def read(fname):
        try:
            return json.loads((bundle / fname).read_text())
        except (OSError, ValueError):
            return {}

    if name in ("face.keras", "face.tflite"):
        meta = read("face.json")
        src = meta.get("trained_on")
        n = counts.get("face.emo-cnn") or meta.get("n_train")
        return f"{src} ({n} faces)" if src else None
    if name in ("voice.npz", "voice_speaker.npz"):
        meta = read(name.replace(".npz", ".json"))
        on = meta.get("trained_on") if isinstance(meta.get("trained_on"), dict) else {}
        corpora = on.get("corpora")
        speakers = on.get("speakers")
        if corpora:
            # the record maps each training folder or manifest to its layout; show the corpora's names
            names = ", ".join(corpus_names(corpora) if isinstance(corpora, dict) else corpora)
            return f"{names} ({on.get('n_clips', '?')} clips, {len(speakers) if speakers else '?'} speakers)"
        return None
    if name == "face_head.npz" and counts.get("face.head"):
        head = read("experts.json").get("head", {}).get("info", {})
        both = (" (each as its file frames it and as a video frame crops it)" if head.get("framing") == "image+video"
                else "")
        return f"{counts['face.head']} faces of the training corpora{both} (train-head)"
    if name == "experts.json" and counts.get("face.calibration"):
        small = (f"; faces under 64 px mixed on {counts['face.small-calibration']} held-out faces "
                 "(calibrate-small-faces)" if counts.get("face.small-calibration") else "")
        return f"{counts['face.calibration']} held-out faces (calibrate-experts){small}"
    if name == "face_expert_rafdb.onnx":
        out = "RAF-DB (by its authors); " + (f"{counts['face.rafdb-expert']} faces fingerprinted"
                                              if counts.get("face.rafdb-expert") else "")
        if counts.get("face.rafdb-expert-tuned"):
            tune = read("experts.json").get("info", {}).get("rafdb_fine_tune", {})
            stage = tune.get("from_stage", DEFAULT_EXPERT_STAGE)
            what = ("last stage" if stage == DEFAULT_EXPERT_STAGE else "whole network" if stage == "all"
                    else f"stages from {stage} on")
            out += f"; {what} fine-tuned on {counts['face.rafdb-expert-tuned']} faces (train-expert)"
        return out
    return None


def _fingerprint_counts(bundle: Path) -> dict[str, int]:
    try:
        import numpy as np

        with np.load(bundle / "training_items.npz") as z:
            return {k: int(z[k].size) for k in z.files}
    except (OSError, ValueError):
        return {}


def _file_row(path: Path, *, role: str, licence: str | None, trained_on: str | None = None) -> dict[str, Any]:
    return {"file": path.name, "role": role, "bytes": path.stat().st_size, "sha256": cached_sha256(path),
            "licence": licence, "trained_on": trained_on}


def _ffmpeg() -> dict[str, Any]:
    exe = ffmpeg_exe()
    try:
        out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=20).stdout
        version = out.splitlines()[0] if out else "?"
    except OSError as exc:
        version = f"cannot run ({exc.strerror or exc})"
    return {"path": exe, "version": version}


def describe(bundle: Path) -> dict[str, Any]:
    """Everything ``emo info`` reports, as a dictionary (``--json``)."""
    manifest = verify_bundle(bundle)
    counts = _fingerprint_counts(bundle)
    licences = _licences(bundle)
    files = []
    for name in sorted(manifest.get("files", {})):
        stem = name.split(".")[0]
        # a weight file with a LICENSE file beside it is third-party; the others were trained by emo
        licence = (licences.get(stem) or OWN_LICENCE) if name in WEIGHTS else None
        files.append(_file_row(bundle / name, role=ROLES.get(name, Path(name).suffix.lstrip(".") + " file"),
                               licence=licence,
                               trained_on=_trained_on(bundle, name, counts)))
    det_dir, enc_dir = models_dir() / "detectors", models_dir() / "encoders"
    det_lic = _licences(det_dir)
    detectors = [dict(_file_row(det_dir / f, role=f"face detector {d}" + (" (default)" if d == DEFAULT_DETECTOR else ""),
                                licence=det_lic.get("yunet" if d == "yunet" else "mediapipe")), name=d)
                 for f, d in DETECTORS.items() if (det_dir / f).exists()]
    encoders = [_file_row(p, role="speech encoder: Whisper tiny.en's encoder (OpenAI)",
                          licence=f"MIT ({p.stem}.LICENSE.txt)" if (enc_dir / f"{p.stem}.LICENSE.txt").exists() else None)
                for p in sorted(enc_dir.glob("*.tflite"))]
    gpu, why = gpu_status()
    voice = manifest.get("settings", {}).get("voice", {}).get("features", {})
    return {"emo": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "bundle": str(bundle), "labels": manifest.get("labels"),
            "face": manifest.get("settings", {}).get("face", {}).get("backbone"),
            "voice_features": voice.get("feature_set"), "fusion": manifest.get("settings", {}).get("fusion"),
            "files": files, "detectors": detectors, "default_detector": DEFAULT_DETECTOR, "encoders": encoders,
            "ffmpeg": _ffmpeg(), "gpu": gpu, "gpu_reason": why}


def info_tables(d: dict[str, Any], *, console) -> None:
    """``emo info`` for people: a header, then one table of files (bundle, detectors, encoder)."""
    from rich.table import Table

    console.print(f"[bold]emo {d['emo']}[/bold] (Python {d['python']}, {d['platform']})")
    console.print(f"bundle: {d['bundle']}  face: {d['face']}  voice features: {d['voice_features']}  "
                  f"fusion: {d['fusion']}")
    console.print(f"ffmpeg: {d['ffmpeg']['path']} ({d['ffmpeg']['version']})")
    console.print(f"GPU: {'yes' if d['gpu'] else 'no'}: {d['gpu_reason']}")
    table = Table(show_header=True, header_style="bold", pad_edge=False)
    for col in ("file", "role", "size", "sha256", "licence", "trained on"):
        table.add_column(col, overflow="fold")
    for group in (d["files"], d["detectors"], d["encoders"]):
        for f in group:
            table.add_row(f["file"], f["role"], _size(f["bytes"]), f["sha256"][:12], f["licence"] or "",
                          f["trained_on"] or "")
    console.print(table)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
