"""Running speaker statistics on a stream of one person: does adapting after the warm-up help?

Each held-out speaker's clips (RAVDESS actors 02, 03, 15, 16 and EmoDB speakers 03, 08: never
seen by the shipped voice models) are played as one stream, in 5 random orders: before each clip
is scored, its vector joins the stream's running statistics (emocli.voice.speaker.RunningStats,
weighted by its seconds); once WARMUP_SECONDS are in, the clip is scored with the bundle's
speaker-normalised model against those statistics, else with the plain model. Nothing here is
chosen on these speakers: the warm-up and half-life are the package's defaults.

    python scripts/stream_adapt_eval.py --cache runs/voice_encoder [--bundle models/default]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from voice_encoder_eval import HELD_OUT, extract, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    from emocli.voice.model import VoiceModel
    from emocli.bundle import DEFAULT_BUNDLE
    from emocli.voice.speaker import MODEL_NAME, WARMUP_SECONDS, RunningStats

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "voice_encoder")
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    ap.add_argument("--orders", type=int, default=5)
    args = ap.parse_args()
    plain = VoiceModel.load(args.bundle, runtime=True)
    adapted = VoiceModel.load(args.bundle, runtime=True, name=MODEL_NAME)
    items, X, secs = extract(args.data, args.cache, 1)
    x = np.hstack([X["whisper"], X["rich"]])
    y = np.array([it.label for it in items])
    g = np.array([it.speaker for it in items])
    rng = np.random.default_rng(0)
    rows = {"plain, every clip": ([], []), "stream, every clip": ([], []),
            "plain, after warm-up": ([], []), "stream, after warm-up": ([], [])}
    for spk in HELD_OUT:
        idx = np.flatnonzero(g == spk)
        p_plain = plain.predict(x[idx])
        for _ in range(args.orders):
            order = rng.permutation(len(idx))
            rs = RunningStats()
            for k in order:
                rs.update(x[idx[k]], float(secs[idx[k], 0]))
                lab = (adapted.predict(rs.stats().normalise(x[idx[k]])[None])[0] if rs.ready else p_plain[k])
                for name, pred in (("plain, every clip", p_plain[k]), ("stream, every clip", lab)):
                    rows[name][0].append(y[idx[k]])
                    rows[name][1].append(pred)
                if rs.ready:
                    for name, pred in (("plain, after warm-up", p_plain[k]), ("stream, after warm-up", lab)):
                        rows[name][0].append(y[idx[k]])
                        rows[name][1].append(pred)
    # per corpus, each held-out speaker normalised by all of their clips (as `evaluate --speaker-norm`)
    from emocli.voice.speaker import SpeakerStats

    for corpus in ("ravdess", "emodb"):
        spk = [h for h in HELD_OUT if h.startswith(corpus)]
        idx = np.flatnonzero(np.isin(g, spk))
        z = np.vstack([SpeakerStats.of(x[g == h]).normalise(x[g == h]) for h in spk])
        order = np.concatenate([np.flatnonzero(g == h) for h in spk])
        rows[f"{corpus} {'/'.join(h.split('_')[1] for h in spk)}, plain"] = (list(y[idx]), list(plain.predict(x[idx])))
        rows[f"{corpus} {'/'.join(h.split('_')[1] for h in spk)}, per speaker"] = (list(y[order]),
                                                                                 list(adapted.predict(z)))
    out = {}
    labels = plain.labels
    for name, (t, p) in rows.items():
        sc = report(np.array(t), np.array(p), labels)
        out[name] = {"n": sc["n"], "accuracy": sc["accuracy"], "uar": sc["uar"], "recall": sc["recall"],
                     "confusion": sc["confusion"]}
        print(f"{name:<32} accuracy {sc['accuracy']:.3f}  UAR {sc['uar']:.3f}  (n {sc['n']})")
    print(f"(held-out speakers {', '.join(HELD_OUT)}, {args.orders} random orders each, warm-up "
          f"{WARMUP_SECONDS:g} s; bundle {args.bundle})")
    (args.cache / "stream_adapt.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
