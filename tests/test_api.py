"""The Python API (emocli.load, emocli.predict): README's example runs, arrays score as files do,
errors are the exceptions the command line reports, and the frame table matches --frames."""

import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import EXAMPLES, REPO
from emocli.errors import MediaError, NoFaceError, ParameterError
from emocli.labels import LABELS

CLIP = EXAMPLES / "1001_DFA_HAP_XX.avi"


def test_readme_example_runs():
    code = re.search(r"## Python API.*?```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0].split()
    assert first[0] in LABELS and 0.0 <= float(first[1]) <= 1.0


def test_import_emocli_loads_nothing_heavy():
    code = "import sys, emocli; emocli.__version__; print('numpy' in sys.modules, 'emocli.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.fixture(scope="module")
def model():
    import emocli

    return emocli.load(window=1.0)


def test_a_result_is_what_the_command_line_prints(model):
    from typer.testing import CliRunner

    from emocli.cli.app import app

    res = model.predict(CLIP)
    r = CliRunner().invoke(app, ["predict", str(CLIP), "--json", "--window", "1", "--frames"])
    printed = json.loads(r.stdout.splitlines()[-1])
    mine = res.to_json()
    assert mine["label"] == printed["label"] and mine["scores"] == printed["scores"]
    assert [s["label"] for s in res.segments] == [json.loads(ln)["segment"]["label"]
                                                    for ln in r.stdout.splitlines() if '"segment"' in ln]
    frames = [json.loads(ln)["frame"] for ln in r.stdout.splitlines() if '"frame"' in ln]
    table = res.frames_table()
    assert len(table) == len(frames) == res.frames_used
    for row, f in zip(table, frames):
        assert row["time"] == f["time"] and [row[k] for k in "xywh"] == f["box"]
        assert {k: row[k] for k in LABELS} == f["face_scores"]


def test_arrays_score_as_their_files(model, tmp_path):
    from emocli.media.ffmpeg import ffmpeg_exe, load_audio, read_image

    still = tmp_path / "frame.png"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(CLIP), "-frames:v", "1", str(still)],
                   check=True)
    img = read_image(still)  # RGB uint8
    a, b = model.predict(still), model.predict(img)
    assert b.file == "<array>" and a.label == b.label and a.face_scores == b.face_scores
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    assert model.predict(grey).modalities == ["face"]
    audio = load_audio(CLIP, sr=16000)
    wav = tmp_path / "voice.wav"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(CLIP), "-vn", "-ac", "1", "-ar", "16000",
                    "-c:a", "pcm_f32le", str(wav)], check=True)
    v_file, v_array = model.predict(wav), model.predict(audio, sr=16000, name="mic")
    assert v_array.file == "mic" and v_array.modalities == ["voice"]
    assert v_array.voice_scores == pytest.approx(v_file.voice_scores, abs=1e-5)


def test_failures_raise_what_the_command_line_reports(model, tmp_path):
    import emocli

    with pytest.raises(MediaError, match="missing.avi"):
        model.predict(tmp_path / "missing.avi")
    with pytest.raises(NoFaceError, match="no face"):
        model.predict(np.full((480, 640, 3), 127, np.uint8))
    with pytest.raises(ParameterError, match="sample rate"):
        model.predict(np.zeros(16000, np.float32))
    with pytest.raises(ParameterError, match="array input"):
        model.predict(np.zeros((4, 4, 4, 4)))
    with pytest.raises(ParameterError, match="fields of emocli.Options"):
        emocli.load(no_such_option=1)
    res = emocli.predict(CLIP, frames=False)
    with pytest.raises(ParameterError, match="frames=True"):
        res.frames_table()


def test_to_pandas_is_the_frame_table(model):
    res = model.predict(CLIP)
    import importlib.util

    if importlib.util.find_spec("pandas") is None:
        with pytest.raises(ParameterError, match="pip install pandas"):
            res.to_pandas()
        return
    df = res.to_pandas()
    assert list(df.columns[:5]) == ["time", "x", "y", "w", "h"] and len(df) == res.frames_used
