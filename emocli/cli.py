"""The ``emo`` command line. Only this module turns errors into exit codes.

Exit codes: 0 success, 1 an input or model failed (one red line on stderr per failure),
2 bad usage, 130 interrupted. Heavy libraries are imported inside commands.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner off stderr

app = typer.Typer(
    name="emo",
    help="Audio-visual emotion recognition: face + voice, fused, from the command line.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"emo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Audio-visual emotion recognition: face + voice, fused, from the command line."""


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def fail(message: str) -> "typer.Exit":
    """Print one red line on stderr and return the exit to raise (code 1)."""
    from rich.markup import escape

    _stderr().print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(1)


@app.command("train-video")
def train_video(
    data: Annotated[Path, typer.Argument(help="Folder of face images, one sub-folder per emotion (FER2013 layout).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to write face.keras/face.json into.")],
    backbone: Annotated[str, typer.Option(help="emo-cnn (default, trained end to end) or mini-xception:PATH "
                                               "(frozen backbone + retrained FC 512-256 head).")] = "emo-cnn",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 30,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per training step.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (cosine decay after 1 warm-up epoch).")] = 1e-3,
    holdout: Annotated[float, typer.Option(min=0.01, max=0.5, help="Share of the training data held out to pick the best epoch.")] = 0.1,
    width: Annotated[int, typer.Option(min=4, help="emo-cnn: filters in the first block (doubles per block).")] = 32,
    seed: Annotated[int, typer.Option(help="Random seed (split, init, augmentation).")] = 0,
    limit: Annotated[Optional[int], typer.Option(help="Use at most this many training images (quick runs).")] = None,
) -> None:
    """Train the face-expression network on folder-per-class face images."""
    from .training import train_video_command

    try:
        train_video_command(data=data, out=out, backbone=backbone, epochs=epochs, batch_size=batch_size,
                            lr=lr, holdout=holdout, width=width, seed=seed, limit=limit, console=_stderr())
    except _emo_errors() as exc:
        raise fail(str(exc)) from None


def _emo_errors():
    from .errors import EmoError

    return EmoError


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # stdout closed early (`emo predict ... | head -1`): end quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
