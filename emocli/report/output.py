"""Turn results into what people and scripts read: Rich tables and JSON lines."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from typing import Any, Iterator, TextIO

from emocli.choices import TIMELINE_FORMATS
from emocli.files import OutputFile, atomic_path, atomic_write_text
from emocli.labels import EMOTION_COLOURS, LABELS


_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` as valid UTF-8: bytes of a non-UTF-8 file name (surrogate escapes) become ``\\xE9``."""
    def esc(m: re.Match) -> str:
        c = ord(m[0])
        return f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else f"\\u{c:04x}"

    return _SURROGATE.sub(esc, text)


def _printable_all(obj: Any) -> Any:
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, dict):
        return {printable(k) if isinstance(k, str) else k: _printable_all(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_printable_all(v) for v in obj]
    return obj


def json_line(obj: dict[str, Any], out: TextIO | None = None) -> None:
    """Write one JSON object as one line and flush (so `| head` and `| jq` see it at once).

    Every string is made printable first, so the line is valid UTF-8 whatever the file names.
    """
    out = out or sys.stdout
    out.write(json.dumps(_printable_all(obj), ensure_ascii=False, allow_nan=False) + "\n")
    out.flush()


CSV_COLUMNS = ("file", "kind", "start", "end", "status", "label", "modalities", "frames_used", "track", "box",
               *LABELS, *(f"face_{lab}" for lab in LABELS), *(f"voice_{lab}" for lab in LABELS), "notes", "error")


def _box_cell(box) -> str:
    return " ".join(f"{v:g}" for v in box) if box else ""


def csv_rows(obj: dict[str, Any]) -> list[list[Any]]:
    """The CSV rows (:data:`CSV_COLUMNS`) of a result line, a ``{"file", "segment"}`` or a ``{"file", "frame"}`` line.

    The unnamed emotion columns are the fused scores; absent values are empty cells. A frame's start
    and end are its time; boxes are "x y w h". A result with ``--faces all`` is followed by a
    ``face`` row per track (its first and last time, box, face scores; notes say which is the main
    face), and its frames carry their ``track``.
    """
    seg, frame, file = obj.get("segment"), obj.get("frame"), printable(obj["file"])
    blank = [""] * len(LABELS)
    if frame is not None:
        return [[file, "frame", frame["time"], frame["time"], "ok", "", "face", 1, frame.get("track", ""),
                 _box_cell(frame.get("box")), *blank, *(frame["face_scores"].get(lab, "") for lab in LABELS),
                 *blank, "main" if frame.get("main") else "", ""]]
    d = seg if seg is not None else obj
    mods = d.get("modalities") or [m for m in ("face", "voice") if d.get(f"{m}_scores")]

    def scores(key, src=d):
        v = src.get(key) or {}
        return [v.get(lab, "") for lab in LABELS]

    rows = [[file, "segment" if seg is not None else "result", d.get("start", ""),
             d.get("end", d.get("duration", "")), d.get("status", "ok"), d.get("label") or "", "+".join(mods),
             d.get("frames_used", ""), "", "", *scores("scores"), *scores("face_scores"), *scores("voice_scores"),
             printable("; ".join(d.get("notes") or [])), printable(d.get("error") or "")]]
    for t in (obj.get("faces") or []) if seg is None else []:
        rows.append([file, "face", t["first"], t["last"], "ok", t["label"], "face", t["frames_used"], t["track"],
                     _box_cell(t.get("box")), *blank, *scores("scores", t), *blank, "main" if t["main"] else "", ""])
    return rows


class LineWriter:
    """Results for scripts: JSON lines (``fmt="json"``) or CSV rows with one header (``"csv"``), each
    written and flushed as it comes, on ``out`` (stdout by default)."""

    def __init__(self, fmt: str, out: TextIO | None = None):
        self.fmt, self.out, self.header = fmt, out, False

    def write(self, obj: dict[str, Any]) -> None:
        out = self.out or sys.stdout
        if self.fmt == "json":
            json_line(obj, out)
            return
        import csv

        w = csv.writer(out, lineterminator="\n")
        if not self.header:
            w.writerow(CSV_COLUMNS)
            self.header = True
        w.writerows(csv_rows(obj))
        out.flush()




def timestamp(seconds: float, fmt: str) -> str:
    """``HH:MM:SS,mmm`` (SRT) or ``HH:MM:SS.mmm`` (WebVTT) of a time in seconds."""
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    sec, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{sec:02d}{',' if fmt == 'srt' else '.'}{ms:03d}"


def segment_text(seg: dict[str, Any]) -> str:
    """A segment as a subtitle says it: its label, fused score and the modalities that scored it
    ("happy 0.62 (face + voice)"), or "nothing scored"."""
    if seg.get("label") is None:
        return "nothing scored"
    used = [m for m in ("face", "voice") if seg.get(f"{m}_scores") is not None]
    return f"{seg['label']} {seg['scores'][seg['label']]:.2f} ({' + '.join(used)})"


class TimelineWriter:
    """``--format srt|vtt|tsv``: an input's ``--window`` segments, cue by cue as they close (a live
    stream's subtitles grow as it plays), as SRT, WebVTT or a tab-separated table (start and end in
    milliseconds, as whisper writes them; then label, fused score, modalities). Same ``write(obj)``
    as :class:`LineWriter`: frame and result lines are not part of a timeline and are skipped."""

    TSV_HEADER = ("start", "end", "label", "score", "modalities")

    def __init__(self, fmt: str, out: TextIO | None = None):
        if fmt not in TIMELINE_FORMATS:
            raise ValueError(f"timeline format must be one of {', '.join(TIMELINE_FORMATS)}, got {fmt!r}")
        self.fmt, self.out, self.n = fmt, out, 0

    def write(self, obj: dict[str, Any]) -> None:
        seg = obj.get("segment")
        if seg is None:
            return
        out = self.out or sys.stdout
        if self.n == 0:
            out.write({"vtt": "WEBVTT\n\n", "tsv": "\t".join(self.TSV_HEADER) + "\n", "srt": ""}[self.fmt])
        self.n += 1
        if self.fmt == "tsv":
            used = "+".join(m for m in ("face", "voice") if seg.get(f"{m}_scores") is not None)
            score = "" if seg.get("label") is None else f"{seg['scores'][seg['label']]:.4f}"
            out.write(f"{round(seg['start'] * 1000)}\t{round(seg['end'] * 1000)}\t{seg.get('label') or ''}\t"
                      f"{score}\t{used}\n")
        else:
            number = f"{self.n}\n" if self.fmt == "srt" else ""
            out.write(f"{number}{timestamp(seg['start'], self.fmt)} --> {timestamp(seg['end'], self.fmt)}\n"
                      f"{printable(segment_text(seg))}\n\n")
        out.flush()


class PerInputWriter:
    """``--output-dir DIR``: each input's results in a file of its own, named after the input: ``clip.json``
    (the result with its ``segments`` and ``frames``), ``clip.csv``, or the timeline ``clip.srt``,
    ``clip.vtt``, ``clip.tsv``. Each is written under a temporary name and renamed when the input's
    result comes (or, for an input cut short by Ctrl-C, when the run ends). Inputs with the same name
    in different folders get ``clip-2.json`` and so on. Same ``write(obj)`` as :class:`LineWriter`."""

    def __init__(self, folder, fmt: str):
        from pathlib import Path

        self.folder, self.fmt = Path(folder), fmt
        self.folder.mkdir(parents=True, exist_ok=True)
        self.current: tuple | None = None  # (input, its OutputFile, inner writer, JSON document)
        self.taken: set[str] = set()
        self.written: list = []

    def write(self, obj: dict[str, Any]) -> None:
        name = obj.get("file", "")
        if self.current is None or self.current[0] != name:
            self.close()
            self._open(name)
        _, _, inner, doc = self.current
        if inner is not None:
            inner.write(obj)
        elif "segment" in obj:
            doc["segments"].append(obj["segment"])
        elif "frame" in obj:
            doc["frames"].append(obj["frame"])
        else:
            doc["result"] = obj
        if "segment" not in obj and "frame" not in obj:  # the input's result: its file is complete
            self.close()

    def _open(self, name: str) -> None:
        from pathlib import Path

        stem = re.sub(r"[^\w.-]+", "_", Path(name).stem if name not in ("<stdin>", "-") else "stdin") or "input"
        ext = "." + self.fmt
        base, k = stem, 1
        while base + ext in self.taken:
            k += 1
            base = f"{stem}-{k}"
        self.taken.add(base + ext)
        out = OutputFile(self.folder / (base + ext))
        inner = None if self.fmt == "json" else (LineWriter(self.fmt, out.fh) if self.fmt == "csv"
                                                 else TimelineWriter(self.fmt, out.fh))
        self.current = (name, out, inner, {"result": {"file": name}, "segments": [], "frames": []})

    def close(self) -> None:
        """Finish the file being written (the run's end calls it too)."""
        if self.current is None:
            return
        _, out, inner, doc = self.current
        self.current = None
        if inner is None:  # the result, then its segments and frames (when there are)
            result = dict(doc["result"], **{k: doc[k] for k in ("segments", "frames") if doc[k]})
            out.fh.write(json.dumps(_printable_all(result), ensure_ascii=False, indent=1) + "\n")
        out.close()
        self.written.append(out.target)


def result_table(res, *, console) -> None:
    """Rows: emotions; columns: face (and each face expert), voice, fused.

    The header line wraps at the terminal's width, not the table's; each column's top emotion
    is marked with a triangle and the fused winner is coloured; when one modality is missing
    the header says which one decided.
    """
    from rich.markup import escape
    from rich.table import Table

    if res.status != "ok":
        console.print(f"[red]{escape(printable(res.file))}: {escape(printable(res.error or 'failed'))}[/red]")
        return
    used = " + ".join(res.modalities)
    decided = ""
    if len(res.modalities) == 1:
        decided = f"; {res.modalities[0]} alone decided"
    frames = f"; {res.frames_used} face frame(s)" if "face" in res.modalities else ""
    console.print(f"{escape(printable(res.file))}  [bold green]{res.label}[/bold green]  ({used}{frames}{decided})",
                  overflow="fold")
    columns = [("face", res.face_scores)]
    columns += [(f"  {name}", scores) for name, scores in (res.face_experts or {}).items()]
    columns += [("voice", res.voice_scores), ("fused", res.scores)]
    table = Table()
    table.add_column("emotion")
    for col, _ in columns:
        table.add_column(col, justify="right", style="dim" if col.startswith("  ") else None)
    tops = {col: (max(scores, key=scores.get) if scores else None) for col, scores in columns}
    for lab in res.scores or LABELS:
        row = [f"[bold green]{lab}[/bold green]" if lab == res.label else lab]
        for col, scores in columns:
            if scores is None:
                row.append("-")
            elif lab == tops[col]:
                style = "bold green" if col == "fused" else "bold"
                row.append(f"[{style}]\u25b8 {scores[lab]:.3f}[/{style}]")
            else:
                row.append(f"{scores[lab]:.3f}")
        table.add_row(*row)
    console.print(table)
    if res.faces:
        faces_table(res.faces, console=console)
    for note in res.notes:
        console.print(f"[yellow]note:[/yellow] {escape(printable(note))}", overflow="fold")


def faces_table(faces: list[dict[str, Any]], *, console) -> None:
    """``--faces all``: a column per face track (its face scores, its top emotion marked), then its box
    (x, y, width x height), frames scored and time span."""
    from rich.table import Table

    table = Table(title=f"{len(faces)} face track(s)", title_justify="left")
    table.add_column("emotion")
    for f in faces:
        table.add_column(f"face {f['track']}" + (" (main)" if f["main"] else ""), justify="right")
    for lab in faces[0]["scores"]:
        table.add_row(lab, *(f"[bold]\u25b8 {f['scores'][lab]:.3f}[/bold]" if lab == f["label"]
                             else f"{f['scores'][lab]:.3f}" for f in faces))
    table.add_section()
    table.add_row("box", *("-" if f["box"] is None else "{:.0f},{:.0f} {:.0f}x{:.0f}".format(*f["box"])
                           for f in faces))
    table.add_row("frames", *(str(f["frames_used"]) for f in faces))
    table.add_row("seconds", *(f"{f['first']:.1f}-{f['last']:.1f}" for f in faces))
    console.print(table)


def segment_line(seg: dict[str, Any], *, console) -> None:
    """One ``--window`` segment on a terminal: its time span, winner, score and what scored it."""
    from rich.markup import escape

    span = f"{seg['start']:7.1f}-{seg['end']:.1f} s"
    used = " + ".join(m for m in ("face", "voice") if seg.get(f"{m}_scores"))
    if seg.get("label"):
        text = f"{span}  [bold]{seg['label']:<8}[/bold] {seg['scores'][seg['label']]:.2f}  ({used})"
    else:
        text = f"{span}  -"
    for note in seg.get("notes", []):
        text += f"  [yellow]{escape(note)}[/yellow]"
    console.print(text)


class LiveView:
    """On a terminal, while a live stream runs: the latest segment's winner, a bar per emotion for
    face, voice and fused, and the stream time, redrawn as each window closes; the segment lines
    scroll above it. Transient: it leaves only those lines, then the result table follows."""

    BAR = 24  # characters of a full bar (score 1.0)

    def __init__(self, console):
        self.console, self.live = console, None

    def segment(self, name: str, seg: dict[str, Any]) -> None:
        from rich.live import Live

        if self.live is None:
            self.live = Live(console=self.console, transient=True, auto_refresh=False, redirect_stdout=False,
                             redirect_stderr=False)
            self.live.start()
        segment_line(seg, console=self.console)  # printed above the live panel
        self.live.update(self.render(name, seg), refresh=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    @classmethod
    def render(cls, name: str, seg: dict[str, Any]):
        from rich.markup import escape
        from rich.table import Table

        label = seg.get("label") or "-"
        table = Table(title=f"{escape(printable(name))}  {seg['end']:.1f} s  [bold green]{label}[/bold green]",
                      title_justify="left", box=None, pad_edge=False)
        table.add_column("emotion")
        columns = [("face", seg.get("face_scores")), ("voice", seg.get("voice_scores")), ("fused", seg.get("scores"))]
        for col, _ in columns:
            table.add_column(col)
        for lab in LABELS:
            row = [f"[bold green]{lab}[/bold green]" if lab == label else lab]
            for col, scores in columns:
                if not scores:
                    row.append("-")
                    continue
                v = float(scores.get(lab, 0.0))
                bar = "\u2588" * int(round(v * cls.BAR))
                row.append(f"[{EMOTION_COLOURS.get(lab, 'white')}]{bar}[/] {v:.2f}")  # the emotion's own colour
            table.add_row(*row)
        return table


class ProgressBar:
    """Progress on stderr while a long step runs (predict, evaluate, extract, train-audio's features), only
    when stderr is a terminal: one bar for every command (count, total, elapsed time, ETA).

    Two kinds of line: inputs done of the total (a bulk run; a count alone when the total is
    not cheap to know) and, for the clip being scored, seconds of media done of its duration,
    per pass ("faces", then "voice"). A run of one input shows only the second. Transient: it
    leaves no line behind and never captures stdout; when stdout is the terminal too, write
    results inside :meth:`paused`, which takes the bar off the screen meanwhile.
    """
    def __init__(self, console, total: int | None, *, what: str = "predict", show: bool = True):
        self.progress = self.inputs = self.clip = None
        self.clip_name: tuple[str, str] | None = None
        if not (show and console.is_terminal):
            return
        from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.what = what
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[amount]}"), TimeElapsedColumn(),
                                 TextColumn("{task.fields[eta]}"), TimeRemainingColumn(), console=console,
                                 transient=True, redirect_stdout=False, redirect_stderr=False)
        if total != 1 or what != "predict":
            self.inputs = self.progress.add_task(what, total=total, amount=self._count(0, total),
                                                 eta="ETA" if total else "")
        self.progress.start()

    @staticmethod
    def _count(done: int, total: int | None) -> str:
        return f"{done}/{total}" if total else f"{done} done"

    def advance(self, name: str = "") -> None:
        """One input is done."""
        if self.progress is None:
            return
        if self.clip is not None:
            self.progress.update(self.clip, visible=False)
        if self.inputs is not None:
            task = self.progress.tasks[self.inputs]
            self.progress.update(self.inputs, advance=1, description=printable(name)[-40:] or self.what,
                                 amount=self._count(int(task.completed) + 1, task.total))

    def update(self, done: int) -> None:
        """``done`` inputs are done (a runner that reports counts rather than each input)."""
        if self.progress is not None and self.inputs is not None:
            task = self.progress.tasks[self.inputs]
            self.progress.update(self.inputs, completed=done, amount=self._count(done, task.total))

    def media(self, name: str, what: str, done: float, total: float | None) -> None:
        """``done`` seconds of the clip ``name``'s ``total`` (None: unknown) went through the pass ``what``."""
        if self.progress is None:
            return
        amount = f"{done:.1f} s of {total:.1f} s" if total else f"{done:.1f} s"
        description = f"{printable(name)[-40:]} {what}"
        if (name, what) != self.clip_name:  # a new clip or pass: a line of its own (elapsed time, ETA)
            if self.clip is not None:
                self.progress.remove_task(self.clip)
            self.clip = self.progress.add_task(description, total=total, amount=amount, eta="ETA" if total else "")
            self.clip_name = (name, what)
        self.progress.update(self.clip, completed=done, amount=amount, refresh=True)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Off the screen while results are written, when they go to the same terminal."""
        if self.progress is None or not sys.stdout.isatty():
            yield
            return
        self.progress.stop()
        try:
            yield
        finally:
            self.progress.start()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def summary_table(results, *, console) -> None:
    """One row per input of a multi-input run: file, label, its fused score, modalities, status."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{len(results)} inputs", title_justify="left")
    for col, just in (("file", "left"), ("label", "left"), ("score", "right"), ("modalities", "left"),
                      ("status", "left")):
        table.add_column(col, justify=just, overflow="fold")
    for res in results:
        ok = res.status == "ok"
        table.add_row(escape(printable(res.file)), res.label or "-",
                      f"{res.scores[res.label]:.3f}" if ok and res.scores else "-",
                      " + ".join(res.modalities) or "-", "ok" if ok else f"[red]{escape(res.error_type or 'error')}[/red]")
    console.print(table)


# EmotiW / AFEW class names, as the challenge's submission files spell them.
EMOTIW_NAMES = {"anger": "Angry", "disgust": "Disgust", "fear": "Fear", "happy": "Happy", "neutral": "Neutral",
                "sad": "Sad", "surprise": "Surprise"}


def submission_name(res) -> str:
    """The file an input's label goes to in the EmotiW layout: ``<clip name without extension>.txt``."""
    from pathlib import Path

    return (Path(res.file).stem if res.file != "<stdin>" else "stdin") + ".txt"


def write_submission(directory, res) -> None:
    """EmotiW layout: ``<directory>/<clip name without extension>.txt`` holding the predicted label."""
    from pathlib import Path

    atomic_write_text(Path(directory) / submission_name(res), EMOTIW_NAMES[res.label] + "\n")


class Timeline:
    """The ``--window`` segments of each input, kept compactly for :func:`plot_timeline`:
    per segment its span, fused scores (NaN when nothing scored it) and which modalities did."""

    def __init__(self):
        self.inputs: dict[str, list[tuple[float, float, tuple[float, ...], bool, bool]]] = {}

    def add(self, name: str, seg: dict[str, Any]) -> None:
        scores = seg.get("scores") or {}
        self.inputs.setdefault(name, []).append(
            (float(seg["start"]), float(seg["end"]), tuple(float(scores.get(lab, "nan")) for lab in LABELS),
             bool(seg.get("face_scores")), bool(seg.get("voice_scores"))))


MAX_TIMELINE_PANELS = 12  # inputs drawn in one --plot figure; later ones are left out (and counted)


def plot_timeline(timeline: Timeline, path) -> int:
    """Write a PNG: per input, the fused scores over time as stacked areas (each emotion in its own colour,
    :data:`emocli.labels.EMOTION_COLOURS`), ticks and thin lines on the window edges, each window's label
    above it, and windows missing the face or the voice hatched. Returns the number of inputs drawn."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(timeline.inputs)[:MAX_TIMELINE_PANELS]
    n = max(1, len(names))
    fig, axes = plt.subplots(n, 1, figsize=(11, 2.6 * n + 0.6), squeeze=False, layout="constrained")
    colours = [EMOTION_COLOURS[lab] for lab in LABELS]
    for ax, name in zip(axes[:, 0], names):
        segs = timeline.inputs[name]
        starts = np.array([s[0] for s in segs])
        ends = np.array([s[1] for s in segs])
        scores = np.nan_to_num(np.array([s[2] for s in segs]), nan=0.0)  # (n, 7)
        # a step drawing: each segment's scores held over its span
        x = np.c_[starts, ends].ravel()
        y = np.repeat(scores, 2, axis=0).T
        ax.stackplot(x, y, labels=LABELS, colors=colours, alpha=0.85, linewidth=0)
        for (a, b, _, face, voice) in segs:
            ax.axvline(a, color="white", linewidth=0.6)
            if not (face and voice):
                what = "no face" if not face and voice else "no voice" if face and not voice else "nothing scored"
                ax.axvspan(a, b, facecolor="none", edgecolor="0.25", hatch="//", linewidth=0, label=what)
        ax.set_xlim(starts.min() if len(starts) else 0, ends.max() if len(ends) else 1)
        ax.set_ylim(0, 1)
        edges, span = sorted({*starts.tolist(), *ends.tolist()}), (ends.max() - starts.min()) if len(segs) else 1.0
        ticks = []
        for e in edges:  # ticks on window edges, none closer than 3% of the span to the one before
            if not ticks or e - ticks[-1] >= 0.03 * span:
                ticks.append(e)
        ax.set_xticks(ticks)
        ax.tick_params(axis="x", labelsize=7)
        if len(segs) <= 40:  # each window's label above it
            for (a, b, sc, face, voice) in segs:
                if face or voice:
                    lab = LABELS[int(np.nanargmax(sc))]
                    ax.text((a + b) / 2, 1.01, lab, ha="center", va="bottom", fontsize=7, color="0.15",
                            transform=ax.get_xaxis_transform(), clip_on=False)
        ax.set_ylabel("fused score")
        ax.set_title(printable(name), loc="left", fontsize=10, pad=14)
        handles, labels = ax.get_legend_handles_labels()
        seen = dict(zip(labels, handles))  # one legend entry per emotion / gap kind
        ax.legend(seen.values(), seen.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                  frameon=False)
    axes[-1, 0].set_xlabel("time (s)")
    if not names:
        axes[0, 0].text(0.5, 0.5, "no segments", ha="center", va="center", transform=axes[0, 0].transAxes)
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return len(names)
