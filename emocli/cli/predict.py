"""``emo predict``: score files, folders, paths on stdin and live streams; results as a table, JSON
lines or CSV, with timelines, annotated video and EmotiW submissions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from emocli.cli.base import STREAM_STOP, EmoCommand, Interrupted, app, broken_pipe, emit, fail, stderr_console
from emocli.choices import ADAPT_MODES, TIMELINE_FORMATS
from emocli.cli.options import (WORKERS_DEFAULT, AdaptMode, FaceMode, JsonTableOpt, Modality, ModalityOpt,
                                ModelOpt, OutFormat, RayAddressOpt, RayOpt, ScoringOpts, number_in, output_format,
                                parse_input_options, pipeline_options, require_adapted_model, resolve_workers,
                                scoring_options)


InputsArg = Annotated[list[str], typer.Argument(help="Video, image or audio files, folders, or - to read "
    "paths (one per line) or media bytes from stdin.",
    show_default=False)]
OutFormatOpt = Annotated[Optional[OutFormat], typer.Option(
    "--format", help="table, json (JSON lines), csv (one header, then a row per segment and per result), or "
    "a timeline of the --window segments: srt or vtt (subtitles: label, fused score, "
    "modalities) or tsv (start and end in ms, label, score, modalities) [default: a table on a "
    "terminal, JSON lines otherwise; with -o FILE, its extension].",
    show_default=False)]
FramesOpt = Annotated[bool, typer.Option(
    "--frames", help="Also write a line (CSV row) per scored frame: time, face box (x, y, w, h in the "
    "input's pixels) and face scores; JSON or CSV only.")]
PlotOpt = Annotated[Optional[Path], typer.Option(
    help="With --window: write a PNG of the fused scores over time (stacked, one colour per emotion; "
    "windows without a face or a voice hatched), one panel per input, when the run ends.",
    show_default=False)]
OutputOpt = Annotated[Optional[Path], typer.Option(
    "--output", "-o", help="Write the results (JSON lines or CSV) to this file instead of stdout; it is "
    "written under a temporary name and renamed when the run ends (Ctrl-C too).",
    show_default=False)]
OutputDirOpt = Annotated[Optional[Path], typer.Option(
    "--output-dir", help="Write each input's results to a file of its own in this folder, named after the "
    "input: clip.json (the result with its segments and frames), clip.csv, or clip.srt, "
    "clip.vtt, clip.tsv with --format.", show_default=False)]
MaxSecondsOpt = Annotated[Optional[float], typer.Option(callback=number_in(0.1, 1e6), help="Analyse at most this many "
    "seconds of each input (0.1 to 1e6).")]
WindowOpt = Annotated[Optional[float], typer.Option(callback=number_in(0.5, 86400.0), help="Also score consecutive segments of this many "
    "seconds (JSON: lines with \"segment\").")]
WorkersOpt = Annotated[Optional[int], typer.Option(min=1, show_default=False, help="Worker processes that decode, "
    "find faces and compute voice features in parallel, feeding one "
    f"model [default: {WORKERS_DEFAULT}; 1 for paths on stdin].")]
SubmissionOpt = Annotated[Optional[Path], typer.Option(help="Also write the EmotiW submission layout here: one "
    "<clip>.txt per input holding its label (Angry, ..., Surprise).")
]
FailFastOpt = Annotated[bool, typer.Option("--fail-fast", help="Stop at the first input that fails.")]
SpeakerOfOpt = Annotated[Optional[str], typer.Option(
    "--speaker-of", metavar="<regex|csv>", help="Who speaks in each input, for --adapt speaker (implied): a REGEX "
    "that finds the speaker in each input's name (its 'speaker' group, else group 1, else the match; e.g. "
    "'(\\d{4})_' for CREMA-D) or a CSV file with path,speaker columns. Each voice is scored against its "
    "speaker's own mean and spread over the run (speakers with at least 6 clips).",
    show_default=False)]
AdaptOpt = Annotated[Optional[AdaptMode], typer.Option(
    "--adapt", help="Score each voice against a baseline heard in this run (labels unused; \"adaptation\" in "
    "each result says which was used): speaker: its speaker's clips (needs --speaker-of; 6 or more); run: all "
    "the run's clips, speakers unknown (6 or more voiced clips, else the plain model); stream: each --window "
    "segment and live window against its stream's running baseline, once 20 s of voice are in (one person "
    "per stream). speaker and run give results when every input is scored, in input order.",
    show_default=False)]
AnnotateOpt = Annotated[Optional[Path], typer.Option(
    help="Also write the input video again with each scored face's box and label and a bar chart of the "
    "fused scores, held from each scored frame to the next; same size, rate and sound (.mp4, .mov or "
    ".mkv; a still image: .png or .jpg). One input file; with --output-dir, give the kind (mp4, mov "
    "or mkv) and every input gets DIR/<name>.annotated.<kind> (stills .png).", show_default=False)]
FacesOpt = Annotated[FaceMode, typer.Option(
    help="main: score the main speaker's face in each frame (a note counts the other faces seen); all: "
    "also score every other face large enough, linked into tracks across frames, with a result per "
    "track (JSON \"faces\"; a table column each). The fused result stays the main face's.")
]
InputOptionsOpt = Annotated[Optional[str], typer.Option(
    "--input-options", metavar="<options>", callback=parse_input_options,
    help="ffmpeg input options for live inputs (pipes, URLs, devices), e.g. \"-f v4l2 -framerate 30 "
    "-video_size 640x480\" for a webcam (/dev/videoN gets -f v4l2 by itself).", show_default=False)]

class PredictCommand(EmoCommand):
    bare_options = (("--adapt", "stream", ADAPT_MODES),)  # the previous release's --adapt flag: streams


@app.command("predict", cls=PredictCommand, short_help="Score the emotions of videos, images, audio, streams.", epilog="\b\nExamples:\n  emo predict clip.avi\n  emo predict clips/ --json > results.jsonl\n  find corpus -name '*.avi' | emo predict - --workers 2 > results.jsonl\n  emo predict interview.mp4 --window 2 --face-experts emo-cnn\n  ffmpeg -re -i talk.mp4 -f mpegts - | emo predict - --window 2\n  emo predict rtsp://camera.local/stream --window 2 -o live.csv --plot timeline.png\n")
@scoring_options
def predict(
    inputs: InputsArg,
    model: ModelOpt = None,
    json_out: JsonTableOpt = None,
    out_format: OutFormatOpt = None,
    frames: FramesOpt = False,
    plot: PlotOpt = None,
    output: OutputOpt = None,
    output_dir: OutputDirOpt = None,
    scoring: ScoringOpts = None,
    modality: ModalityOpt = Modality.both,
    max_seconds: MaxSecondsOpt = None,
    window: WindowOpt = None,
    workers: WorkersOpt = None,
    ray: RayOpt = False,
    ray_address: RayAddressOpt = None,
    submission: SubmissionOpt = None,
    fail_fast: FailFastOpt = False,
    speaker_of: SpeakerOfOpt = None,
    adapt: AdaptOpt = None,
    annotate: AnnotateOpt = None,
    faces: FacesOpt = FaceMode.main,
    input_options: InputOptionsOpt = None,
) -> None:
    """Score the seven emotions in each input: face, voice and the two fused.

    Live inputs (- with media bytes, FIFOs, URLs such as rtsp:// or https://, /dev/videoN) are
    decoded in one pass as they arrive; with --window each segment is written as soon as its
    window has closed. Ctrl-C ends a live stream and still writes its result (exit 130).

    Exit code 0 when every input succeeded, 1 when any failed (each failure is still a
    result line with "status": "error"), 2 for bad usage, 130 when interrupted.
    """
    err = stderr_console()
    if output is not None and output_dir is not None:
        raise typer.BadParameter("results go to one file (-o) or to a file per input (--output-dir), not both",
                                 param_hint="--output-dir")
    fmt = output_format(out_format, json_out, output, output_dir)
    _check_predict_usage(inputs, fmt=fmt, window=window, output_dir=output_dir, frames=frames, plot=plot)
    source = _annotation_target(inputs, annotate, output_dir)
    bulk_annotate = isinstance(source, tuple)
    _check_predict_outputs(inputs, output=output, plot=plot, annotate=None if bulk_annotate else annotate,
                           submission=submission, output_dir=output_dir)
    mode = _adapt_mode(adapt, speaker_of, modality)
    opts = pipeline_options(**scoring, modality=modality, max_seconds=max_seconds, window=window,
                             frames=frames or source is not None, adapt=mode == "stream",
                             faces=FaceMode(faces).value)
    rule = _adapt_rule(mode, speaker_of)
    pipe = _load_pipeline(model, opts, prepare_only=bool(ray or ray_address),
                          adapting=f"--adapt {mode}" if mode else None)
    outputs = _Outputs.open(fmt, output=output, output_dir=output_dir, plot=plot, err=err)
    try:
        _predict_run(pipe, opts, inputs, live_opts=tuple(input_options or ()), writer=outputs.writer,
                     out_console=outputs.console, err=err, ray=ray, ray_address=ray_address, workers=workers,
                     submission=submission, fail_fast=fail_fast, timeline=outputs.timeline, rule=rule,
                     annotate=None if source is None else (source, output_dir if bulk_annotate else annotate),
                     frames=frames)
    finally:  # however the run ends (Ctrl-C, a failed input), what was computed is kept
        if not outputs.close():
            raise typer.Exit(1)


def _check_predict_usage(inputs: list[str], *, fmt: str, window: Optional[float], output_dir: Optional[Path],
                         frames: bool, plot: Optional[Path]) -> None:
    """Options that need one another (exit 2, before anything runs)."""
    if fmt in TIMELINE_FORMATS:
        if not window:
            raise typer.BadParameter(f"--format {fmt} writes the --window segments: add --window SECONDS",
                                     param_hint="--format")
        if output_dir is None and (len(inputs) > 1 or any(Path(i).is_dir() for i in inputs)):
            raise typer.BadParameter(f"--format {fmt} writes one input's timeline: give one input, or "
                                     "--output-dir DIR for a file per input", param_hint="--format")
    if frames and fmt == "table":
        raise typer.BadParameter("per-frame lines are for scripts: add --format csv, --json or -o FILE",
                                 param_hint="--frames")
    if plot is not None and not window:
        raise typer.BadParameter("the timeline is drawn from the segments: add --window SECONDS",
                                 param_hint="--plot")


def _annotation_target(inputs: list[str], annotate: Optional[Path], output_dir: Optional[Path]):
    """--annotate's source: None without it, the one input file for ``--annotate OUT``, ("bulk", kind)
    for ``--annotate KIND --output-dir DIR``."""
    if annotate is None:
        return None
    if output_dir is None:
        return _annotate_source(inputs)
    kind = str(annotate).lower().lstrip(".")
    if kind not in ("mp4", "mov", "mkv"):
        raise typer.BadParameter("with --output-dir, --annotate gives the kind of file: mp4, mov or mkv",
                                 param_hint="--annotate")
    if any(i == "-" for i in inputs):
        raise fail("--annotate draws on files, not stdin or a live stream; save the stream to a file first")
    return ("bulk", kind)


def _adapt_mode(adapt, speaker_of: Optional[str], modality: Modality) -> Optional[str]:
    """--adapt's mode: --speaker-of alone means speaker; None without either (usage errors: exit 2)."""
    mode = adapt.value if adapt is not None else "speaker" if speaker_of is not None else None
    if mode and modality == Modality.face:
        raise typer.BadParameter(f"{'--speaker-of' if adapt is None else '--adapt'} adapts the voice; it "
                                 "cannot be used with --modality face")
    if mode == "speaker" and speaker_of is None:
        raise typer.BadParameter("--adapt speaker needs --speaker-of REGEX|FILE.csv to tell who speaks in each "
                                 "input (or --adapt run when the speakers are unknown)", param_hint="--adapt")
    if speaker_of is not None and mode != "speaker":
        raise typer.BadParameter(f"--speaker-of names the speakers of --adapt speaker, not of --adapt {mode}",
                                 param_hint="--speaker-of")
    return mode


def _adapt_rule(mode: Optional[str], speaker_of: Optional[str]):
    """Who shares a baseline in a bulk run: the :class:`~emocli.voice.speaker.SpeakerRule` of --speaker-of,
    the whole run (:class:`~emocli.voice.speaker.RunRule`), or None (no adaptation, or streams')."""
    from emocli.errors import EmoError
    from emocli.voice.speaker import RunRule, SpeakerRule

    if mode == "run":
        return RunRule()
    if mode != "speaker":
        return None
    try:
        return SpeakerRule(speaker_of)
    except EmoError as exc:  # a CSV that cannot be read (before ValueError: it is one)
        raise fail(str(exc)) from None
    except ValueError as exc:  # a malformed regular expression: a usage error
        raise typer.BadParameter(str(exc)) from None


def _load_pipeline(model, opts, *, prepare_only: bool, adapting: Optional[str]):
    """The bundle's pipeline (with Ray the workers load the face network: here only check the bundle);
    a bundle that cannot serve the run is one line, exit 1, before any input is decoded."""
    from emocli.errors import EmoError
    from emocli.pipeline.core import Pipeline

    try:
        pipe = Pipeline(model, opts, role="prepare" if prepare_only else "full")
        if adapting:
            require_adapted_model(pipe, adapting)
    except EmoError as exc:
        raise fail(str(exc)) from None
    return pipe


class _Outputs:
    """Where predict's results go: a results file (-o), a file per input (--output-dir), the timeline
    for --plot, or the terminal. :meth:`close` keeps whatever was computed, however the run ended."""

    def __init__(self, fmt, *, output, output_dir, plot, err, sink, console):
        from emocli.report.output import LineWriter, PerInputWriter, Timeline, TimelineWriter

        self.output, self.output_dir, self.plot, self.err, self.sink, self.console = (
            output, output_dir, plot, err, sink, console)
        fh = sink.fh if sink is not None else None
        self.writer = (PerInputWriter(output_dir, fmt) if output_dir is not None else TimelineWriter(fmt, fh)
                       if fmt in TIMELINE_FORMATS else LineWriter(fmt, fh) if fmt != "table" else None)
        self.timeline = Timeline() if plot is not None else None

    @classmethod
    def open(cls, fmt: str, *, output, output_dir, plot, err) -> "_Outputs":
        from emocli.errors import OutputError
        from emocli.files import OutputFile

        console = None
        if fmt == "table":
            from rich.console import Console

            # colours only where the table asks for them: Rich's highlighter would style a header's
            # "12 face frame(s)" as a function call and every number in a note
            console = Console(highlight=False)
            console.on_broken_pipe = broken_pipe  # Rich's own handler exits with 1
        try:
            sink = None if output is None else OutputFile(output)
        except OutputError as exc:
            raise fail(str(exc)) from None
        return cls(fmt, output=output, output_dir=output_dir, plot=plot, err=err, sink=sink, console=console)

    def close(self) -> bool:
        """Write out and rename the files; False when one could not be written (each failure one line)."""
        from emocli.errors import EmoError, OutputError

        ok = True
        if self.output_dir is not None:
            try:
                self.writer.close()
            except OutputError as exc:  # names the file
                fail(str(exc))
                ok = False
            if self.writer.written:
                self.err.print(f"wrote {len(self.writer.written)} file(s) in {self.output_dir}", markup=False)
        if self.sink is not None:
            try:
                self.sink.close()
                self.err.print(f"wrote {self.output}", markup=False)
            except OutputError as exc:  # a failed write (a full disk): one line naming the file
                fail(str(exc))
                ok = False
        if self.timeline is not None:
            from emocli.report.output import plot_timeline

            try:
                plot_timeline(self.timeline, self.plot)
                self.err.print(f"wrote {self.plot}", markup=False)
            except EmoError as exc:
                fail(str(exc))
                ok = False
        return ok


def _check_predict_outputs(inputs: list[str], **outputs: Optional[Path]) -> None:
    """predict's outputs, before any work: none may be an input file (or an existing media file of an input
    folder), two may not name one file, and each must be writable (exit 1 with one line otherwise)."""
    from emocli.errors import OutputError
    from emocli.files import check_outputs
    from emocli.media.ffmpeg import MEDIA_EXTS

    files = [Path(i) for i in inputs if i != "-" and Path(i).is_file()]
    folders = [Path(i) for i in inputs if i != "-" and Path(i).is_dir()]
    names = {"output": "-o", "plot": "--plot", "annotate": "--annotate"}
    try:
        check_outputs({names[k]: v for k, v in outputs.items() if k in names},
                      folders={"--submission": outputs.get("submission"), "--output-dir": outputs.get("output_dir")},
                      inputs=files, input_folders=folders,
                      media_exts=MEDIA_EXTS)
    except OutputError as exc:
        raise fail(str(exc)) from None


def _predict_run(pipe, opts, inputs, *, live_opts, writer, out_console, err, ray, ray_address, workers, submission,
                 fail_fast, timeline, rule=None, annotate=None, frames=False) -> None:
    """The predict loop: inputs in, a line (or table) per segment and per result out.

    ``annotate``: (input file, output file) of ``--annotate``, written once the result is out;
    ``frames``: whether per-frame lines were asked for (``--annotate`` needs them either way).
    """
    from emocli.runners.pool import run_bulk
    from emocli.errors import EmoError
    from emocli.media.inputs import expand_inputs

    as_json = writer is not None
    view = None
    from emocli.report.output import ProgressBar

    # the number of inputs (folders walked once): the progress bar's total, and --workers' default
    n_inputs = _count_inputs(inputs) if err.is_terminal or workers is None else None
    total = n_inputs if err.is_terminal else None
    # a live input's panel (LiveView) has the terminal to itself when the results go there
    bar = ProgressBar(err, total, show=total is not None or not sys.stdout.isatty())
    if ray or ray_address:
        from emocli.media.inputs import files_only
        from emocli.runners.ray import RayCluster, ray_predict

        try:
            results = ray_predict(pipe.bundle, opts, files_only(expand_inputs(inputs, input_options=live_opts),
                                                                "is read on this machine: run it without --ray"),
                                  cluster=RayCluster(address=ray_address))
        except EmoError as exc:
            bar.close()
            raise fail(str(exc)) from None
    else:
        from emocli.report.output import LiveView, segment_line

        view = LiveView(out_console) if out_console is not None and out_console.is_terminal else None

        def on_segment(name: str, seg: dict) -> None:
            if timeline is not None:
                timeline.add(name, seg)
            if as_json:
                emit(writer.write, {"file": name, "segment": seg})
            elif view is not None:
                emit(view.segment, name, seg)
            else:
                emit(segment_line, seg, console=out_console)

        def on_frame(name: str, frame: dict) -> None:
            emit(writer.write, {"file": name, "frame": frame})

        results = run_bulk(pipe, expand_inputs(inputs, input_options=live_opts), workers=resolve_workers(workers, n_inputs),
                           on_segment=on_segment, on_frame=on_frame, stop=STREAM_STOP, on_progress=bar.media)
    voice_labels: list[str] | None = None
    if rule is not None:
        from emocli.voice.speaker import adapt_results

        results = adapt_results(pipe, results, rule)
    elif not opts.adapt:  # the plain voice model: a run whose voices crowd into one emotion gets a note
        voice_labels = []
        results = _voice_labels_of(results, voice_labels)
    kept: list = []
    if annotate is not None:
        results = _keep_frames(results, kept, show=frames)
    shown, written = [], {}
    try:
        failed = _print_results(results, bar=bar, err=err, writer=writer, out_console=out_console,
                                submission=submission, fail_fast=fail_fast, shown=shown, written=written,
                                timeline=timeline, view=view)
    finally:
        bar.close()
        if view is not None:
            view.stop()
    if len(shown) > 1:  # a table run over several inputs ends with one line per input
        from emocli.report.output import summary_table

        emit(summary_table, shown, console=out_console)
    _note_voice_sink(voice_labels, err)
    if STREAM_STOP.is_set():  # Ctrl-C ended a live stream: its result is out, now exit as interrupted
        raise Interrupted()
    if annotate is not None and isinstance(annotate[0], tuple):  # --output-dir: every input's own annotation
        failed |= _write_annotations(kept, annotate[1], annotate[0][1], pipe=pipe, opts=opts, err=err)
    elif annotate is not None and kept and kept[0].status == "ok":
        _write_annotation(kept[0], *annotate, pipe=pipe, opts=opts, err=err)
    if failed:
        raise typer.Exit(1)


def _voice_labels_of(results, labels: list[str]):
    """``results``, passed on as they come; each voiced result's voice emotion appended to ``labels``."""
    for res in results:
        if res.status == "ok" and res.voice_scores:
            labels.append(max(res.voice_scores, key=res.voice_scores.get))
        yield res


def _note_voice_sink(voice_labels: Optional[list[str]], err) -> None:
    """A note on stderr when most of a run's voices got one emotion from the plain voice model
    (:func:`emocli.report.metrics.run_sink`): recordings unlike its training corpora do that."""
    from emocli.report.metrics import run_sink

    sink = run_sink(voice_labels or [])
    if sink is not None:
        label, k, n = sink
        err.print(f"[yellow]note:[/yellow] the voice called {k} of {n} voiced inputs {label} ({k / n:.0%}); "
                  "recordings unlike its training corpora (language, room, microphone) pull the voice model to "
                  f"one emotion: if these are not mostly {label}, --adapt run scores each voice against the "
                  "baseline of the whole run")


def _annotate_source(inputs: list[str]) -> Path:
    """--annotate: the one input file it draws on; any other input is an error (exit 1) before anything runs."""
    from emocli.media.inputs import expand_inputs
    from emocli.media.live import LiveSource

    what = "draws on one video (or image) file"
    if len(inputs) != 1:
        raise fail(f"--annotate {what}, and {len(inputs)} inputs were given; run `emo predict FILE --annotate "
                   "OUT.mp4` once per file")
    arg = inputs[0]
    if arg == "-" or Path(arg).is_dir() or any(isinstance(src, LiveSource) for _, src, _ in expand_inputs([arg])):
        raise fail(f"{'<stdin>' if arg == '-' else arg}: --annotate {what}, not a folder, stdin or a live stream; "
                   "save the stream to a file first (ffmpeg -i URL -t 60 clip.mp4) and annotate that")
    return Path(arg)


def _keep_frames(results, kept: list, *, show: bool):
    """Pass results on, keeping each in ``kept`` (its frame records feed --annotate); without --frames their
    frame lines are not printed."""
    import dataclasses

    for res in results:
        kept.append(res)
        yield res if show else dataclasses.replace(res, frames=None)


def _write_annotations(kept: list, folder: Path, kind: str, *, pipe, opts, err) -> bool:
    """--annotate KIND --output-dir DIR: each scored input file drawn on into DIR/<name>.annotated.<kind>
    (a still image: .png), names made unique as --output-dir's results are. A failure is one line
    and the run goes on; returns whether any failed."""
    from emocli.media.ffmpeg import IMAGE_EXTS

    taken: set[str] = set()
    failed = False
    for res in kept:
        source = Path(res.file)
        if res.status != "ok" or not source.is_file():
            continue
        ext = ".png" if source.suffix.lower() in IMAGE_EXTS else "." + kind
        stem, k = source.stem, 1
        while (name := f"{stem}{'' if k == 1 else f'-{k}'}.annotated{ext}") in taken:
            k += 1
        taken.add(name)
        try:
            _write_annotation(res, source, folder / name, pipe=pipe, opts=opts, err=err)
        except typer.Exit:  # its one line is printed
            failed = True
    return failed


def _write_annotation(res, source: Path, target: Path, *, pipe, opts, err) -> None:
    """--annotate: draw ``res`` on ``source`` into ``target``; a failure is one line and exit 1 (the result is
    already out)."""
    from emocli.report.annotate import annotate
    from emocli.errors import EmoError
    from emocli.report.output import ProgressBar

    bar = ProgressBar(err, 1)
    try:
        annotate(source, target, res, pipe.fusion, fps=opts.fps, max_seconds=opts.max_seconds,
                 progress=lambda done, total: bar.media(res.file, "annotate", done, total))
    except EmoError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{target}: cannot write the annotated video there ({exc.strerror or exc}); choose a folder "
                   "you can write to") from None
    finally:
        bar.close()
    err.print(f"wrote {target}", markup=False)


def _count_inputs(inputs: list[str]) -> int | None:
    """How many inputs a run has, when that is cheap to know (files and folders; not stdin or pipes)."""
    from emocli.media.inputs import expand_inputs

    paths = [Path(a) for a in inputs]
    if any(a == "-" for a in inputs) or not all(p.is_file() or p.is_dir() for p in paths):
        return None
    return sum(1 for _ in expand_inputs(inputs))


def _print_results(results, *, bar, err, writer, out_console, submission, fail_fast, shown, written,
                   timeline=None, view=None) -> int:
    """Write each result as it comes (JSON line, CSV row or table), its error on stderr; return how many failed."""
    failed = 0
    for res in results:
        if view is not None:
            view.stop()  # a live stream's panel gives way to its result table
        bar.advance(res.file)
        with bar.paused():
            failed += _print_result(res, err=err, writer=writer, out_console=out_console, submission=submission,
                                    shown=shown, written=written, timeline=timeline)
        if failed and fail_fast:
            break
    return failed


def _print_result(res, *, err, writer, out_console, submission, shown, written, timeline) -> int:
    """One result's lines (or table), its error on stderr; 1 if it failed (or its submission file clashed)."""
    from rich.markup import escape

    from emocli.report.output import printable, result_table

    failed = 0
    if res.status != "ok":
        failed += 1
        err.print(f"[red]error:[/red] {escape(printable(res.error or ''))}")
    if submission is not None and res.status == "ok":
        from emocli.report.output import submission_name, write_submission

        name = submission_name(res)
        if name in written:  # two inputs of one name in different folders: never overwrite the first
            failed += 1
            err.print(f"[red]error:[/red] {escape(printable(res.file))}: its submission file {name} was already "
                      f"written for {escape(printable(written[name]))}; rename one of them or run them "
                      "separately (its result line is still printed)")
        else:
            from emocli.errors import EmoError

            written[name] = res.file
            try:
                write_submission(submission, res)
            except EmoError as exc:  # a full disk mid-run: said, and the result line still follows
                failed += 1
                err.print(f"[red]error:[/red] {escape(printable(str(exc)))} (its result line is still printed)")
    if timeline is not None:
        for seg in res.segments or []:
            timeline.add(res.file, seg)
    if writer is not None:
        for frame in res.frames or []:
            emit(writer.write, {"file": res.file, "frame": frame})
        for seg in res.segments or []:
            emit(writer.write, {"file": res.file, "segment": seg})
        emit(writer.write, res.to_json())
    else:
        from emocli.report.output import segment_line

        for seg in res.segments or []:
            emit(segment_line, seg, console=out_console)
        emit(result_table, res, console=out_console)
        shown.append(res)
    return failed
