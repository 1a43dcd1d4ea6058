"""Issue 13, reliability round 2: every input gets its line, every failure its one-line error."""

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from conftest import ffmpeg, make_clip
from emocli.cli import app

runner = CliRunner()


def predict(bundle, *args, input=None):
    r = runner.invoke(app, ["predict", *map(str, args), "--model", str(bundle), "--json"], input=input)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, [json.loads(x) for x in r.stdout.splitlines() if x.strip()], r


def test_non_utf8_file_name_is_read_and_printed_escaped(tiny_bundle, tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    clip = make_clip(folder / "z.avi", seconds=1.0)
    bad = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.avi")  # surrogate escape, as argv holds it
    shutil.copy(clip, bad)
    code, out, r = predict(tiny_bundle, folder)
    assert code == 0, r.output
    assert [o["status"] for o in out] == ["ok", "ok"]
    assert out[0]["file"].endswith("caf\\xe9.avi")
    r.stdout_bytes.decode("utf-8")  # valid UTF-8 throughout
    code, out, r = predict(tiny_bundle, bad, bad[:-4] + "-missing.avi")
    assert code == 1 and [o["status"] for o in out] == ["ok", "error"]
    assert "caf\\xe9-missing.avi" in out[1]["error"]
