"""What ``emo fuse`` does: fusion weights or a fusion model from the bundle's validation figures or
from extracted features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emocli.bundle import read_json_document, verify_bundle, write_manifest
from emocli.choices import DEFAULT_FUSE_RULE, MIN_VALIDATION_PER_CLASS, MIN_VALIDATION_SPEAKERS
from emocli.errors import DatasetError, ModelError
from emocli.fusion import FEATURE_METHODS, FusionModel, fusion_inputs, heldout_accuracy, pca_size
from emocli.labels import LABELS
from emocli.runners.extract import load_extracted


def _validation_recall(meta: dict) -> dict[str, float] | None:
    """Per-class validation recall stored by train-video (face.json) or train-audio (voice.json)."""
    if isinstance(meta.get("validation"), dict) and "recall" in meta["validation"]:
        return meta["validation"]["recall"]
    rec = meta.get("validation_recall")
    return rec if isinstance(rec, dict) else None


def _small_validation(what: str, n_speakers: int | None, counts: dict[str, int]) -> list[str]:
    """Why a validation is too small to weigh a model by: fewer than MIN_VALIDATION_SPEAKERS speakers
    (None: not known), or classes with fewer than MIN_VALIDATION_PER_CLASS items (``counts``)."""

    out = []
    if isinstance(n_speakers, int) and n_speakers < MIN_VALIDATION_SPEAKERS:
        out.append(f"{what}'s validation has {n_speakers} speaker(s) (fewer than {MIN_VALIDATION_SPEAKERS})")
    small = {lab: n for lab, n in counts.items() if n < MIN_VALIDATION_PER_CLASS}
    if small:
        out.append(f"{what}'s validation has fewer than {MIN_VALIDATION_PER_CLASS} items of "
                   + ", ".join(f"{lab} ({n})" for lab, n in small.items()))
    return out


def _validation_warnings(meta: dict, what: str) -> list[str]:
    """:func:`_small_validation` of a model description: its training speakers (``trained_on`` or
    ``n_speakers``) and the per-class rows of its validation confusion matrix."""
    trained = meta.get("trained_on") if isinstance(meta.get("trained_on"), dict) else {}
    speakers = len(trained["speakers"]) if isinstance(trained.get("speakers"), list) else meta.get("n_speakers")
    val = meta.get("validation") if isinstance(meta.get("validation"), dict) else {}
    conf, labels = val.get("confusion"), val.get("labels") or LABELS
    counts = {lab: int(sum(row)) for lab, row in zip(labels, conf)} if isinstance(conf, list) else {}
    return _small_validation(what, speakers, counts)


def fuse_command(*, bundle: Path, method: str, features: Path | None, split: str | None, seed: int,
                 console, rule: str = DEFAULT_FUSE_RULE) -> dict:
    """Compute decision weights, or fit a learned / feature-level fusion model, into ``bundle``.

    Warns (on ``console``) when the validation the weights come from is small: fewer than 3
    speakers, or a class with fewer than 50 items; such weights follow chance as much as skill.
    """
    manifest = verify_bundle(bundle)
    files = manifest.get("files", {})
    recalls, warnings = {}, []
    for mod, name in (("face", "face.json"), ("voice", "voice.json")):
        if name in files:
            meta = read_json_document(
                Path(bundle) / name, fmt=None, what=f"an emo {mod}-model description",
                missing="listed in the manifest but missing; restore the bundle or retrain",
                invalid="not valid JSON ({exc}); restore the bundle from its source or retrain")
            recalls[mod] = _validation_recall(meta)
            if method == "confusion":
                warnings += _validation_warnings(meta, f"the {mod} model")
    if "experts.json" in files:  # the face score is the experts' combination: use its held-out recall
        experts = read_json_document(Path(bundle) / "experts.json", fmt="emo-experts", what="face-expert settings",
                                     missing="listed in the manifest but missing; restore the bundle",
                                     invalid="not valid JSON ({exc}); restore the bundle from its source")
        recalls["face"] = experts.get("info", {}).get("validation_recall") or recalls.get("face")
    if method == "confusion" and not (recalls.get("face") and recalls.get("voice")):
        raise ModelError(f"{bundle}: confusion-matrix weights need validation recall from both a face and a "
                         "voice model in the bundle; train both, or use --method equal")
    fm = FusionModel(method=method, rule=rule).fit(recalls.get("face"), recalls.get("voice"))
    if method in FEATURE_METHODS:
        if features is None:
            raise ModelError(f"--method {method} is fitted on extracted features: run `emo extract CORPUS --out DIR` "
                             "and pass --features DIR")

        items = [d for d in load_extracted(features) if d["face_scores"].size and d["voice_scores"].size]
        if split is not None:
            items = [d for d in items if d["split"].lower() == split.lower()]
        labels = sorted({d["label"] for d in items})
        speakers = len({d["speaker"] for d in items}) if all(d["speaker"] for d in items) else None
        warnings += _small_validation(f"--features {features}", speakers,
                                      {lab: sum(d["label"] == lab for d in items) for lab in labels})
        if len(items) < 4 or len(labels) < 2:
            raise DatasetError(f"{features}: {len(items)} item(s) with both a face and a voice in "
                               f"{len(labels)} class(es); fusion needs at least 4 items of 2 classes")
        x = np.stack([fusion_inputs(method, d["face_scores"], d["voice_scores"],
                                    d["face_features"].mean(0), d["voice_stats68"]) for d in items])
        y = np.array([d["label"] for d in items])
        fm.fit_estimator(x, y, seed=seed)
        cv = heldout_accuracy(method, x, y, seed=seed)
        fm.info_ = {"fitted_on": str(features), "split": split, "n_items": len(items),
                    "classes": labels, "input_dimension": int(x.shape[1]), "pca_components": pca_size(fm.estimator_),
                    "heldout_accuracy": None if cv is None else round(cv[0], 4),
                    "heldout_folds": None if cv is None else cv[1]}
        console.print(f"fitted {method} fusion on {len(items)} clips ({x.shape[1]} inputs, classes: {', '.join(labels)})")
    for w in warnings:
        console.print(f"[yellow]warning:[/yellow] {w}: weights fitted on it may follow chance more than skill; "
                      "validate on more speakers and clips, or keep --method equal")
    fm.save(bundle)
    write_manifest(bundle, labels=list(fm.labels))
    if method in FEATURE_METHODS:
        info = fm.info_
        pca = (f"PCA {info['input_dimension']} -> {info['pca_components']} components"
               if info["pca_components"] is not None else f"{info['input_dimension']} inputs, no PCA")
        acc = (f"held-out accuracy {info['heldout_accuracy']:.3f} ({info['heldout_folds']}-fold cross-validation "
               f"on the {info['n_items']} fitted clips)" if info["heldout_accuracy"] is not None
               else "held-out accuracy not measured (too few clips per class for 2 folds)")
        console.print(f"saved {bundle}/fusion.json: method {method}; {pca}; {acc}; a clip with only a face or only "
                      "a voice is scored by that modality")
    else:
        weights = fm.to_dict()["face_weights"]
        console.print(f"saved {bundle}/fusion.json: method {method}, rule {rule}; face weight per emotion: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in weights.items()))
    return fm.to_dict()
