"""Turn results into what people and scripts read: Rich tables and JSON lines."""

from __future__ import annotations

import json
import re
import sys
from typing import Any, TextIO

from .labels import LABELS


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
    for note in res.notes:
        console.print(f"[yellow]note:[/yellow] {escape(printable(note))}", overflow="fold")


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


class ProgressBar:
    """A bar on stderr for bulk runs: inputs done of the total (when known), elapsed time and ETA.

    Shown only when stderr is a terminal and stdout is not (results go to a file or a pipe;
    on a terminal the results themselves show the progress). Transient: it leaves no line
    behind, and it never captures stdout.
    """

    def __init__(self, console, total: int | None, *, what: str = "predict"):
        self.progress = None
        if not console.is_terminal or sys.stdout.isatty():
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total:
            columns += [BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                        TimeRemainingColumn()]
        else:
            columns += [TextColumn("{task.completed} done"), TimeElapsedColumn()]
        self.progress = Progress(*columns, console=console, transient=True, redirect_stdout=False,
                                 redirect_stderr=False)
        self.task = self.progress.add_task(what, total=total)
        self.progress.start()

    def advance(self, name: str = "") -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, description=printable(name)[-40:] or "predict")

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

    from .bundle import atomic_write_text

    atomic_write_text(Path(directory) / submission_name(res), EMOTIW_NAMES[res.label] + "\n")
