"""emo's pool of worker processes (emocli/runners/pool.py)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from emocli.runners.pool import process_pool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _alive(pid: int) -> bool:
    """Running, not a zombie (a container's init may never reap an orphan that ended)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_workers_end_when_the_process_that_started_them_is_killed():
    """SIGKILL (or the OOM killer) gives the pool no chance to stop its workers: they notice that
    their parent is gone and end, instead of waiting for tasks for ever with a pipeline loaded."""
    code = ("import os, sys, time; from emocli.runners.pool import process_pool; "
            "pool = process_pool(2); [f.result() for f in [pool.submit(time.sleep, 0.3) for _ in range(4)]]; "
            "print(' '.join(str(p) for p in pool._processes), flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    workers: list[int] = []
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), "the workers outlived the process that started them"
    finally:
        proc.kill()
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_workers_run_tasks_and_stop_with_the_pool():
    with process_pool(1) as pool:
        pid = pool.submit(os.getpid).result()
    assert pid != os.getpid()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
