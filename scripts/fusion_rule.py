"""Choose the decision-fusion rule on held-out unimodal data (synthetic pairs), then report it.

No corpus here pairs a face with a voice in numbers (six CREMA-D clips), so, as is usual for
fusion studies without paired data, each held-out face is paired with a random held-out
utterance *of the same emotion* by another person, and fused. Pairings are redrawn
``--repeats`` times; accuracy and UAR are averaged.

- choice: faces of the AffectNet/SFEW calib halves (scripts/face_experts.py; scored as predict
  scores them, from scripts/face_head.py's feature caches) x SAVEE speakers DC and JE (the voice
  model never heard SAVEE);
- report: faces of the AffectNet/SFEW test halves x the held-out RAVDESS actors 02, 03, 15, 16.

    emo predict - --json --modality voice < files.txt > runs/fusion/voice_scores.jsonl
    python scripts/fusion_rule.py runs/fusion/voice_scores.jsonl ../shared/data --bundle models/default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from emocli.bundle import read_json_document
from emocli.corpus.layouts import parse_name
from emocli.train.calibration import heldout_sets
from emocli.train.head import HeadArgs, bundle_face_scores, load_cached
from emocli.fusion import FusionModel
from emocli.labels import LABELS
from emocli.report.metrics import classification_report

CACHE = HeadArgs.cache  # emo train-head's feature cache


def voice_sets(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, list] = {"savee": [], "ravdess": []}
    for line in path.read_text().splitlines():
        d = json.loads(line)
        if d.get("status") != "ok" or "segment" in d:
            continue
        corpus = "savee" if "/savee/" in d["file"] else "ravdess"
        item = parse_name(Path(d["file"]), corpus)
        if item is None or item.label not in LABELS:
            continue
        out[corpus].append((LABELS.index(item.label), [d["voice_scores"][lab] for lab in LABELS]))
    return {k: (np.array([s for _, s in v]), np.array([y for y, _ in v])) for k, v in out.items()}


def pair(face_p, face_y, voice_p, voice_y, rng):
    """For each face, the scores of a random utterance of the same class (faces of classes the voice set lacks dropped)."""
    keep = np.isin(face_y, voice_y)
    idx = np.array([rng.choice(np.flatnonzero(voice_y == y)) for y in face_y[keep]])
    return face_p[keep], voice_p[idx], face_y[keep]


def evaluate(face_p, face_y, voice_p, voice_y, fusers, repeats: int, seed: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {}
    for _ in range(repeats):
        f, v, y = pair(face_p, face_y, voice_p, voice_y, rng)
        for name, fuse in fusers.items():
            r = classification_report(y, fuse(f, v).argmax(1), LABELS)
            rows.setdefault(name, []).append((r["accuracy"], r["uar"]))
    return {k: {"accuracy": float(np.mean([a for a, _ in v])), "uar": float(np.mean([u for _, u in v])),
                "n": int(len(face_y))} for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("voice_scores", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--cache", type=Path, default=CACHE, help="emo train-head's feature cache of --bundle's "
                                                          "face network")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    doc = read_json_document(args.bundle / "experts.json", fmt="emo-experts", what="face-expert settings",
                             missing="missing: run scripts/face_experts.py --write first", invalid="not JSON ({exc})")
    voice_meta = json.loads((args.bundle / "voice.json").read_text())
    face_recall = doc["info"]["validation_recall"]
    voice_recall = voice_meta["validation_recall"]
    sets = heldout_sets(args.data)
    face = {}
    for part in ("calib", "test"):
        names = [n for n in sets if n.endswith(f"-{part}")]
        p = np.concatenate([bundle_face_scores(load_cached(n, args.bundle, args.cache), args.bundle) for n in names])
        face[part] = (p, np.concatenate([sets[n][1] for n in names]))
    voice = voice_sets(args.voice_scores)
    fusers = {"face": lambda f, v: f, "voice": lambda f, v: v}
    for method in ("equal", "confusion"):
        for rule in ("sum", "product"):
            fm = FusionModel(method, rule=rule).fit(face_recall, voice_recall)
            fusers[f"{rule}/{method}"] = fm.fuse
    out = {}
    for title, part, corpus, seed in (("choice (calib faces x SAVEE)", "calib", "savee", 0),
                                      ("report (test faces x RAVDESS 02/03/15/16)", "test", "ravdess", 1)):
        if not len(voice[corpus][1]):  # e.g. a voice model trained on SAVEE: its scores there choose nothing
            print(f"{title}: no {corpus} voice scores in {args.voice_scores}; skipped", file=sys.stderr)
            continue
        out[title] = evaluate(*face[part], *voice[corpus], fusers, args.repeats, seed)
    for title, rows in out.items():
        print(title)
        for name, r in rows.items():
            print(f"  {name:18s} accuracy {r['accuracy']:.3f}  UAR {r['uar']:.3f}  (n={r['n']})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
