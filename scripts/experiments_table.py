"""Collect the reports written by examples/experiments.sh into one Markdown table.

    python scripts/experiments_table.py [OUT]        (default OUT=runs/experiments)

Reads every ``voice_*/voice.json`` (train-audio's held-out test scores) and every
``*.json`` report of ``emo evaluate`` in OUT, and prints a Markdown table per kind: the
figures come from the files, nothing is typed in by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from emocli.labels import LABELS


def _fmt(x) -> str:
    return "" if x is None else f"{x:.3f}"


def voice_rows(out: Path) -> list[str]:
    rows = ["| run | features | training corpora | classes balanced | test speakers (held out) | n | accuracy | UAR | "
            + " | ".join(LABELS) + " |",
            "|---|---|---|---|---|---:|---:|---:|" + "---:|" * len(LABELS)]
    for meta_path in sorted(out.glob("voice_*/voice.json")):
        meta = json.loads(meta_path.read_text())
        test = meta.get("test") or {}
        recall = test.get("recall") or {}
        corpora = sorted(set((meta.get("trained_on") or {}).get("corpora", {}).values()))
        rows.append(f"| {meta_path.parent.name} | {meta['features']['feature_set']} | {' + '.join(corpora)} | "
                    f"{'yes' if meta['svm'].get('class_weight') == 'balanced' else 'no'} | "
                    f"{', '.join(meta.get('held_out_speakers', []))} | {test.get('n', '')} | "
                    f"{_fmt(test.get('accuracy'))} | {_fmt(test.get('uar'))} | "
                    + " | ".join(_fmt(recall.get(lab)) for lab in LABELS) + " |")
    return rows


def evaluate_rows(out: Path) -> list[str]:
    rows = ["| report | modality | n | failed | accuracy | UAR | macro-F1 |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for path in sorted(out.glob("*.json")):
        try:
            rep = json.loads(path.read_text())
        except ValueError:
            continue
        if not isinstance(rep, dict):
            continue
        for mod in ("face", "voice", "fused"):
            m = rep.get(mod)
            if not isinstance(m, dict) or not m.get("n"):
                continue
            failed = rep.get("failed")
            n_failed = len(failed) if isinstance(failed, list) else (failed or 0)
            rows.append(f"| {path.stem} | {mod} | {m['n']} | {n_failed} | {_fmt(m.get('accuracy'))} | "
                        f"{_fmt(m.get('uar'))} | {_fmt(m.get('macro_f1'))} |")
    return rows


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "runs/experiments")
    if not out.is_dir():
        print(f"{out}: no such folder; run examples/experiments.sh first", file=sys.stderr)
        return 1
    print("### Voice (held-out speakers)\n")
    print("\n".join(voice_rows(out)))
    print("\n### emo evaluate reports\n")
    print("\n".join(evaluate_rows(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
