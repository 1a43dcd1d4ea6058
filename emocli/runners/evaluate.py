"""``emo evaluate``: score a labelled corpus and report face, voice and fused metrics.

Every item is accounted for: items that fail (undecodable, no face and no voice) are
counted and listed under ``failed``; items where one modality is absent are excluded only
from that modality's metrics, and the count of such items is reported next to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emocli import fingerprints as fp
from emocli.errors import MediaError
from emocli.files import atomic_path
from emocli.fusion import align, normalise
from emocli.labels import EMOTION_COLOURS, LABELS
from emocli.media.ffmpeg import IMAGE_EXTS, read_image
from emocli.pipeline.options import REJECTED_NOTES
from emocli.report.metrics import classification_report, is_sink, largest_prediction
from emocli.runners.extract import item_id
from emocli.runners.pool import run_bulk
from emocli.voice.speaker import MIN_CLIPS, RUN_GROUP, speaker_stats

MODALITIES = ("face", "voice", "fused")


@dataclass
class Evaluation:
    """Predictions gathered over a corpus, with one record per item (``items``)."""
    labels: tuple[str, ...] = LABELS
    truth: dict[str, list[int]] = field(default_factory=lambda: {m: [] for m in MODALITIES})
    pred: dict[str, list[int]] = field(default_factory=lambda: {m: [] for m in MODALITIES})
    missing: dict[str, int] = field(default_factory=lambda: {m: 0 for m in MODALITIES})
    # items whose modality was tried and left out (pipeline.REJECTED_NOTES), a part of ``missing``
    rejected: dict[str, int] = field(default_factory=lambda: {m: 0 for m in MODALITIES})
    failed: list[dict[str, str]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    n_items: int = 0
    # speaker-adapted evaluations (evaluate --speaker-norm): the unadapted one and a summary
    plain: "Evaluation | None" = None
    adaptation: dict[str, Any] | None = None
    # the modalities that ran (``--modality face``: face and fused); the report has a block for each
    reported: tuple[str, ...] = MODALITIES

    def add(self, label: str, scores: dict[str, dict[str, float] | None], *, file: str = "",
            notes: list[str] | tuple[str, ...] = ()) -> None:
        """One scored item: its true ``label`` and the face / voice / fused scores (None when absent)."""
        y = self.labels.index(label)
        rec: dict[str, Any] = {"file": file, "true_label": label, "status": "ok"}
        for m in MODALITIES:
            s = scores.get(m)
            rec[f"{m}_label"] = rec[f"{m}_scores"] = None
            if s is None:

                self.missing[m] += 1
                self.rejected[m] += any(n.startswith(REJECTED_NOTES.get(m, ())) for n in notes)
                continue
            k = int(np.argmax([s[lab] for lab in self.labels]))
            self.truth[m].append(y)
            self.pred[m].append(k)
            rec[f"{m}_label"] = self.labels[k]
            rec[f"{m}_scores"] = {lab: round(float(s[lab]), 6) for lab in self.labels}
        rec["notes"] = list(notes)
        self.items.append(rec)

    def add_failed(self, label: str, *, file: str, error: str) -> None:
        """An item that could not be scored: listed under ``failed`` and in ``items``."""
        self.failed.append({"file": file, "error": error})
        self.items.append({"file": file, "true_label": label, "status": "error",
                           **{f"{m}_{k}": None for m in MODALITIES for k in ("label", "scores")},
                           "notes": [], "error": error})

    def report(self) -> dict[str, Any]:
        """Metrics per modality; a class absent from the scored items has recall ``None`` (JSON null)."""
        out: dict[str, Any] = {"n_items": self.n_items, "n_failed": len(self.failed), "failed": self.failed,
                               "labels": list(self.labels), "modalities": list(self.reported)}
        for m in self.reported:
            rep = classification_report(self.truth[m], self.pred[m], self.labels, absent=None)
            rep["n_missing"] = self.missing[m]
            # left out of this modality's figure: the items that failed whole, and those whose
            # modality was tried and rejected (the voice gate, no face found)
            rep["n_failed"] = len(self.failed) + self.rejected[m]
            rep["most_predicted"] = largest_prediction(rep)
            out[m] = rep
        out["left_out"] = {m: out[m]["n_failed"] for m in ("face", "voice") if m in self.reported}
        out["items"] = self.items
        out["adaptation"] = None
        if self.adaptation is not None:
            out["adaptation"] = self.adaptation["kind"]
            out[f"{self.adaptation['kind']}_adaptation"] = self.adaptation  # speaker_adaptation, run_adaptation
            plain = self.plain.report()
            out["plain"] = {m: plain[m] for m in self.reported}
        return out


PREDICTION_FIELDS = ("file", "true_label", "status", "face_label", "voice_label", "fused_label")


def predictions_csv(report: dict[str, Any]) -> str:
    """The report's per-item predictions as CSV text: one row per item, scores as ``<modality>_<emotion>``
    columns (empty when the modality is absent), notes joined by "; "."""
    import csv
    import io

    labels = report["labels"]
    score_cols = [f"{m}_{lab}" for m in MODALITIES for lab in labels]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*PREDICTION_FIELDS, *score_cols, "notes", "error"])
    for it in report["items"]:
        scores = [("" if it[f"{m}_scores"] is None else f"{it[f'{m}_scores'][lab]:.6f}")
                  for m in MODALITIES for lab in labels]
        w.writerow([("" if it[k] is None else it[k]) for k in PREDICTION_FIELDS] + scores
                   + ["; ".join(it["notes"]), it.get("error", "")])
    return buf.getvalue()


def training_overlap(bundle: Path, items, root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, set[str]]]:
    """Items being scored that the bundle's face or voice parts were trained or calibrated on.

    Two records are read: the fingerprints of every training item in ``training_items.npz``
    (:mod:`emocli.fingerprints`; the shipped bundle and every training command write them), and,
    for bundles trained with ``--features``, the ids of their training items in face.json /
    voice.json (the path below the corpus root, see :func:`emocli.runners.extract.item_id`).

    Returns
    -------
    overlap : per part with an overlap, ``{"n": count, "modality": "face"|"voice", "files": the first 20}``
        (``--features`` records as ``"face"`` / ``"voice"`` with their ``"split"``)
    seen : per modality, the set of scored files any of its parts has seen
    """
    import json

    paths = [str(it.path) for it in items]
    out: dict[str, dict[str, Any]] = {}
    seen: dict[str, set[str]] = {"face": set(), "voice": set()}
    ids = {item_id(it.path, root): str(it.path) for it in items}
    for mod in ("face", "voice"):
        meta_path = Path(bundle) / f"{mod}.json"
        if not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text())
        hit = sorted(ids[i] for i in set(meta.get("trained_items") or ()) & ids.keys())
        if hit:
            out[mod] = {"n": len(hit), "modality": mod, "split": meta.get("trained_split"), "files": hit[:20]}
            seen[mod].update(hit)
    sets = fp.read(bundle)
    if sets and paths:
        for part, mask in fp.seen_by(sets, fp.fingerprints(paths)).items():
            hit = [p for p, m in zip(paths, mask) if m]
            if hit:
                out[part] = {"n": len(hit), "modality": fp.modality(part), "files": hit[:20]}
                seen[fp.modality(part)].update(hit)
    return out, seen


def unseen_report(report: dict[str, Any], seen: dict[str, set[str]]) -> dict[str, Any]:
    """The report's metrics recomputed on the items the bundle has not seen: per modality, the items
    none of its parts saw (fused: neither modality's), with ``n_seen`` beside each block."""

    labels = report["labels"]
    out: dict[str, Any] = {}
    for m in report["modalities"]:
        skip = seen["face"] | seen["voice"] if m == "fused" else seen.get(m, set())
        truth, pred = [], []
        for it in report["items"]:
            if it["status"] != "ok" or it[f"{m}_label"] is None or it["file"] in skip:
                continue
            truth.append(labels.index(it["true_label"]))
            pred.append(labels.index(it[f"{m}_label"]))
        rep = classification_report(truth, pred, labels, absent=None)
        rep["n_seen"] = sum(1 for it in report["items"] if it["file"] in skip)
        rep["most_predicted"] = largest_prediction(rep)
        out[m] = rep
    return out


def evaluate_items(items, pipeline, *, progress: Callable[[int, int], None] | None = None,
                   adapt: str | None = None, workers: int = 1) -> Evaluation:
    """Run the pipeline over labelled items. Face-crop image corpora are scored in batches; ``workers``
    processes decode, find faces and compute voice features for the others (results in item order).

    With ``adapt`` "speaker", the returned evaluation is the speaker-adapted one (every voice scored
    against its speaker's statistics over the evaluated items, see :mod:`emocli.voice.speaker`); with
    "run", against the statistics of all the evaluated items (speakers unknown); ``.plain`` holds the
    same items scored without adaptation.
    """
    opts = pipeline.options
    ev = Evaluation(labels=pipeline.fusion.labels,
                    reported=tuple(m for m in MODALITIES if m == "fused" or getattr(opts, f"use_{m}")))
    ev.n_items = len(items)
    images = [it for it in items if Path(it.path).suffix.lower() in _image_exts()]
    if images and opts.detect is False and pipeline.face_model is not None and len(images) == len(items):
        _evaluate_crops(images, pipeline, ev, progress)
        return ev
    kept = []
    if workers > 1:  # decoding, detection and voice features in worker processes, results in item order

        results = run_bulk(pipeline, ((str(it.path), Path(it.path), None) for it in items), workers=workers)
    else:
        results = (pipeline.run(it.path) for it in items)
    for i, (it, res) in enumerate(zip(items, results)):
        _add_result(ev, it, res)
        if adapt:
            kept.append((it, res))
        if progress:
            progress(i + 1, len(items))
    if adapt:
        return _adapted(kept, pipeline, ev, kind=adapt)
    return ev


def _add_result(ev: Evaluation, it, res) -> None:
    if res.status != "ok":
        ev.add_failed(it.label, file=str(it.path), error=res.error or "")
    else:
        ev.add(it.label, {"face": res.face_scores, "voice": res.voice_scores, "fused": res.scores},
               file=str(it.path), notes=res.notes)


def _adapted(kept, pipeline, plain: Evaluation, *, kind: str) -> Evaluation:
    """The items of ``plain`` again, each voice scored against its speaker's statistics (``kind``
    "speaker") or those of all the items ("run")."""
    group = (lambda it: it.speaker) if kind == "speaker" else (lambda it: RUN_GROUP)
    counts, stats = speaker_stats((group(it), res) for it, res in kept)
    ev = Evaluation(labels=plain.labels, reported=plain.reported)
    ev.n_items = plain.n_items
    n_adapted = 0
    for it, res in kept:
        if res.status == "ok":
            g = group(it)
            if pipeline.adapt(res, stats.get(g), speaker=it.speaker if kind == "speaker" else None, kind=kind):
                n_adapted += 1
            elif res.voice_vector is not None:
                res.notes.append("speaker unknown" if g is None else
                                 f"{'speaker' if kind == 'speaker' else 'the run'} has {counts.get(g, 0)} voiced "
                                 f"clip(s), adaptation needs {MIN_CLIPS}: plain voice model")
        _add_result(ev, it, res)
    ev.plain = plain
    ev.adaptation = {"kind": kind, "min_clips": MIN_CLIPS, "n_adapted": n_adapted,
                     "speakers": counts if kind == "speaker" else {},
                     "speakers_adapted": sorted(stats) if kind == "speaker" else []}
    return ev


def _image_exts():
    return IMAGE_EXTS


def _evaluate_crops(items, pipeline, ev: Evaluation, progress, chunk: int = 512) -> None:
    """Images that already are face crops: read and score them in large batches, as predict would."""
    fm = pipeline.face_model
    for start in range(0, len(items), chunk):
        part, crops = [], []
        for it in items[start:start + chunk]:
            try:
                crops.append(read_image(it.path))
                part.append(it)
            except MediaError as exc:
                ev.add_failed(it.label, file=str(it.path), error=str(exc))
        if crops:
            scores = normalise(align(pipeline.face.score_crops(crops), fm.labels, ev.labels))
            for it, s in zip(part, scores):
                d = dict(zip(ev.labels, s))
                ev.add(it.label, {"face": d, "voice": None, "fused": d}, file=str(it.path),
                       notes=["scored as a face crop (--no-detect)", "face only"])
        if progress:
            progress(min(start + chunk, len(items)), len(items))


def metrics_table(report: dict[str, Any], *, title: str, console, adapt_hint: bool = True) -> None:
    """Accuracy, UAR, macro-F1 and per-class recall for face, voice and fused, and the emotion each
    predicts most; a line under the table names a sink (with ``adapt_hint``, the voice's says what
    ``--adapt run`` does)."""
    from rich.table import Table

    labels = report["labels"]
    t = Table(title=title, title_justify="left")
    t.add_column("")
    shown = [m for m in MODALITIES if m in report]
    for m in shown:
        t.add_column(m, justify="right")
    rows = [("n scored", lambda r: str(r["n"])), ("accuracy", lambda r: f"{r['accuracy']:.3f}"),
            ("UAR", lambda r: f"{r['uar']:.3f}"), ("macro-F1", lambda r: f"{r['macro_f1']:.3f}")]
    rows += [(f"recall {lab}", lambda r, lab=lab: f"{r['recall'][lab]:.3f}" if r["support"][lab] else "-")
             for lab in labels]
    for name, fn in rows:
        t.add_row(name, *[fn(report[m]) if report[m]["n"] else "-" for m in shown])
    most = {m: largest_prediction(report[m]) for m in shown}
    t.add_row("most predicted", *[f"{b['label']} {b['share']:.2f}" if b else "-" for b in most.values()])
    left = {m: report[m].get("n_failed", 0) for m in ("face", "voice")
            if m in report and (report[m]["n"] or report[m].get("n_failed"))}
    if any(left.values()):
        console.print("left out of the figures (tried and rejected, or failed): " + ", ".join(
            f"{m} {k} of {report.get('n_items', '?')}" for m, k in left.items()) + " item(s); they count as misses nowhere, "
            "so the figures cover only the items scored")
    console.print(t)
    for m, big in most.items():
        if is_sink(big):
            console.print(f"[yellow]{m}: {big['share']:.0%} of its predictions are {big['label']}, which is "
                          f"{big['true_share']:.0%} of the truth[/yellow]" + (
                              "; recordings unlike the voice model's training corpora (language, room, microphone) "
                              "pull it to one emotion: --adapt run scores each voice against the baseline of all "
                              "the evaluated items" if m == "voice" and adapt_hint else ""))
    if report["n_failed"]:
        console.print(f"[yellow]{report['n_failed']} of {report['n_items']} item(s) failed and are not in "
                      f"any column; first: {report['failed'][0]['file']}: {report['failed'][0]['error']}[/yellow]")


def shown_modalities(report: dict[str, Any]) -> list[str]:
    """The modalities worth a panel: those that scored an item, and fused only when both face and voice
    did (with one modality, fused is that modality's scores again)."""
    ran = [m for m in ("face", "voice") if m in report and report[m]["n"]]
    return ran + (["fused"] if len(ran) == 2 and report["fused"]["n"] else [])


def confusion_figure(report: dict[str, Any]):
    """A matplotlib figure laid out as a grid of two columns, readable at 100% zoom: one row-normalised
    confusion matrix per modality that ran (percent of the true class, counts below it, one shared
    colour bar), then per-class recall of each as bars with their values; the title says whether
    the voice was speaker-adapted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    labels = report["labels"]
    shown = shown_modalities(report)
    n = len(shown) + 1
    cols = 1 if n == 1 else 2
    rows_n = -(-n // cols)
    fig, grid = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 4.9 * rows_n), squeeze=False, layout="constrained")
    axes = grid.ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    im = None
    for ax, m in zip(axes, shown):
        cm = np.asarray(report[m]["confusion"], float)
        rows = cm.sum(1, keepdims=True)
        norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        im = ax.imshow(100 * norm, vmin=0, vmax=100, cmap="Blues")
        for i in range(len(labels)):
            for j in range(len(labels)):
                if not rows[i, 0]:
                    continue
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i - 0.13, f"{100 * norm[i, j]:.0f}%", ha="center", va="center", fontsize=9, color=color)
                ax.text(j, i + 0.25, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7.5, color=color)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=9)
        ax.set_yticks(range(len(labels)), labels, fontsize=9)
        for k, lab in enumerate(labels):  # each emotion's colour (as in every picture emo draws) along both axes
            colour = EMOTION_COLOURS.get(lab, "0.7")
            ax.add_patch(Rectangle((k - 0.5, len(labels) - 0.5), 1, 0.18, color=colour, clip_on=False))
            ax.add_patch(Rectangle((-0.68, k - 0.5), 0.18, 1, color=colour, clip_on=False))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{m}: acc {report[m]['accuracy']:.3f}, UAR {report[m]['uar']:.3f} (n={report[m]['n']})",
                     fontsize=10)
    bars = axes[n - 1]
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(shown))
    for k, m in enumerate(shown):
        rec = [np.nan if report[m]["recall"][lab] is None else report[m]["recall"][lab] for lab in labels]
        drawn = bars.bar(x + (k - (len(shown) - 1) / 2) * width, rec, width, label=m)
        bars.bar_label(drawn, fmt="%.2f", fontsize=7, padding=1, rotation=90 if len(shown) > 1 else 0)
    bars.set_xticks(x, labels, rotation=45, ha="right", fontsize=9)
    bars.set_ylim(0, 1.18)  # room for the values above bars near 1.0
    bars.set_yticks(np.linspace(0, 1, 6))
    bars.set_ylabel("recall")
    bars.set_title("per-class recall" if shown else "no item was scored", fontsize=10)
    if shown:  # below the chart, never over a bar
        bars.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=len(shown), frameon=False)
    if im is not None:
        fig.colorbar(im, ax=list(axes[:len(shown)]), fraction=0.03, pad=0.02, label="% of the true class")
    adapted = report.get("adaptation")
    fig.suptitle(f"{report.get('dataset') or ''}{' [' + report['split'] + ']' if report.get('split') else ''}: "
                 + (f"{adapted}-adapted voice" if adapted else "plain voice model" if "voice" in shown else "face"),
                 fontsize=11)
    return fig


def plot_confusions(report: dict[str, Any], path: Path) -> int:
    """Write :func:`confusion_figure` as a PNG; return its number of panels (matrices + the recall chart)."""
    import matplotlib.pyplot as plt

    fig = confusion_figure(report)
    panels = len(shown_modalities(report)) + 1
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return panels
