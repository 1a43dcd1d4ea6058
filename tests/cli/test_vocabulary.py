"""One vocabulary across commands: results go through --format and -o FILE (predict, evaluate), per-item work
takes --workers, bundles and feature folders go to --out DIR; evaluate writes what predict writes when piped."""

import csv
import io
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES
from emocli.cli.app import app

runner = CliRunner()


def _options(command: str) -> set[str]:
    text = runner.invoke(app, [command, "--help"], terminal_width=200).stdout
    return set(re.findall(r"(?<![\w-])(-{1,2}[a-z][\w-]*)", text.split("Options:", 1)[1]))


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_commands_that_write_results_share_their_output_options(command):
    assert {"--format", "-o", "--output", "--json", "--table", "--workers"} <= _options(command)


@pytest.mark.parametrize("command", ["extract", "train-video", "train-audio", "refresh-bn", "ensemble"])
def test_commands_that_write_folders_take_out(command):
    opts = _options(command)
    assert "--out" in opts and "-o" not in opts and "--format" not in opts and "--output" not in opts


@pytest.mark.parametrize("command", ["predict", "evaluate", "extract", "train-audio"])
def test_per_item_commands_take_workers(command):
    assert "--workers" in _options(command)


@pytest.fixture()
def corpus(tmp_path):
    return [str(EXAMPLES), "--layout", "cremad", "--modality", "voice"]


def test_evaluate_piped_is_json_and_takes_format_and_output(corpus, tmp_path):
    piped = runner.invoke(app, ["evaluate", *corpus])
    assert piped.exit_code == 0, piped.output
    rep = json.loads(piped.stdout)
    assert rep["n_items"] == 6 and "voice" in rep
    table = runner.invoke(app, ["evaluate", *corpus, "--table"])
    assert table.exit_code == 0 and "accuracy" in table.stdout and not table.stdout.lstrip().startswith("{")
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["evaluate", *corpus, "--format", "csv"]).stdout)))
    assert len(rows) == 6 and {r["true_label"] for r in rows} >= {"anger", "sad"}
    out = tmp_path / "items.csv"
    r = runner.invoke(app, ["evaluate", *corpus, "-o", str(out)])
    assert r.exit_code == 0 and r.stdout == "" and f"wrote {out}" in r.stderr
    assert [row["file"] for row in csv.DictReader(out.open())] == [row["file"] for row in rows]
    report = tmp_path / "report.json"
    assert runner.invoke(app, ["evaluate", *corpus, "-o", str(report)]).exit_code == 0
    assert json.loads(report.read_text())["n_items"] == 6


@pytest.mark.parametrize("args, message", [
    (["--format", "srt"], "'srt' is not one of"),
    (["--format", "table", "--json"], "contradicts"),
    (["--table", "-o", "x.json"], "a table is for the terminal"),
])
def test_evaluate_output_usage_errors(corpus, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["evaluate", *corpus, *args])
    assert r.exit_code == 2 and message in r.output and not any(tmp_path.iterdir())


def test_evaluate_output_never_replaces_an_input(corpus):
    clip = EXAMPLES / "1001_DFA_ANG_XX.avi"
    before = clip.read_bytes()
    r = runner.invoke(app, ["evaluate", *corpus, "-o", str(clip)])
    assert r.exit_code == 1 and "-o" in r.stderr and clip.read_bytes() == before


def test_o_for_a_folder_still_works_unlisted(tmp_path):
    """train-video's former -o (for --out DIR) is kept for one release: it still names the bundle folder."""
    r = runner.invoke(app, ["train-video", str(tmp_path / "no-faces"), "-o", str(tmp_path / "b")])
    assert r.exit_code in (1, 2) and "No such option" not in r.output and "Missing option" not in r.output


def test_a_bad_choice_names_the_choices_plainly():
    r = runner.invoke(app, ["predict", "x.avi", "--faces", "both"])
    assert r.exit_code == 2 and "'both' is not one of 'main', 'all'" in r.output and "Value error" not in r.output


@pytest.mark.parametrize("command", ["predict", "evaluate", "extract", "train-video", "train-audio", "fuse",
                                     "tune-views", "train-head", "tune-prior", "calibrate-experts", "ensemble",
                                     "refresh-bn", "info"])
def test_help_shows_no_python_types(command):
    text = runner.invoke(app, [command, "--help"], terminal_width=200).stdout
    assert "<list[" not in text and "<str>" not in text and not text.splitlines()[0].count("{")


def test_former_option_names_still_work_unlisted(tiny_bundle, tmp_path):
    """--model/-m (now --bundle) and --tta (now --views) are read for one release, and not listed."""
    from conftest import write_wav

    clip = tmp_path / "a.wav"
    write_wav(clip, (0.3 * np.sin(np.arange(16000) * 0.05)).astype(np.float32))
    outs = []
    for args in (["--bundle", str(tiny_bundle), "--views", "none"], ["--model", str(tiny_bundle), "--tta", "none"],
                 [f"--model={tiny_bundle}", "--tta=none"], ["-m", str(tiny_bundle), "--views=none"]):
        r = runner.invoke(app, ["predict", str(clip), "--json", *args])
        assert r.exit_code == 0, (args, r.output)
        outs.append({k: v for k, v in json.loads(r.stdout).items() if k != "seconds"})
    assert all(o == outs[0] for o in outs)
    text = runner.invoke(app, ["predict", "--help"]).output
    assert "--bundle" in text and "--views" in text
    assert not re.search(r"^\s+(--model|-m|--tta)\b", text, re.M)
