"""``emo evaluate`` and ``emo extract``: a labelled corpus scored against its labels, or its features
extracted for training."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from emocli.cli.base import EmoCommand, app, fail, stderr_console
from emocli.cli.options import (EVALUATE_FORMATS, WORKERS_DEFAULT, AdaptCorpus, CorpusSplitOpt, EvalFormat,
                                JsonTableOpt, LayoutOpt, Modality, ModalityOpt, ModelOpt, RayAddressOpt, RayOpt,
                                ScoringOpts, check_out_folder, output_format, pipeline_options, require_adapted_model,
                                resolve_workers, scoring_options)


class EvaluateCommand(EmoCommand):
    aliases = {**EmoCommand.aliases, "--speaker-norm": ("--adapt", "speaker")}  # the previous release's flag


@app.command("evaluate", cls=EvaluateCommand, short_help="Score a labelled corpus: accuracy, UAR, confusions.", epilog="\b\nExamples:\n  emo evaluate AFEW --split Val --plot cm.png --predictions val.csv\n  emo evaluate ../shared/data/fer2013/val --no-detect --modality face --json\n")
@scoring_options
def evaluate(
    dataset: Annotated[Path, typer.Argument(help="Labelled corpus folder (AFEW, image folders, RAVDESS, CREMA-D, "
                                                 "TESS, SAVEE, EmoDB) or a CSV manifest.")],
    split: CorpusSplitOpt = None,
    layout: LayoutOpt = None,
    model: ModelOpt = None,
    json_out: JsonTableOpt = None,
    out_format: Annotated[Optional[EvalFormat], typer.Option(
        "--format", help="table, json (the report) or csv (a row per item: true label, face, voice and fused "
                         "labels and scores) [default: tables on a terminal, JSON otherwise; with -o FILE, its "
                         "extension].", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write the results (--format json or csv) to this file instead of stdout.",
        show_default=False)] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG here: row-normalised confusion matrices of "
                                                      "the modalities that ran and their per-class recall.")] = None,
    report_path: Annotated[Optional[Path], typer.Option("--report", help="Also write the JSON report to this file.")] = None,
    predictions: Annotated[Optional[Path], typer.Option(help="Write one CSV row per item here: true label, face, "
                                                             "voice and fused label and scores, notes.",
                                                        show_default=False)] = None,
    scoring: ScoringOpts = None,
    modality: ModalityOpt = Modality.both,
    adapt: Annotated[Optional[AdaptCorpus], typer.Option(
        "--adapt", help="Also score each voice against a baseline of the evaluated items (labels unused): "
        "speaker: its speaker's own mean and spread (speakers named by the corpus layout or the manifest's "
        "speaker column); run: the mean and spread of all the items (speakers unknown; the corpus's recording "
        "conditions). The report's figures are then the adapted ones (\"adaptation\"), the unadapted ones "
        "under \"plain\".", show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, show_default=False, help="Worker processes that decode, "
                                                   "find faces and compute voice features in parallel, feeding one "
                                                   f"model, capped at the CPU count [default: {WORKERS_DEFAULT}].")
                       ] = None,
) -> None:
    """Accuracy, UAR, macro-F1, per-class recall and confusion matrices for face, voice and fused."""
    err = stderr_console()
    fmt = output_format(out_format, json_out, output, formats=EVALUATE_FORMATS)
    adapt_kind = adapt.value if adapt is not None else None
    if adapt_kind and modality == Modality.face:
        raise typer.BadParameter(f"--adapt {adapt_kind} adapts the voice; it cannot be used with --modality face")
    items, pipe = _evaluate_setup(dataset, split=split, layout=layout, model=model,
                                  opts=pipeline_options(**scoring, modality=modality), adapt=adapt_kind,
                                  outputs={"-o": output, "--report": report_path, "--predictions": predictions,
                                           "--plot": plot})
    from emocli.report.output import ProgressBar
    from emocli.runners.evaluate import evaluate_items

    bar = ProgressBar(err, len(items), what="evaluate")
    try:
        ev = evaluate_items(items, pipe, progress=lambda i, n: bar.update(i), adapt=adapt_kind,
                            workers=resolve_workers(workers, len(items)))
    finally:
        bar.close()
    report = ev.report()
    report.update({"dataset": str(dataset), "split": split, "model": str(pipe.bundle)})
    _add_training_overlap(report, pipe, items, dataset, err=err)
    written_ok = _write_evaluate_files(report, fmt, output=output, report_path=report_path, predictions=predictions,
                                       plot=plot, err=err)
    if output is None:
        _print_evaluate(report, fmt, title=f"{dataset}" + (f" [{split}]" if split else ""))
    if report["n_failed"] or not written_ok:
        raise typer.Exit(1)


def _evaluate_setup(dataset: Path, *, split, layout, model, opts, adapt: str | None, outputs: dict):
    """The items to score and the pipeline; a corpus, bundle or output that cannot serve the run is one
    line, exit 1, before any item is scored."""
    from emocli.corpus.layouts import load_corpus
    from emocli.corpus.splits import items_of_split
    from emocli.errors import EmoError
    from emocli.files import check_outputs
    from emocli.media.ffmpeg import MEDIA_EXTS
    from emocli.pipeline.core import Pipeline

    try:
        items = items_of_split(load_corpus(dataset, layout), split)
        pipe = Pipeline(model, opts)
        if adapt:
            require_adapted_model(pipe, f"--adapt {adapt}")
            if adapt == "speaker" and not any(it.speaker for it in items):
                raise fail(f"{dataset}: no item names its speaker, so --adapt speaker has nothing to adapt to; use "
                           "--adapt run, a corpus layout with speakers (RAVDESS, CREMA-D, EmoDB, SAVEE, TESS) or a "
                           "manifest with a speaker column")
        paths = [it.path for it in items]
        check_outputs(outputs, inputs=[dataset, *paths] if dataset.is_file() else paths,
                      input_folders=[dataset] if dataset.is_dir() else [], media_exts=MEDIA_EXTS)
    except EmoError as exc:
        raise fail(str(exc)) from None
    return items, pipe


def _add_training_overlap(report: dict, pipe, items, dataset: Path, *, err) -> None:
    """``training_overlap`` and ``unseen`` in the report: the items the bundle's models were trained on, and
    the figures without them; a warning names them."""
    from rich.markup import escape

    from emocli.errors import EmoError
    from emocli.runners.evaluate import training_overlap, unseen_report

    try:
        overlap, seen = training_overlap(pipe.bundle, items, dataset.parent if dataset.is_file() else dataset)
    except EmoError as exc:
        raise fail(str(exc)) from None
    report.update({"training_overlap": overlap, "unseen": None})
    for mod in ("face", "voice"):
        parts = [(name, o) for name, o in overlap.items() if o["modality"] == mod]
        if not parts or mod not in report["modalities"]:
            continue
        what = ", ".join(f"{name} {o['n']}" for name, o in parts)
        err.print(f"[yellow]warning:[/yellow] the bundle's {mod} model has seen {len(seen[mod])} of the {len(items)} "
                  f"item(s) scored ({escape(what)}; e.g. {escape(parts[0][1]['files'][0])}): its figures on them "
                  "measure memory, not generalisation; the figures on the unseen items are under \"unseen\"")
    if any(seen.values()):
        report["unseen"] = unseen_report(report, seen)


def _write_evaluate_files(report: dict, fmt: str, *, output, report_path, predictions, plot, err) -> bool:
    """The files asked for; False when one could not be written (one line each; the others are still written)."""
    import json

    from emocli.errors import EmoError
    from emocli.files import atomic_write_text
    from emocli.runners.evaluate import plot_confusions, predictions_csv

    ok = True
    results = {"json": lambda p: atomic_write_text(p, json.dumps(report) + "\n"),
               "csv": lambda p: atomic_write_text(p, predictions_csv(report))}.get(fmt)
    for path, write in ((output, results),
                        (report_path, lambda p: atomic_write_text(p, json.dumps(report, indent=2) + "\n")),
                        (predictions, lambda p: atomic_write_text(p, predictions_csv(report))),
                        (plot, lambda p: plot_confusions(report, p))):
        if path is None:
            continue
        try:  # a full disk or a vanished folder: one line, and the report still reaches stdout
            write(path)
            err.print(f"wrote {path}", markup=False)
        except EmoError as exc:
            fail(str(exc))
            ok = False
    return ok


def _print_evaluate(report: dict, fmt: str, *, title: str) -> None:
    """The report on stdout: JSON, a CSV row per item, or tables (plain and adapted, unseen items)."""
    if fmt == "json":
        import json

        print(json.dumps(report))
        return
    if fmt == "csv":
        from emocli.runners.evaluate import predictions_csv

        sys.stdout.write(predictions_csv(report))
        return
    from rich.console import Console
    from rich.markup import escape

    from emocli.runners.evaluate import metrics_table

    title = escape(title)
    kind = report["adaptation"]
    if kind:
        a = report[f"{kind}_adaptation"]
        metrics_table({"labels": report["labels"], "n_failed": 0, "n_items": report["n_items"], **report["plain"]},
                      console=Console(), title=f"{title}: without adaptation", adapt_hint=False)
        title += (f": speaker-adapted voice ({a['n_adapted']} item(s) of {len(a['speakers_adapted'])} "
                  f"speaker(s) with >= {a['min_clips']} voiced clips)" if kind == "speaker" else
                  f": run-adapted voice ({a['n_adapted']} item(s) scored against the baseline of all of them)")
    metrics_table(report, title=title, console=Console(), adapt_hint=not kind)
    if report["unseen"]:
        u = report["unseen"]
        n = {m: u[m]["n_seen"] for m in report["modalities"]}
        metrics_table({"labels": report["labels"], "n_failed": 0, "n_items": report["n_items"], **u},
                      console=Console(), title=f"{title}: items the bundle has not seen (left out: "
                      + ", ".join(f"{m} {k}" for m, k in n.items()) + ")", adapt_hint=not kind)


@app.command("extract", cls=EmoCommand, short_help="Extract a corpus's face and voice features once.", epilog="\b\nExamples:\n  emo extract AFEW --out runs/afew_feats --workers 2\n  emo extract AFEW --out runs/afew_feats --resume\n")
@scoring_options
def extract(
    dataset: Annotated[Path, typer.Argument(help="Labelled corpus folder or CSV manifest (see `emo evaluate`).")],
    out: Annotated[Path, typer.Option("--out", "-o", callback=check_out_folder, help="Output folder (items/*.npz + index.csv).")],
    split: CorpusSplitOpt = None,
    layout: LayoutOpt = None,
    model: ModelOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Finish an interrupted extraction: skip finished items.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="With --resume, redo items that failed.")] = False,
    workers: Annotated[Optional[int], typer.Option(min=1, show_default=False, help="Parallel worker processes "
                                                   f"[default: {WORKERS_DEFAULT}].")] = None,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    scoring: ScoringOpts = None,
) -> None:
    """Extract face features (fc2), per-frame face scores and voice statistics for every item."""
    from emocli.bundle import DEFAULT_BUNDLE, verify_bundle
    from emocli.corpus.layouts import load_corpus
    from emocli.corpus.splits import items_of_split
    from emocli.errors import EmoError
    from emocli.runners.extract import check_out_dir, lock_out_dir, settings_for

    err = stderr_console()
    bundle = model or DEFAULT_BUNDLE
    opts = pipeline_options(**scoring, keep_frames=True)
    lock = None  # the output folder's lock, held until this command ends
    try:
        items = items_of_split(load_corpus(dataset, layout), split)
        manifest = verify_bundle(bundle)
        lock = lock_out_dir(out)
        check_out_dir(out, settings_for(dataset, layout, split, bundle, manifest, opts), resume=resume)
    except EmoError as exc:
        if lock is not None:
            lock.close()
        raise fail(str(exc)) from None
    try:
        _extract_locked(items, dataset=dataset, out=out, bundle=bundle, opts=opts, ray=ray, ray_address=ray_address,
                        workers=workers, retry_failed=retry_failed, err=err)
    finally:
        lock.close()


def _extract_locked(items, *, dataset, out, bundle, opts, ray, ray_address, workers, retry_failed, err) -> None:
    """The extraction itself, once the output folder is locked and checked."""
    import json

    from emocli.errors import EmoError
    from emocli.runners.extract import run_extraction
    from emocli.report.output import ProgressBar

    root = dataset.parent if dataset.is_file() else dataset
    bar = ProgressBar(err, len(items), what="extract")
    with contextlib.closing(bar):
        try:
            if ray or ray_address:
                from emocli.runners.ray import RayCluster, ray_extract

                summary = ray_extract(items, root=root, out=out, bundle=bundle, options=opts,
                                      cluster=RayCluster(address=ray_address),
                                      retry_failed=retry_failed, progress=lambda row: bar.advance())
            else:
                summary = run_extraction(items, root=root, out=out, bundle=bundle, options=opts,
                                         workers=resolve_workers(workers, len(items)),
                                         retry_failed=retry_failed, progress=lambda row: bar.advance())
        except EmoError as exc:
            raise fail(str(exc)) from None
    reasons = ", ".join(f"{k}: {v}" for k, v in summary["failed_by_reason"].items())
    err.print(f"extract: {summary['items']} items: {summary['done']} done, {summary['skipped']} already finished, "
              f"{summary['failed']} failed{f' ({reasons})' if reasons else ''}; "
              f"{summary['face_only']} face only (no voice), {summary['voice_only']} voice only (no face)")
    for f in summary["failures"][:10]:
        err.print(f"  [red]failed[/red] {f['error']}")
    print(json.dumps(summary))
    if summary["failed"]:
        raise typer.Exit(1)
