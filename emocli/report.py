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
    """Rows: emotions; columns: face, voice, fused; the winner in bold."""
    from rich.markup import escape
    from rich.table import Table

    if res.status != "ok":
        console.print(f"[red]{escape(printable(res.file))}: {escape(printable(res.error or 'failed'))}[/red]")
        return
    used = " + ".join(res.modalities)
    title = f"{escape(printable(res.file))}  [bold]{res.label}[/bold]  ({used}; {res.frames_used} face frame(s))"
    table = Table(title=title, title_justify="left")
    table.add_column("emotion")
    for col, scores in (("face", res.face_scores), ("voice", res.voice_scores), ("fused", res.scores)):
        table.add_column(col, justify="right", style="bold" if col == "fused" else None)
    for lab in res.scores or LABELS:
        row = [f"[bold]{lab}[/bold]" if lab == res.label else lab]
        for scores in (res.face_scores, res.voice_scores, res.scores):
            row.append("-" if scores is None else f"{scores[lab]:.3f}")
        table.add_row(*row)
    console.print(table)
    for note in res.notes:
        console.print(f"[yellow]note:[/yellow] {escape(printable(note))}")


# EmotiW / AFEW class names, as the challenge's submission files spell them.
EMOTIW_NAMES = {"anger": "Angry", "disgust": "Disgust", "fear": "Fear", "happy": "Happy", "neutral": "Neutral",
                "sad": "Sad", "surprise": "Surprise"}


def write_submission(directory, res) -> None:
    """EmotiW layout: ``<directory>/<clip name without extension>.txt`` holding the predicted label."""
    from pathlib import Path

    from .bundle import atomic_write_text

    name = Path(res.file).stem if res.file != "<stdin>" else "stdin"
    atomic_write_text(Path(directory) / f"{name}.txt", EMOTIW_NAMES[res.label] + "\n")
