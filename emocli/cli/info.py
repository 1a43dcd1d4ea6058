"""``emo info``: the bundle, models, detector, speech encoder, ffmpeg and GPU a run would use."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from emocli.cli.base import EmoCommand, app, emo_errors, fail
from emocli.cli.options import ModelOpt


@app.command("info", cls=EmoCommand, short_help="Show the bundle, models, ffmpeg and GPU a run uses.", epilog="\b\nExamples:\n  emo info\n  emo info --model runs/bundle --json | jq '.files[].sha256'")
def info(
    model: ModelOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout (the default when stdout is "
                                                          "not a terminal).")] = False,
) -> None:
    """Show what a run would use: the bundle and each model file (role, size, sha256, licence, training data),
    the face detectors and speech encoder shipped with emo, the ffmpeg found, and whether a GPU is used and why."""
    from rich.console import Console

    from emocli.bundle import DEFAULT_BUNDLE
    from emocli.report.info import describe, info_tables

    try:
        d = describe(model or DEFAULT_BUNDLE)
    except emo_errors() as exc:
        raise fail(str(exc)) from None
    if json_out or not sys.stdout.isatty():
        print(json.dumps(d, indent=2))
    else:
        info_tables(d, console=Console(highlight=False))
