"""Bulk runs: many inputs through one loaded model, optionally with worker processes.

With ``workers > 1`` decoding, face detection and voice features run in spawned worker
processes (:meth:`Pipeline.prepare`); the main process holds the one face network and
scores every clip's faces in batches (:meth:`Pipeline.complete`). Results come out in input
order, each as soon as it and those before it are done, so ``emo predict ... | head`` works.
At most ``2 x workers`` inputs are in flight, so memory stays bounded on long input lists.

:func:`process_pool` is emo's one pool of worker processes: bulk prediction, ``emo extract``
and ``emo train-audio``'s feature extraction all start theirs here.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from emocli import quiet_imports
from emocli.errors import VersionWarning
from emocli.media.live import LiveSource
from emocli.pipeline.core import Pipeline
from emocli.pipeline.options import Options, Result
from emocli.quiet_imports import available_cpus

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

_WORKER: Pipeline | None = None  # in a worker process: the pipeline its initializer loaded
_LIMITS = None  # in a worker process: its thread-pool limits, kept for the process's life


PARENT_POLL_S = 0.5  # seconds: how often a worker checks that the process that started it is alive


def _exit_with_parent() -> None:
    """End this worker when the process that started it is gone. Killed by SIGKILL or the OOM
    killer, an `emo` process cannot stop its pool, and its workers (each holding a loaded pipeline,
    about 120 MB) would wait for tasks for ever; a worker's parent changes when its own ends."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="emo-exit-with-parent", daemon=True).start()


def _init_worker(bundle: str | None, options: Options | None, role: str) -> None:
    import warnings

    global _WORKER, _LIMITS
    _exit_with_parent()
    quiet_imports.WORKER_PROCESS = True
    warnings.simplefilter("ignore", VersionWarning)  # the main process loaded the bundle and said so once
    # one thread per worker: N workers each running BLAS, OpenCV and LiteRT on every core fight for them
    # (208 RAVDESS clips through `evaluate --workers 2` took 2.3x the time of one process before this)
    try:
        import cv2
        from threadpoolctl import threadpool_limits

        _LIMITS = threadpool_limits(limits=1)
        cv2.setNumThreads(1)
    except ImportError:
        pass
    if bundle is not None:
        _WORKER = Pipeline(Path(bundle), options, role=role)


def _one_blas_thread():
    """numpy's BLAS on one thread for the block (a no-op context without threadpoolctl)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def worker_pipeline() -> Pipeline:
    """The pipeline of this worker process (started by :func:`process_pool` with a bundle)."""
    if _WORKER is None:
        raise RuntimeError("not in a worker process started by process_pool(..., bundle=...)")
    return _WORKER


def process_pool(workers: int, *, bundle: "Path | str | None" = None, options: Options | None = None,
                 role: str = "full") -> "ProcessPoolExecutor":
    """A pool of ``workers`` spawned processes, each limited to one thread; with ``bundle``, each
    first loads ``Pipeline(bundle, options, role=role)`` (see :func:`worker_pipeline`).

    Processes are spawned, never forked: TensorFlow and ffmpeg pipes are not fork-safe.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(None if bundle is None else str(bundle), options, role))


def _prepare(args):
    path, display, spool = args
    return worker_pipeline().prepare(path, display_name=display, spool=Path(spool))


AUTO_WORKERS_FROM = 4  # inputs: from this many on, `--workers` defaults to one process per CPU


def auto_workers(n_inputs: int | None) -> int:
    """``--workers``'s default: one worker process per CPU for a run of :data:`AUTO_WORKERS_FROM` or
    more inputs, else 1 (spawning a worker costs about a second, more than a clip or two takes).

    An unknown number (paths on stdin, streams) gets 1: with workers, the next inputs are read
    before a result is written, and a list typed or fed slowly on stdin would wait for them.
    """
    cpus = available_cpus()
    return cpus if cpus > 1 and n_inputs is not None and n_inputs >= AUTO_WORKERS_FROM else 1


def worker_count(workers: int | None, n_inputs: int | None) -> int:
    """The worker processes a run uses: ``workers`` capped at the CPU count (more only adds memory
    and contention), or :func:`auto_workers` when it is None."""

    if workers is None:
        return auto_workers(n_inputs)
    return max(1, min(workers, available_cpus()))


def run_bulk(pipe: Pipeline, inputs: Iterable[tuple[str, "Path | LiveSource | None", str | None]], *,
             workers: int = 1, on_segment: Callable[[str, dict], None] | None = None,
             on_frame: Callable[[str, dict], None] | None = None,
             stop: threading.Event | None = None,
             on_progress: Callable[[str, str, float, float | None], None] | None = None) -> Iterator[Result]:
    """Yield one :class:`Result` per input, in order.

    Live inputs (pipes, URLs, devices) are read in this process, one pass each; their
    segments go to ``on_segment(name, segment)`` as each window closes (``--frames``: each scored
    frame to ``on_frame(name, frame)`` before its segment), and ``stop`` (an Event
    whose ``live`` attribute this sets while a stream is read, for a Ctrl-C handler) ends them.
    Files read in this process report their passes to ``on_progress(name, what, done, total)``
    (see :meth:`Pipeline.run`).
    """
    hooks = _Hooks(on_segment, on_frame, on_progress, stop)
    if workers <= 1:
        yield from _run_serial(pipe, inputs, hooks)
    else:
        yield from _run_pooled(pipe, inputs, hooks, workers)


@dataclass(frozen=True)
class _Hooks:
    """run_bulk's callbacks and its stop event (see :func:`run_bulk`)."""
    on_segment: Callable[[str, dict], None] | None
    on_frame: Callable[[str, dict], None] | None
    on_progress: Callable[[str, str, float, float | None], None] | None
    stop: threading.Event | None

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def live(self, pipe: Pipeline, display: str, src: LiveSource) -> Result:
        """A live input read in this process, one pass."""
        if self.stop is not None:
            self.stop.live = True
        on_segment, on_frame = self.on_segment, self.on_frame
        try:
            return pipe.run_stream(src, stop=self.stop,
                                   on_segment=None if on_segment is None else lambda seg: on_segment(display, seg),
                                   on_frame=None if on_frame is None else lambda f: on_frame(display, f))
        finally:
            if self.stop is not None:
                self.stop.live = False


def _run_serial(pipe: Pipeline, inputs, hooks: _Hooks) -> Iterator[Result]:
    """Every input scored in this process, in order."""
    on_progress = hooks.on_progress
    for display, path, problem in inputs:
        if problem:
            res = Result(file=display, status="error", error=problem)
        elif isinstance(path, LiveSource):
            res = hooks.live(pipe, display, path)
        else:
            res = pipe.run(path, display_name=display, progress=None if on_progress is None else
                           lambda what, done, total, d=display: on_progress(d, what, done, total))
        yield res
        if hooks.stopped():
            return


def _run_pooled(pipe: Pipeline, inputs, hooks: _Hooks, workers: int) -> Iterator[Result]:
    """Files prepared by ``workers`` processes (2 per worker in flight) and completed here, in order;
    live inputs read here."""
    import contextlib
    import tempfile

    with contextlib.ExitStack() as stack:
        pool, spool = None, None
        # this process scores what the workers prepare (the voice SVM, the face networks' batches): with
        # its numpy on one thread, BLAS threads spinning between its small products leave the cores to
        # the workers (208 speech clips, --workers 2: this process's CPU 9.9 s -> see docs/benchmarks.md)
        stack.enter_context(_one_blas_thread())

        def start_pool():
            # started at the first file: a run of live streams alone never spawns workers
            nonlocal pool, spool
            # the workers' face spool (emocli.pipeline.faces.FaceChunks): removed when the pool is done, interrupted or not
            spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="emo-faces-"))
            pool = stack.enter_context(process_pool(workers, bundle=pipe.bundle, options=pipe.options,
                                                    role="prepare"))

        queue: deque = deque()
        source = iter(inputs)

        def submit_next() -> bool:
            try:
                display, path, problem = next(source)
            except StopIteration:
                return False
            fut = None
            if not problem and not isinstance(path, LiveSource):
                if pool is None:
                    start_pool()
                fut = pool.submit(_prepare, (path, display, spool))
            queue.append((display, path, problem, fut))
            return True

        for _ in range(2 * workers):
            if not submit_next():
                break
        while queue:
            display, path, problem, fut = queue.popleft()
            if problem:
                res = Result(file=display, status="error", error=problem)
            elif isinstance(path, LiveSource):
                res = hooks.live(pipe, display, path)
            else:
                res = pipe.complete(fut.result())
            yield res
            if hooks.stopped():
                return
            submit_next()  # after the result is out: the next input may still be on its way (paths on stdin)
