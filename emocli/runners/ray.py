"""Scale-out on Ray: bulk ``predict`` and ``extract`` on a local Ray instance or a cluster.

Work goes to a pool of Ray actors, one per CPU (one CPU each); every actor loads its own
:class:`~emocli.pipeline.core.Pipeline` once and then runs clip after clip (or shard after shard),
so models are loaded once per worker, never per clip. Each actor has at most
``QUEUE_PER_ACTOR`` calls queued, so a free actor always has the next clip waiting, and at most
``WINDOW_PER_ACTOR x actors`` inputs are in flight, so memory stays bounded on long input
lists. Results are gathered in input order, in the same formats as the local path: predict
yields the same :class:`~emocli.pipeline.core.Result` objects as :func:`emocli.runners.pool.run_bulk`;
extract writes the same ``items/*.npz`` and ``index.csv`` through
:func:`emocli.runners.extract.process_item` and :func:`emocli.runners.extract.write_index`.

Workers open the input files, the model bundle and (for extract) the output folder
themselves, so every path must be readable (and the output folder writable) from every node:
on a cluster that means a shared filesystem mounted at the same path everywhere, and emo
installed in the same environment on every node. Actors change into the driver's working
directory when it exists on their node, so relative paths behave as they do locally.

Ray is an optional extra (``pip install 'emocli[ray]'``) and is imported only here, inside the
functions that need it.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from emocli.bundle import DEFAULT_BUNDLE
from emocli.errors import EmoError
from emocli.pipeline.core import Pipeline
from emocli.pipeline.options import Options, Result
from emocli.runners.extract import plan, process_item, summary, write_index

QUEUE_PER_ACTOR = 2  # calls queued on one actor: the next clip is already there when one finishes
WINDOW_PER_ACTOR = 4  # inputs in flight (running, queued or finished but not yet yielded) per actor


def _import_ray():
    try:
        import ray
    except ImportError:
        raise EmoError("Ray is not installed; install the extra: pip install 'emocli[ray]'") from None
    return ray


class _Worker:
    """One Ray actor: a Pipeline loaded once, then run on clip after clip."""
    def __init__(self, bundle: str, options: Options, cwd: str):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # An actor reserves one CPU and no GPU; Ray leaves the GPUs visible then, and every actor's
        # TensorFlow would take most of a GPU's memory. Hide them (before TensorFlow is imported).
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        if os.path.isdir(cwd):  # relative input paths mean what they mean on the driver
            os.chdir(cwd)

        # A bad bundle is an expected failure: keep it and raise it from each call, where Ray
        # hands it to the driver as itself (an error in __init__ only arrives as text).
        self.pipe, self.error = None, None
        try:
            self.pipe = Pipeline(Path(bundle), options)
        except EmoError as exc:
            import socket

            self.error = type(exc)(f"{exc} (on Ray worker {socket.gethostname()}: every node must see the same "
                                   "paths, e.g. on a shared filesystem)")

    def ready(self) -> None:
        if self.error is not None:
            raise self.error

    def predict(self, shard: list[tuple[str, Path]]) -> list[Result]:
        if self.error is not None:
            raise self.error
        return [self.pipe.run(path, display_name=display) for display, path in shard]

    def extract(self, job: tuple[Any, str, str]) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        item, iid, out = job
        return process_item(item, iid, Path(out), self.pipe)


@dataclass(frozen=True)
class RayCluster:
    """Where a Ray run goes: ``address`` of a running cluster ("auto", "ray://host:10001"; None starts a
    local instance with ``num_cpus`` CPUs, default all), and at most ``max_actors`` pipeline actors
    (default: one per CPU the cluster has)."""
    address: str | None = None
    num_cpus: int | None = None
    max_actors: int | None = None


class _Cluster:
    """Connect to Ray (or start a local instance) and hand out pipeline actors lazily."""
    def __init__(self, bundle: Path | str | None, options: Options, spec: RayCluster, *, n_jobs: int | None = None):
        address, num_cpus, max_actors = spec.address, spec.num_cpus, spec.max_actors

        ray = self.ray = _import_ray()
        self.started = False
        if not ray.is_initialized():
            # Ray reports usage statistics unless told not to; a CLI should not phone home by default.
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if address is None:
                try:
                    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                             logging_level=logging.ERROR)
                except Exception as exc:  # Ray raises a bare Exception when its processes start too slowly
                    raise EmoError(f"could not start a local Ray instance: {exc} (an overloaded machine can cause "
                                   "this: retry, or start one with `ray start --head` and pass --ray-address "
                                   "auto)") from None
            else:
                try:
                    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    reason = str(exc).rstrip(".")
                    raise EmoError(f"cannot join the Ray cluster at {address}: {reason}; start one with "
                                   "`ray start --head` or check --ray-address") from None
            self.started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.max_actors = max(1, min(max_actors or cpus, n_jobs or cpus))
        self.remote_cls = ray.remote(num_cpus=1)(_Worker)
        self.args = (str(Path(bundle or DEFAULT_BUNDLE).resolve()), options, os.getcwd())
        self.actors: list = []

    def new_actor(self):
        actor = self.remote_cls.remote(*self.args)
        self.actors.append(actor)
        return actor

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
        if self.started:
            self.ray.shutdown()
            self.started = False

    def ready(self) -> None:
        """Start the first actor and wait for its pipeline: a worker that cannot load the
        bundle (not on a shared filesystem, emo missing) fails here, before any work is sent."""
        if not self.actors:
            self.new_actor()
        _, err = self._get(self.actors[0].ready.remote())
        if err is not None:
            raise err

    def _get(self, ref) -> tuple[Any, EmoError | None]:
        """``ray.get``; an expected failure raised on a worker comes back as itself, not as Ray's wrapper."""
        try:
            return self.ray.get(ref), None
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, EmoError):
                return None, exc.cause
            raise

    def ordered(self, method: str, jobs: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, Any, EmoError | None]]:
        """Yield ``(tag, output, error)`` for each ``(tag, payload)``, in order.

        A ``None`` payload is not sent (output ``None``). The least-loaded actor gets the next
        payload; a new actor is started only when every actor is busy (up to ``max_actors``),
        so a short input list does not load models it never uses.
        """
        ray = self.ray
        source = iter(jobs)
        queue: deque = deque()  # (tag, ref) in input order
        owner: dict = {}  # unfinished ref -> index of its actor
        load = [0] * len(self.actors)  # unfinished calls per actor
        window = WINDOW_PER_ACTOR * self.max_actors
        held = None  # a job taken from the source while every actor was full
        exhausted = False

        def fill() -> None:
            nonlocal held, exhausted
            while not exhausted and len(queue) < window:
                if held is None:
                    try:
                        held = next(source)
                    except StopIteration:
                        exhausted = True
                        return
                tag, payload = held
                if payload is None:
                    queue.append((tag, None))
                    held = None
                    continue
                i = min(range(len(load)), key=load.__getitem__) if load else -1
                if (i < 0 or load[i] > 0) and len(self.actors) < self.max_actors:
                    self.new_actor()
                    load.append(0)
                    i = len(load) - 1
                if load[i] >= QUEUE_PER_ACTOR:
                    return
                ref = getattr(self.actors[i], method).remote(payload)
                owner[ref] = i
                load[i] += 1
                queue.append((tag, ref))
                held = None

        fill()
        while queue:
            tag, ref = queue[0]
            while ref is not None and ref in owner:
                # wait for the head of the line, refilling whichever actor finishes first meanwhile
                ready, _ = ray.wait(list(owner), num_returns=1)
                for r in ready:
                    load[owner.pop(r)] -= 1
                fill()
            queue.popleft()
            out, err = (None, None) if ref is None else self._get(ref)
            fill()
            yield tag, out, err


def ray_predict(pipe_bundle: Path | str | None, options: Options,
                inputs: Iterable[tuple[str, Path | None, str | None]], *, cluster: RayCluster = RayCluster(),
                shard_size: int = 1) -> Iterator[Result]:
    """Bulk predict on Ray: one :class:`Result` per input, in input order.

    The Ray counterpart of :func:`emocli.runners.pool.run_bulk`, with the same inputs (``(display
    name, path, problem)`` from :func:`emocli.media.inputs.expand_inputs`) and the same results.
    Ray is joined and the first worker's pipeline loaded before this returns, so setup
    failures raise here; the returned iterator releases the actors (and a local Ray instance
    it started) when it is exhausted or closed.

    Parameters
    ----------
    pipe_bundle
        Model bundle folder (``None``: the shipped default); read by every worker.
    options
        Pipeline options, as for a local run.
    inputs
        ``(display, path, problem)`` triples; a ``problem`` becomes an error result without
        being sent to a worker.
    cluster
        Where it runs (:class:`RayCluster`): no address starts a local Ray instance (or uses the
        one this process already joined); ``"auto"`` or ``"ray://host:10001"`` joins that cluster.
    shard_size
        Inputs per Ray call (1: one call per clip; larger shards cut scheduling overhead
        for many short clips).

    Raises
    ------
    EmoError
        Ray is not installed, the cluster cannot be reached, or the first worker cannot load
        the bundle. A worker that fails to load it later turns its inputs into error results.
    """
    if shard_size < 1:
        raise EmoError(f"shard_size must be at least 1, got {shard_size}")
    actors = _Cluster(pipe_bundle, options, cluster)
    try:
        actors.ready()
    except BaseException:
        actors.close()
        raise
    return _gather_predictions(actors, inputs, shard_size)


def _gather_predictions(cluster: _Cluster, inputs, shard_size: int) -> Iterator[Result]:
    def shards() -> Iterator[tuple[list, list | None]]:
        shard: list = []
        for entry in inputs:
            shard.append(entry)
            if len(shard) == shard_size:
                yield shard, [(d, p) for d, p, problem in shard if not problem] or None
                shard = []
        if shard:
            yield shard, [(d, p) for d, p, problem in shard if not problem] or None

    try:
        for shard, results, err in cluster.ordered("predict", shards()):
            done = iter(results or [])
            for display, path, problem in shard:
                if problem:
                    res = Result(file=display, status="error", error=problem)
                elif err is not None:
                    res = Result(file=display, status="error", error=str(err), error_type=type(err).__name__)
                else:
                    res = next(done)
                yield res
    finally:
        cluster.close()


def ray_extract(items, *, root: Path, out: Path, bundle: Path | str | None, options: Options,
                cluster: RayCluster = RayCluster(), retry_failed: bool = False,
                progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """``emo extract`` on Ray: the same files and the same summary as :func:`emocli.runners.extract.run_extraction`.

    One Ray call per unfinished item, on actors that each hold one loaded pipeline. ``out``
    must be writable from every worker (shared filesystem); files are written atomically by
    the workers, so a run killed at any moment is resumable locally or on Ray alike.
    ``cluster``: where it runs (:class:`RayCluster`).

    Raises
    ------
    EmoError
        Ray is not installed, the cluster cannot be reached, or a worker cannot load the bundle.
    """
    _import_ray()
    out = Path(out).resolve()  # not recorded in any file; workers may start elsewhere
    todo, skipped = plan(items, root=root, out=str(out), retry_failed=retry_failed)
    rows: list[dict[str, Any]] = []
    if todo:
        actors = _Cluster(bundle, options, cluster, n_jobs=len(todo))
        try:
            for _, row, err in actors.ordered("extract", ((None, job) for job in todo)):
                if err is not None:
                    raise err  # as locally: a pipeline that cannot load stops the run (finished items stay)
                rows.append(row)
                if progress:
                    progress(row)
        finally:
            actors.close()
    write_index(out)
    return summary(len(items), skipped, rows)
