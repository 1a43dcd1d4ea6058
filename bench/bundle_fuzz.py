"""Every setting of a bundle's JSON members set to a wrong value, the manifest re-hashed: tracebacks.

For each scalar (and short list) up to two levels deep in voice.json, face.json, fusion.json,
experts.json, voice_speaker.json and manifest.json (records such as history, grid and training
items left out),
each of ``"x"``, ``null``, ``[]``, ``1e309`` and ``-1`` in turn; the bundle is loaded and one example
clip scored in process. An ``EmoError`` (one line in the CLI) is the expected outcome; anything else
is printed as a traceback case (issue 32, item 6). About 600 cases, 5 minutes on 2 cores::

    python bench/bundle_fuzz.py                 # every member
    python bench/bundle_fuzz.py voice.json      # one member
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from emocli.bundle import DEFAULT_BUNDLE, write_manifest
from emocli.errors import EmoError
from emocli.pipeline.core import Pipeline

MEMBERS = ("voice.json", "face.json", "fusion.json", "experts.json", "voice_speaker.json", "manifest.json")
RECORDS = {"history", "info", "versions", "selection", "grid", "validation", "test", "trained_on", "skipped_files",
           "validation_recall", "trained_items"}
BAD = ("x", None, [], float("inf"), -1)
CLIP = Path(__file__).resolve().parents[1] / "examples" / "1001_DFA_HAP_XX.avi"


def leaves(d, path=()):
    """Paths to the settings worth breaking: scalars and short lists, two levels deep."""
    if isinstance(d, dict):
        for k, v in d.items():
            if k not in RECORDS and len(path) < 2:
                yield from leaves(v, path + (k,))
    elif isinstance(d, (int, float, str, bool)) or d is None or (isinstance(d, list) and len(d) <= 10):
        yield path


def main() -> None:
    members = sys.argv[1:] or MEMBERS
    labels = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())["labels"]
    n = tracebacks = 0
    with tempfile.TemporaryDirectory(prefix="emo-fuzz-") as tmp:
        base = Path(tmp) / "bundle"
        shutil.copytree(DEFAULT_BUNDLE, base)
        for member in members:
            text = (base / member).read_text()
            for path in list(leaves(json.loads(text))):
                for bad in BAD:
                    d = json.loads(text)
                    node = d
                    for k in path[:-1]:
                        node = node[k]
                    node[path[-1]] = bad
                    if member != "manifest.json":  # the manifest itself is edited after it is written
                        (base / member).write_text(json.dumps(d).replace("Infinity", "1e309"))
                        write_manifest(base, labels=labels)
                    else:
                        (base / member).write_text(json.dumps(d).replace("Infinity", "1e309"))
                    n += 1
                    try:
                        Pipeline(base).run(CLIP)
                    except EmoError:
                        pass
                    except Exception as exc:  # noqa: BLE001 - what this script looks for
                        tracebacks += 1
                        print(f"{member} {'/'.join(map(str, path))} = {bad!r}: {type(exc).__name__}: {exc}"[:240],
                              flush=True)
            (base / member).write_text(text)
            write_manifest(base, labels=labels)
    print(f"cases {n} / tracebacks {tracebacks}")


if __name__ == "__main__":
    main()
