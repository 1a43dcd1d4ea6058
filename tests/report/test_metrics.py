"""Sinks: an emotion that takes most of a modality's predictions (emocli/report/metrics.py; issue 30)."""

import json

import numpy as np
from rich.console import Console
from typer.testing import CliRunner

from conftest import EXAMPLES
from emocli.cli.app import app
from emocli.labels import LABELS
from emocli.report import metrics
from emocli.report.metrics import classification_report, is_sink, largest_prediction, run_sink
from emocli.runners.evaluate import metrics_table


def _report(truth, pred):
    return classification_report([LABELS.index(t) for t in truth], [LABELS.index(p) for p in pred], LABELS, absent=None)


def test_the_most_predicted_emotion_is_a_sink_only_far_above_its_share_of_the_truth():
    truth = [lab for lab in LABELS for _ in range(10)]  # 70 items, 10 of each
    crowded = _report(truth, ["anger"] * 40 + truth[40:])  # the first four classes all called anger
    assert largest_prediction(crowded) == {"label": "anger", "share": 40 / 70, "true_share": 10 / 70}
    assert is_sink(largest_prediction(crowded))
    assert not is_sink(largest_prediction(_report(truth, truth)))  # right everywhere: 1/7 each
    # a corpus that is mostly anger, called mostly anger: no sink
    mostly = ["anger"] * 50 + ["sad"] * 10
    assert not is_sink(largest_prediction(_report(mostly, mostly)))
    assert largest_prediction(classification_report([], [], LABELS)) is None and not is_sink(None)


def test_a_run_sink_needs_enough_voices_and_more_than_half_of_them():
    assert run_sink(["anger"] * 19) is None  # too few to tell
    assert run_sink(["anger"] * 11 + ["sad"] * 9) == ("anger", 11, 20)
    assert run_sink(["anger"] * 10 + ["sad"] * 10) is None
    assert run_sink(["neutral"] * 12 + list(LABELS) * 2) == ("neutral", 14, 26)
    assert run_sink(["neutral"] * 8 + list(LABELS) * 2) is None  # 10 of 22


def test_evaluate_tables_name_the_most_predicted_emotion_and_a_voice_sink():
    truth = [lab for lab in LABELS for _ in range(5)]
    rep = {"labels": list(LABELS), "n_items": 35, "n_failed": 0, "voice": _report(truth, ["fear"] * 35),
           "fused": _report(truth, truth)}
    for hint in (True, False):
        console = Console(record=True, width=200)
        metrics_table(rep, title="t", console=console, adapt_hint=hint)
        text = console.export_text()
        assert "most predicted" in text and "fear 1.00" in text and "anger 0.14" in text
        assert "voice: 100% of its predictions are fear, which is 14% of the truth" in text
        assert ("--adapt run" in text) is hint
        assert "fused:" not in text


def test_predict_notes_a_run_whose_voices_crowd_into_one_emotion(monkeypatch):
    """A run of voiced inputs most of which the plain voice model calls one emotion gets a note on stderr
    (the bar lowered to two inputs here); --adapt run, and a run that spreads, get none."""
    runner = CliRunner()
    clip = str(EXAMPLES / "1001_DFA_ANG_XX.avi")
    r = runner.invoke(app, ["predict", clip, clip, "--modality", "voice", "--json"])
    assert r.exit_code == 0, r.output
    voice = [json.loads(line)["voice_scores"] for line in r.stdout.splitlines()]
    label = max(voice[0], key=voice[0].get)
    assert "note:" not in r.stderr  # two inputs are fewer than RUN_SINK_MIN
    monkeypatch.setattr(metrics, "RUN_SINK_MIN", 2)
    r = runner.invoke(app, ["predict", clip, clip, "--modality", "voice", "--json"])
    assert r.exit_code == 0 and [json.loads(line)["voice_scores"] for line in r.stdout.splitlines()] == voice
    err = " ".join(r.stderr.split())
    assert f"the voice called 2 of 2 voiced inputs {label} (100%)" in err and "--adapt run" in err
    other = str(EXAMPLES / "1001_DFA_NEU_XX.avi")
    r = runner.invoke(app, ["predict", clip, other, "--modality", "voice", "--json"])
    labels = {max(s, key=s.get) for s in (json.loads(line)["voice_scores"] for line in r.stdout.splitlines())}
    assert r.exit_code == 0 and len(labels) == 2 and "note:" not in r.stderr
    assert np.all(np.isfinite([v for s in voice for v in s.values()]))
