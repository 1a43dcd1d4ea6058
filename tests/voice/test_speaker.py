"""Speaker-adaptive voice scoring (emocli.voice.speaker): statistics, the trained pair of models, and
the commands that use them (train-audio --adapted-model, evaluate and predict --adapt, predict --speaker-of)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import write_wav
from emocli.cli.app import app
from emocli.voice.speaker import (MIN_CLIPS, RunningStats, SpeakerRule, SpeakerStats, normalise_groups,
                            speaker_stats)

SR = 16000
runner = CliRunner()


# -- statistics ------------------------------------------------------------------------------

def test_speaker_stats_normalise_and_floor_constant_features():
    x = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 0.0], [5.0, 5.0, 0.0]])
    st = SpeakerStats.of(x)
    z = st.normalise(x)
    assert st.n == 3
    np.testing.assert_allclose(z[:, 0], [-1.2247, 0.0, 1.2247], atol=1e-4)
    assert np.isfinite(z).all() and np.all(z[:, 1:] == 0.0)  # constant features do not explode
    with pytest.raises(ValueError, match="non-empty"):
        SpeakerStats.of(np.zeros((0, 3)))


def test_normalise_groups_removes_each_speakers_offset():
    """Two speakers with the same emotional pattern, one shifted and scaled: after normalisation
    their rows coincide."""
    base = np.array([[0.0], [1.0], [2.0], [3.0]])
    x = np.vstack([base, 10.0 + 3.0 * base])
    z = normalise_groups(x, ["a"] * 4 + ["b"] * 4)
    np.testing.assert_allclose(z[:4], z[4:])
    # statistics from a subset (real recordings), applied to every row of the group
    z2 = normalise_groups(np.vstack([base, [[100.0]]]), ["a"] * 5, basis=[True] * 4 + [False])
    np.testing.assert_allclose(z2[:4], z[:4])
    assert z2[4, 0] > 50


def test_speaker_stats_needs_min_clips():
    from types import SimpleNamespace

    def res(status="ok", vec=np.ones(3)):
        return SimpleNamespace(status=status, voice_vector=vec)

    pairs = ([("a", res())] * MIN_CLIPS + [("b", res())] * (MIN_CLIPS - 1)
             + [(None, res()), ("a", res("error")), ("a", res(vec=None))])
    counts, stats = speaker_stats(pairs)
    assert counts == {"a": MIN_CLIPS, "b": MIN_CLIPS - 1} and set(stats) == {"a"}


def test_running_stats_warm_up_and_follow_a_drifting_baseline():
    rs = RunningStats(warmup=10.0, half_life=20.0)
    assert not rs.ready
    rng = np.random.default_rng(0)
    for _ in range(4):
        rs.update(rng.normal(0.0, 1.0, 5), 2.0)
    assert not rs.ready and rs.seconds == 8.0
    rs.update(rng.normal(0.0, 1.0, 5), 2.0)
    assert rs.ready
    rs.update(np.full(5, np.nan), 2.0)  # a non-finite vector is ignored
    assert rs.seconds == 10.0
    for _ in range(200):  # the voice moves to a new baseline: the old one is forgotten
        rs.update(rng.normal(10.0, 1.0, 5), 2.0)
    st = rs.stats()
    assert np.all(np.abs(st.mean - 10.0) < 0.5) and np.all(np.abs(st.std - 1.0) < 0.4)
    with pytest.raises(ValueError):
        RunningStats().stats()


def test_speaker_rule_regex_groups_and_csv(tmp_path):
    assert SpeakerRule(r"(\d{4})_").speaker("clips/1001_DFA_ANG_XX.flv") == "1001"
    assert SpeakerRule(r"(?P<speaker>Actor_\d+)/(\d+)").speaker("x/Actor_07/03.wav") == "Actor_07"
    assert SpeakerRule(r"[A-Z]{2}_").speaker("DC_a01.wav") == "DC_"
    assert SpeakerRule(r"(\d{4})_").speaker("nobody.wav") is None
    with pytest.raises(ValueError, match="not a valid regular expression"):
        SpeakerRule("(unclosed")
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"")
    table = tmp_path / "who.csv"
    table.write_text("path,speaker\na.wav,alice\n/elsewhere/b.wav,bob\n,nobody\n")
    rule = SpeakerRule(str(table))
    assert rule.speaker(str(clip)) == "alice"  # relative to the CSV's folder
    assert rule.speaker("/elsewhere/b.wav") == "bob"
    assert rule.speaker("c.wav") is None


@pytest.mark.parametrize("content, match", [(None, "not found"), ("file,who\na,b\n", "path and speaker"),
                                            ("path,speaker\n", "no rows")])
def test_speaker_rule_bad_csv_names_the_file(tmp_path, content, match):
    from emocli.errors import DatasetError

    table = tmp_path / "who.csv"
    if content is not None:
        table.write_text(content)
    with pytest.raises(DatasetError, match=match) as exc:
        SpeakerRule(str(table))
    assert str(table) in str(exc.value)


# -- a corpus where only the speaker-relative pitch says the emotion ------------------------------

TRAIN_BASES = {"09": 100.0, "10": 130.0, "11": 170.0, "12": 220.0, "13": 290.0, "14": 380.0}
TEST_BASES = {"03": 110.0, "08": 330.0}  # near the ends of the training voices: absolute pitch misleads


def _voice(freq: float, amp: float, rng, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    return (amp * x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def _speakers_corpus(folder, bases, seed):
    """EmoDB-named clips: anger (W) at 1.45x the speaker's own pitch, sad (T) at 0.7x; each speaker
    also has a loudness of their own."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for spk, base in bases.items():
        amp = rng.uniform(0.1, 0.5)
        for code, ratio in (("W", 1.45), ("T", 0.7)):
            for take in "abc":
                f = base * ratio * rng.uniform(0.97, 1.03)
                write_wav(folder / f"{spk}a01{code}{take}.wav", _voice(f, amp * rng.uniform(0.9, 1.1), rng))
    return folder


@pytest.fixture(scope="module")
def speaker_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("speakers")
    corpus = _speakers_corpus(root / "emodb", {**TRAIN_BASES, **TEST_BASES}, seed=0)
    out = root / "bundle"
    r = runner.invoke(app, ["train-audio", str(corpus), "--out", str(out), "--test-speakers", "03,08",
                            "--feature-set", "thesis68", "--no-augment", "--repeats", "1", "--workers", "1",
                            "--adapted-model", "--cache", str(root / "cache"), "--no-vad"])  # voices are tones
    assert r.exit_code == 0, r.output
    return root, corpus, out


def test_train_audio_speaker_norm_keeps_both_models_and_removes_the_speaker_offset(speaker_bundle):
    _, _, out = speaker_bundle
    plain = json.loads((out / "voice.json").read_text())
    adapted = json.loads((out / "voice_speaker.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"voice.npz", "voice_speaker.npz", "voice_speaker.json"} <= set(manifest["files"])
    # the adapted model, read once per adapted run, is stored packed; the plain one, read for every clip, is not
    with np.load(out / "voice_speaker.npz") as sp, np.load(out / "voice.npz") as pl:
        assert "support_vector_planes" in sp.files and "support_vectors" in pl.files
    assert adapted["adaptation"]["kind"] == "speaker" and "adaptation" not in plain
    assert adapted["features"] == plain["features"]
    # held-out speakers 03 and 08: a low and a high voice
    assert adapted["test"]["accuracy"] == 1.0
    assert plain["test"]["accuracy"] <= 0.6


def test_train_audio_speaker_norm_keeps_a_matching_plain_model(speaker_bundle, tmp_path):
    """Adding the speaker-normalised model to a bundle whose plain model was trained on the same
    clips with the same selection keeps that model (it is not fitted again)."""
    root, corpus, out = speaker_bundle
    again = tmp_path / "bundle"
    shutil.copytree(out, again)
    before = (again / "voice.npz").read_bytes()
    args = ["train-audio", str(corpus), "--out", str(again), "--test-speakers", "03,08", "--feature-set",
            "thesis68", "--no-augment", "--repeats", "1", "--workers", "1", "--speaker-norm",
            "--cache", str(root / "cache")]  # the fixture's features: only the fitting is under test here
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "kept as it is" in r.output and (again / "voice.npz").read_bytes() == before
    args[args.index("--repeats") + 1] = "2"  # another selection: the plain model is fitted again
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "kept as it is" not in r.output and json.loads((again / "voice.json").read_text())["selection"]["repeats"] == 2
    # other gammas are another selection too: fitted again, not kept
    r = runner.invoke(app, [*args, "--gamma-grid", "0.25"])
    assert r.exit_code == 0, r.output
    assert "kept as it is" not in r.output
    assert json.loads((again / "voice.json").read_text())["selection"]["gamma_grid_x"] == [0.25]


def test_evaluate_speaker_norm_reports_adapted_and_plain_figures(speaker_bundle, tmp_path):
    _, corpus, out = speaker_bundle
    held = tmp_path / "emodb"
    held.mkdir()
    for f in corpus.glob("0[38]a01*.wav"):
        shutil.copy(f, held / f.name)
    r = runner.invoke(app, ["evaluate", str(held), "--model", str(out), "--adapt", "speaker", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["adaptation"] == "speaker"
    # the previous release's spelling gives the same report
    old = runner.invoke(app, ["evaluate", str(held), "--model", str(out), "--speaker-norm", "--json"])
    assert old.exit_code == 0 and json.loads(old.stdout)["voice"] == rep["voice"]
    assert rep["speaker_adaptation"]["n_adapted"] == 12
    assert rep["speaker_adaptation"]["speakers"] == {"emodb_03": 6, "emodb_08": 6}
    assert rep["voice"]["accuracy"] == 1.0 and rep["plain"]["voice"]["accuracy"] <= 0.6
    assert all(it["notes"] == [] or "voice only" not in it["notes"] for it in rep["items"])
    # without the flag: no adaptation, and the key says so
    r = runner.invoke(app, ["evaluate", str(held), "--model", str(out), "--json"])
    assert json.loads(r.stdout)["adaptation"] is None


def test_predict_speaker_of_two_passes_in_input_order(speaker_bundle, tmp_path):
    _, corpus, out = speaker_bundle
    files = sorted(str(f) for f in corpus.glob("0[38]a01*.wav"))
    lone = tmp_path / "77a01Wa.wav"
    shutil.copy(corpus / "03a01Wa.wav", lone)
    args = ["predict", *files, str(lone), "--model", str(out), "--json", "--speaker-of", r"(\d\d)a01\w\w\.wav$"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    lines = [json.loads(s) for s in r.stdout.splitlines()]
    assert [d["file"] for d in lines] == files + [str(lone)]
    for d in lines[:-1]:
        assert d["adaptation"] == "speaker" and d["speaker"] == d["file"][-11:-9]
        want = "anger" if d["file"][-6] == "W" else "sad"
        assert d["label"] == want and d["voice_scores"][want] > 0.5
    assert lines[-1]["adaptation"] is None and lines[-1]["speaker"] == "77"
    assert any(f"needs {MIN_CLIPS}" in n for n in lines[-1]["notes"])
    # without --speaker-of, the JSON lines carry no adaptation keys
    r = runner.invoke(app, ["predict", files[0], "--model", str(out), "--json"])
    assert "adaptation" not in json.loads(r.stdout)


def test_adapt_run_scores_each_voice_against_the_whole_run(speaker_bundle, tmp_path):
    """--adapt run: no speaker names, one baseline for every clip of the run. A run of one high voice
    (speaker 08, whose absolute pitch misleads the plain model) is read right; a run too short for a
    baseline keeps the plain model and says why."""
    _, corpus, out = speaker_bundle
    files = sorted(str(f) for f in corpus.glob("08a01*.wav"))
    assert len(files) == MIN_CLIPS
    r = runner.invoke(app, ["predict", *files, "--model", str(out), "--json", "--adapt", "run"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(s) for s in r.stdout.splitlines()]
    assert [d["file"] for d in lines] == files
    for d in lines:
        assert d["adaptation"] == "run" and d["speaker"] is None
        assert d["label"] == ("anger" if d["file"][-6] == "W" else "sad")
        assert any("the run's baseline (6 clips)" in n for n in d["notes"])
    plain = [json.loads(s) for s in runner.invoke(app, ["predict", *files, "--model", str(out), "--json"]
                                                  ).stdout.splitlines()]
    assert sum(d["label"] == ("anger" if d["file"][-6] == "W" else "sad") for d in plain) < len(files)
    r = runner.invoke(app, ["predict", *files[:2], "--model", str(out), "--json", "--adapt", "run"])
    short = [json.loads(s) for s in r.stdout.splitlines()]
    assert all(d["adaptation"] is None and any(f"run adaptation needs {MIN_CLIPS}" in n for n in d["notes"])
               for d in short)
    # evaluate: the same baseline, the plain figures beside the adapted ones
    held = tmp_path / "emodb"
    held.mkdir()
    for f in files:
        shutil.copy(f, held / Path(f).name)
    r = runner.invoke(app, ["evaluate", str(held), "--model", str(out), "--adapt", "run", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["adaptation"] == "run" and rep["run_adaptation"]["n_adapted"] == MIN_CLIPS
    assert rep["voice"]["accuracy"] == 1.0 > rep["plain"]["voice"]["accuracy"]


def test_adapt_modes_need_what_they_adapt_to(speaker_bundle):
    _, corpus, out = speaker_bundle
    clip = str(next(corpus.glob("*.wav")))
    r = runner.invoke(app, ["predict", clip, "--model", str(out), "--adapt", "speaker"])
    assert r.exit_code == 2 and "--adapt speaker needs --speaker-of" in r.output
    r = runner.invoke(app, ["predict", clip, "--model", str(out), "--adapt", "run", "--speaker-of", "(x)"])
    assert r.exit_code == 2 and "--speaker-of names the speakers of --adapt speaker" in r.output
    r = runner.invoke(app, ["evaluate", str(corpus), "--model", str(out), "--adapt", "stream"])
    assert r.exit_code == 2 and "'stream' is not one of" in r.output
    r = runner.invoke(app, ["evaluate", str(corpus), "--model", str(out), "--adapt", "run", "--modality", "face"])
    assert r.exit_code == 2


def test_speaker_options_refuse_bad_input_with_one_line(speaker_bundle, tiny_bundle, tmp_path):
    _, corpus, out = speaker_bundle
    clip = str(next(corpus.glob("*.wav")))
    r = runner.invoke(app, ["predict", clip, "--model", str(out), "--speaker-of", "(unclosed"])
    assert r.exit_code == 2 and "not a valid regular expression" in r.output
    r = runner.invoke(app, ["predict", clip, "--model", str(out), "--speaker-of", str(tmp_path / "who.csv")])
    assert r.exit_code == 1 and "who.csv: speaker table not found" in r.output
    r = runner.invoke(app, ["predict", clip, "--model", str(tiny_bundle), "--speaker-of", "(x)"])
    assert r.exit_code == 1 and "no speaker-normalised voice model" in r.output and "--adapted-model" in r.output
    r = runner.invoke(app, ["predict", clip, "--model", str(out), "--speaker-of", "(x)", "--modality", "face"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["evaluate", str(corpus), "--model", str(tiny_bundle), "--speaker-norm"])
    assert r.exit_code == 1 and "no speaker-normalised voice model" in r.output
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{clip},anger\n")
    r = runner.invoke(app, ["evaluate", str(manifest), "--model", str(out), "--speaker-norm"])
    assert r.exit_code == 1 and "no item names its speaker" in r.output
    r = runner.invoke(app, ["train-audio", "--features", str(tmp_path), "--out", str(tmp_path / "b"),
                            "--speaker-norm"])
    assert r.exit_code == 2 and "--adapted-model needs corpus folders" in r.output


def test_speaker_model_of_other_features_is_refused(speaker_bundle, tmp_path):
    from emocli.bundle import write_manifest
    from emocli.errors import ModelError
    from emocli.labels import LABELS
    from emocli.pipeline.core import Pipeline
    from emocli.pipeline.options import Options

    _, _, out = speaker_bundle
    bad = tmp_path / "bundle"
    shutil.copytree(out, bad)
    meta = json.loads((bad / "voice_speaker.json").read_text())
    meta["features"]["window_s"] = 0.04
    (bad / "voice_speaker.json").write_text(json.dumps(meta))
    write_manifest(bad, labels=list(LABELS))
    pipe = Pipeline(bad, Options())
    with pytest.raises(ModelError, match="other voice features"):
        pipe.voice.speaker_model


# -- running statistics: --window segments and live streams (predict --adapt) ------------------

def _alternating_voice(path, base: float, seconds: int, rng):
    """One speaker alternating anger (W, 1.45x their pitch) and sad (T, 0.7x), one emotion per second."""
    parts = [_voice(base * (1.45 if k % 2 == 0 else 0.7), 0.3, rng, seconds=1.0) for k in range(seconds)]
    return write_wav(path, np.concatenate(parts))


@pytest.mark.parametrize("live", [False, True])
def test_adapt_switches_windows_to_the_running_baseline_after_the_warm_up(speaker_bundle, tmp_path, monkeypatch,
                                                                          live):
    from emocli.voice import speaker

    _, _, out = speaker_bundle
    monkeypatch.setattr(speaker, "WARMUP_SECONDS", 2.5)
    wav = _alternating_voice(tmp_path / "03-call.wav", TEST_BASES["03"], 8, np.random.default_rng(5))
    args = ["predict", "-" if live else str(wav), "--model", str(out), "--json", "--window", "1", "--adapt"]
    r = runner.invoke(app, args, input=wav.read_bytes() if live else None)
    assert r.exit_code == 0, r.output
    lines = [json.loads(s) for s in r.stdout.splitlines()]
    segs = [d["segment"] for d in lines if "segment" in d]
    res = lines[-1]
    assert len(segs) == 8
    assert [s["adapted"] for s in segs] == [False, False] + [True] * 6
    want = ["anger" if k % 2 == 0 else "sad" for k in range(8)]
    assert [s["label"] for s in segs[2:]] == want[2:]  # the adapted windows follow this voice's own pitch
    assert any("6 of 8 voiced window(s)" in n for n in res["notes"])
    # a file's result, like a stream's, is the mean of its 10-s blocks' voice (here one 8-s block, adapted:
    # past the 2.5-s warm-up)
    assert res["adaptation"] == "speaker"
    # without --adapt, no window says anything about adaptation
    r = runner.invoke(app, args[:-1], input=wav.read_bytes() if live else None)
    assert all("adapted" not in json.loads(s).get("segment", {}) for s in r.stdout.splitlines())


def test_adapt_needs_a_speaker_model_and_the_voice(tiny_bundle, speaker_bundle, tmp_path):
    _, corpus, out = speaker_bundle
    clip = str(next(corpus.glob("*.wav")))
    r = runner.invoke(app, ["predict", clip, "--model", str(tiny_bundle), "--adapt", "--window", "1"])
    assert r.exit_code == 1 and "no speaker-normalised voice model for --adapt" in r.output
    r = runner.invoke(app, ["predict", clip, "--model", str(out), "--adapt", "--modality", "face"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["predict", clip, "--model", str(out), "--adapt", "--json"])
    assert r.exit_code == 0 and "under 20 s of voiced windows, none was adapted" in " ".join(
        json.loads(r.stdout)["notes"])


def test_train_audio_select_by_corpus_reports_the_left_out_table(tmp_path):
    """--select-by corpus: C and gamma chosen by leaving each corpus out in turn; voice.json keeps each
    left-out corpus's accuracy, UAR and largest prediction share."""
    root = _speakers_corpus(tmp_path / "clips", TRAIN_BASES, seed=1)
    clips = sorted(root.glob("*.wav"))
    manifests = []
    for k, part in enumerate((("09", "10", "11"), ("12", "13", "14"))):
        folder = tmp_path / f"corpus{'ab'[k]}"
        folder.mkdir()
        rows = [f"{c},{'anger' if c.name[5] == 'W' else 'sad'},{c.name[:2]}" for c in clips if c.name[:2] in part]
        (folder / "manifest.csv").write_text("path,label,speaker\n" + "\n".join(rows) + "\n")
        manifests.append(str(folder / "manifest.csv"))
    out = tmp_path / "bundle"
    base = ["train-audio", *manifests, "--out", str(out), "--feature-set", "thesis68", "--no-augment", "--workers", "1",
            "--c-grid", "1,10", "--gamma-grid", "0.5", "--no-vad"]
    r = runner.invoke(app, [*base, "--select-by", "corpus"])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "voice.json").read_text())
    assert meta["selection"]["by"] == "corpus" and meta["selection"]["C_grid"] == [1.0, 10.0]
    table = meta["validation"]["per_corpus"]
    assert set(table) == {"corpusa", "corpusb"} and all(t["n"] == 18 for t in table.values())
    assert all(0.0 <= t["accuracy"] <= 1.0 and t["top_share"] >= 0.5 for t in table.values())  # two emotions
    assert "left out corpusa: 18 clips" in r.output
    r = runner.invoke(app, [*base[:2], *base[3:], "--select-by", "corpus"])
    assert r.exit_code == 1 and "give two corpora or more" in r.output
    r = runner.invoke(app, [*base, "--c-grid", "3,x"])
    assert r.exit_code == 2 and "not a comma list of positive numbers" in r.output
