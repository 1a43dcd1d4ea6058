"""The ``emo`` application object, and how a run ends: one red line per error (exit 1), results
written before Ctrl-C (130) or SIGTERM (143) stop it, quiet when stdout is closed.

Exit codes: 0 success, 1 an input or model failed (one red line on stderr per failure),
2 bad usage, 130 interrupted. Only the ``cli`` package turns errors into exit codes; heavy
libraries are imported inside commands."""

from __future__ import annotations

import os
import sys
import threading


from typing import Annotated

import typer
from typer.core import TyperCommand

from emocli.errors import OutputError




os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ banner off stderr

app = typer.Typer(
    name="emo",
    help="Audio-visual emotion recognition: face + voice, fused, from the command line.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    # Plain help text: as Rich markup, "[default: ...]" vanished and 'emocli[ray]' became 'emocli'.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class EmoCommand(TyperCommand):
    """A command whose usage line and argument list read as Unix tools write them: ``emo predict
    [OPTIONS] INPUTS...`` and ``INPUTS...`` in the Arguments list (Typer 0.29 writes ``{inputs}...``
    and ``inputs... <list[str]>``). ``-o`` is listed only where it names a results file; as the short
    form of ``--out DIR`` (bundles, feature folders) it still works for one release, unlisted. Built on click's public ``collect_usage_pieces`` and
    ``format_options``."""

    # options that took no value in the previous release: (option, the value its bare form stands for,
    # the values it takes now); kept working for one release
    bare_options: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    # option names of the previous release, read for one release but not listed: old -> new name, or
    # old flag -> the option and value it stands for now
    aliases: dict[str, str | tuple[str, ...]] = {"--model": "--bundle", "-m": "--bundle", "--tta": "--views",
                                                 "--head": "--transfer"}

    def parse_args(self, ctx, args):
        """A bad choice reads "'both' is not one of 'main', 'all'." (Typer 0.29 passes pydantic's "Value
        error, " prefix through). The previous release's option names (:attr:`aliases`) are read as
        today's, and an option of :attr:`bare_options` given without a value gets its old meaning."""
        end = args.index("--") if "--" in args else len(args)  # after "--" every word is an argument
        args = [word for a in args[:end] for word in self._current_words(a)] + list(args[end:])
        end = args.index("--") if "--" in args else len(args)
        for name, value, values in self.bare_options:
            for i in reversed([i for i, a in enumerate(args[:end]) if a == name]):
                if i + 1 >= len(args) or args[i + 1] not in values:
                    args.insert(i + 1, value)
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as exc:
            if exc.message.startswith("Value error, "):
                exc.message = exc.message[len("Value error, "):]
            raise

    def _current_words(self, arg: str) -> list[str]:
        name, eq, value = arg.partition("=")
        new = self.aliases.get(name) if name.startswith("-") else None
        if new is None:
            return [arg]
        return [new + eq + value] if isinstance(new, str) else list(new)

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if p.param_type_name == "argument":
                pieces.append(_argument_name(p) if p.required else f"[{_argument_name(p)}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        args, opts = [], []
        for p in self.get_params(ctx):
            record = p.get_help_record(ctx)
            if record is None:
                continue
            if p.param_type_name == "argument":
                args.append((_argument_name(p), record[1]))
            elif "--out" in p.opts and "-o" in p.opts:  # -o is for result files; as --out DIR it stays, unlisted
                opts.append((record[0].replace("-o, ", "", 1), record[1]))
            else:
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(p) -> str:
    name = p.metavar or p.name.upper()
    return name + ("..." if p.nargs != 1 and not name.endswith("...") else "")


def _version(value: bool) -> None:
    if value:
        from emocli import __version__

        print(f"emo {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Audio-visual emotion recognition: face + voice, fused, from the command line."""


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)  # one error, one line, however long


def fail(message: str) -> "typer.Exit":
    """Print one red line on stderr and return the exit to raise (code 1)."""
    from rich.markup import escape

    from emocli.report.output import printable

    stderr_console().print(f"[red]error:[/red] {escape(printable(message))}")
    return typer.Exit(1)


def emo_errors():
    from emocli.errors import EmoError

    return EmoError


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM. A BaseException of our own so that Click does not turn it into "Aborted!" + exit 1."""


class _PipeClosed(BaseException):
    """stdout was closed by the reader (`emo predict ... | head -1`)."""


class _StdoutFailed(BaseException):
    """stdout cannot take the results (a full disk): one line on stderr, exit 1."""


class _StreamStop(threading.Event):
    """Set by Ctrl-C to end the live stream being read; ``live`` says whether one is being read now."""

    live = False


STREAM_STOP = _StreamStop()


_SIGNAL = {"received": None}  # the signal that stopped the run: SIGINT (Ctrl-C) or SIGTERM (kill, timeout, a scheduler)


def _on_signal(signum, frame):
    """Ctrl-C and SIGTERM stop a run the same way: what is finished is written (``-o`` renamed into
    place), a live stream first ends and writes its result; a second signal stops at once."""
    _SIGNAL["received"] = signum
    if STREAM_STOP.live and not STREAM_STOP.is_set():
        STREAM_STOP.set()  # the stream's segments and result are still written; a second Ctrl-C stops at once
        return
    raise Interrupted()


def broken_pipe() -> None:
    raise BrokenPipeError()


def emit(write, *args, **kwargs) -> None:
    """Write a result; a closed stdout ends the run quietly, a failing one with one line."""
    try:
        write(*args, **kwargs)
    except BrokenPipeError:
        raise _PipeClosed() from None
    except OutputError as exc:  # a results file of its own (--output-dir) that cannot be written: it names it
        raise _StdoutFailed(str(exc)) from None
    except OSError as exc:
        raise _StdoutFailed(f"cannot write the results to stdout ({exc.strerror or exc}); "
                            "free some disk space or send the output elsewhere") from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null: Python would fail again when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """emo's own warnings as one yellow line on stderr; any other as Python shows it."""
    from emocli.errors import EmoWarning

    if not issubclass(category, EmoWarning):
        return _python_show_warning(message, category, filename, lineno, file, line)
    from rich.markup import escape

    from emocli.report.output import printable

    stderr_console().print(f"[yellow]warning:[/yellow] {escape(printable(str(message)))}")


_python_show_warning = None


def main() -> None:
    """Console-script entry point: exit 130 on Ctrl-C and 143 on SIGTERM (finished results written), 0 quietly when stdout is closed."""
    import errno
    import signal
    import warnings

    global _python_show_warning
    _python_show_warning, warnings.showwarning = warnings.showwarning, _show_warning
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        app()
    except (Interrupted, KeyboardInterrupt):
        signum = _SIGNAL["received"] or signal.SIGINT
        stderr_console().print("[yellow]terminated[/yellow]" if signum == signal.SIGTERM else "[yellow]interrupted[/yellow]")
        sys.exit(128 + int(signum))
    except (_PipeClosed, BrokenPipeError):
        _silence_stdout()
        sys.exit(0)
    except _StdoutFailed as exc:
        _silence_stdout()
        fail(str(exc))
        sys.exit(1)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        _silence_stdout()
        fail(f"{exc.filename or 'output'}: {exc.strerror}; free some disk space and run again")
        sys.exit(1)
