"""Model bundles: a folder with a manifest that pins every file by sha256.

Layout (any part may be absent; ``predict`` uses what is there)::

    BUNDLE/
      manifest.json     labels, library versions, sha256 of every file below
      face.tflite       face network as LiteRT runs it (emo-cnn: with face_bn.npz, its only form)
      face_bn.npz       the BatchNorm arrays face.tflite folds away: with it, the Keras network is rebuilt
      face.keras        face networks face.tflite cannot rebuild (Keras 3 format, loaded with safe_mode=True)
      face.json         backbone, preprocessing, training history
      voice.npz         StandardScaler + SVM + temperature as plain arrays (audio_model.CompactSVM)
      voice.json        feature settings, labels, C chosen, held-out speakers and scores
      voice.skops       bundles made before 2026-12: the same SVM as a scikit-learn object (skops
                        format: no pickle, types allow-listed), read only where voice.npz is missing
      voice_speaker.*   optional: the voice model on speaker-normalised features (speaker.py)
      fusion.json       decision-level weights (and feature-level fusion settings)
      fusion_feat.skops optional feature-level fusion model
      voice_vad.npz     optional: Silero VAD weights, the voice modality's speech gate (voice_activity.py)
      training_items.npz fingerprints of the items each part trained on (fingerprints.py)

Loading checks every hash before anything is parsed: a tampered bundle is refused
with a message that names the file and says what to do. A bundle written by other versions
of the libraries its files depend on loads with a :class:`~emocli.errors.VersionWarning`
naming both.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path
from typing import Any

from emocli import __version__
from emocli.errors import ModelError, VersionWarning
from emocli.files import atomic_write_text, cached_sha256, save_hash_cache, sha256_file

MANIFEST = "manifest.json"
FORMAT = "emo-bundle"
FORMAT_VERSION = 1
MODEL_FILES = ("face.keras", "face.tflite", "face_bn.npz", "face.json", "face_expert_rafdb.onnx", "experts.json",
               "face_head.npz", "voice.skops", "voice.npz", "voice.json", "voice_speaker.skops", "voice_speaker.npz",
               "voice_speaker.json", "fusion.json", "fusion_feat.skops", "voice_vad.npz", "training_items.npz")
# How to restore a file that is not trained by emo (the default: restore the bundle or retrain it)
RESTORE = {"voice_vad.npz": "restore it from emo's models/default, or rebuild it with scripts/convert_silero_vad.py"}


def models_dir() -> Path:
    """Where the shipped models live: ``models/`` of the source tree, installed as ``emocli.models``."""
    try:
        from emocli import models  # the installed package data; absent in a source checkout

        return Path(models.__file__).resolve().parent
    except ImportError:  # running from a source checkout that was never installed
        return Path(__file__).resolve().parent.parent / "models"


DEFAULT_BUNDLE = models_dir() / "default"


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose file formats a bundle depends on."""
    return dict(_installed_versions())


@functools.lru_cache(maxsize=1)
def _installed_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"emocli": __version__}
    for dist in ("keras", "tensorflow", "tensorflow-cpu", "scikit-learn", "numpy", "skops"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def check_versions(directory: Path, manifest: dict) -> list[str]:
    """Warn (:class:`VersionWarning`) when the bundle's manifest records other versions of the libraries
    installed here; return the names of those that differ.

    tensorflow and tensorflow-cpu count as one library (the same files, built for GPU or CPU).
    """
    def by_name(versions) -> dict[str, str]:
        if not isinstance(versions, dict):
            return {}
        return {("tensorflow" if k == "tensorflow-cpu" else str(k)): str(v) for k, v in versions.items()}

    saved, here = by_name(manifest.get("versions")), by_name(library_versions())
    differ = sorted(k for k in saved.keys() & here.keys() if saved[k] != here[k])
    if differ:
        warnings.warn(f"{directory}: written with {', '.join(f'{k} {saved[k]}' for k in differ)}; installed here: "
                      f"{', '.join(f'{k} {here[k]}' for k in differ)}. It loads, but its scores may differ: install "
                      "the versions it was written with, or retrain it", VersionWarning, stacklevel=3)
    return differ


def write_manifest(directory: Path, *, labels: list[str], settings: dict[str, Any] | None = None) -> dict:
    """(Re)write ``manifest.json`` with the sha256 of every model file present."""
    directory = Path(directory)
    old = read_manifest_unchecked(directory) if (directory / MANIFEST).is_file() else {}
    files = {name: sha256_file(directory / name) for name in MODEL_FILES if (directory / name).is_file()}
    settings = {**_model_settings(directory), **(settings or {})}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "labels": list(labels),
        "files": files,
        "versions": library_versions(),
        "settings": {**old.get("settings", {}), **settings},
    }
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _model_settings(directory: Path) -> dict[str, Any]:
    """What each model must be fed with, copied from its own description into the manifest."""
    out: dict[str, Any] = {}
    for name, keys in (("face.json", ("backbone", "preprocessing", "feature_layer")),
                       ("voice.json", ("features",)), ("fusion.json", ("method",))):
        path = directory / name
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out[name.split(".")[0]] = {k: meta[k] for k in keys if k in meta}
    return out


def read_json_document(path: Path, *, fmt: str | None, missing: str, invalid: str, what: str,
                       keys: tuple[str, ...] = ()) -> dict:
    """A JSON object whose ``format`` is ``fmt``, or a ModelError naming ``path`` and the fix.

    Every JSON file of a bundle is read here. ``missing`` and ``invalid`` complete the message
    when the file is absent or is not JSON (``invalid`` receives the parser's message as
    ``{exc}``); ``what`` names the document; ``fmt=None`` skips the format check (files written
    before formats were recorded); ``keys`` must all be present.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: {invalid.format(exc=exc)}") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read {what} ({exc.strerror}); check the file's permissions") from None
    fix = invalid.split(";")[-1].strip() if ";" in invalid else "restore the file from its source"
    if not isinstance(doc, dict) or (fmt is not None and doc.get("format") != fmt):
        raise ModelError(f"{path}: not {what} " + (f"(format is not {fmt!r})" if fmt else "(not a JSON object)")
                         + f"; {fix}")
    absent = [k for k in keys if k not in doc]
    if absent:
        raise ModelError(f"{path}: {what} lacks {', '.join(map(repr, absent))}; {fix}")
    return doc


def read_manifest_unchecked(directory: Path) -> dict:
    return read_json_document(
        Path(directory) / MANIFEST, fmt=FORMAT, what="an emo bundle manifest",
        missing="no manifest; this folder is not an emo model bundle "
                "(train one with `emo train-video`/`emo train-audio --out DIR`)",
        invalid="manifest is not valid JSON ({exc}); restore the bundle from its source")


def check_format_version(doc: dict, path: Path, *, what: str, newest: int, fix: str) -> None:
    """A document's ``format_version``: a whole number (``fix`` says what to do otherwise) no newer than
    ``newest``, the one this emo reads (else: upgrade emo). Raises ModelError naming ``path``."""
    version = doc.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelError(f"{path}: 'format_version' must be a whole number, got {version!r}; {fix}")
    if version > newest:
        raise ModelError(f"{path}: {what} format {version} is newer than this emo understands ({newest}); upgrade emo")


def verify_bundle(directory: Path) -> dict:
    """Check format version and every file's sha256; return the manifest.

    Raises
    ------
    ModelError
        Naming the first file that is missing or whose hash differs, and the fix.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"{directory}: model bundle folder not found; pass --model with a folder made by "
                         "`emo train-video`/`emo train-audio`, or reinstall emo to restore models/default")
    manifest = read_manifest_unchecked(directory)
    check_format_version(manifest, directory / MANIFEST, what="bundle", newest=FORMAT_VERSION,
                         fix="restore the bundle from its source")
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise ModelError(f"{directory / MANIFEST}: 'files' must map file names to sha256")
    for name, expected in files.items():
        if name not in MODEL_FILES or "/" in name or "\\" in name:
            raise ModelError(f"{directory / MANIFEST}: unexpected file entry {name!r}; the manifest was edited by hand")
        path = directory / name
        if not path.is_file():
            raise ModelError(f"{path}: listed in the manifest but missing; restore the bundle or retrain")
        try:
            actual = cached_sha256(path)
        except OSError as exc:  # no permission, an I/O error
            raise ModelError(f"{path}: cannot read it ({exc.strerror or exc}); check its permissions or restore "
                             "the bundle") from None
        if actual != expected:
            raise ModelError(f"{path}: sha256 {actual[:12]}... does not match the manifest ({str(expected)[:12]}...); "
                             f"the file was modified or corrupted: {RESTORE.get(name, 'restore it, or retrain the bundle')}")
    for name in MODEL_FILES:
        if (directory / name).is_file() and name not in files:
            raise ModelError(f"{directory / name}: present but not listed in the manifest; "
                             "delete it or rewrite the manifest by retraining")
    save_hash_cache()
    check_versions(directory, manifest)
    return manifest


# Containers and scalars skops writes for attributes: allowed in every emo .skops file.
SKOPS_PLAIN_TYPES = frozenset({"builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int",
                               "builtins.float", "builtins.bool", "builtins.NoneType"})


def skops_types(path: Path) -> set[str]:
    """Every ``module.Class`` named in a .skops file's schema (objects, arrays, type references)."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        schema = json.loads(zf.read("schema.json"))
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__class__" in node or "__module__" in node:
                found.add(f"{node.get('__module__')}.{node.get('__class__')}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def check_skops_types(path: Path, trusted: list[str], *, what: str, fix: str) -> None:
    """Refuse a .skops file naming any type outside ``trusted`` (+ plain containers).

    skops trusts every scikit-learn estimator by default; emo's models hold an exact, known set
    of types, so everything the file names is listed and anything else is refused before a
    single object is built.
    """
    import skops.io as sio

    try:
        named = skops_types(path) | set(sio.get_untrusted_types(file=str(path)))
    except Exception as exc:  # a truncated or non-skops file
        raise ModelError(f"{path}: not a readable skops file ({exc.__class__.__name__}); {fix}") from None
    refused = sorted(named - set(trusted) - SKOPS_PLAIN_TYPES)
    if refused:
        raise ModelError(f"{path}: refusing to load types outside the {what}'s allow-list ({', '.join(refused[:3])}); "
                         f"the file was crafted or made by another program. {fix}")
