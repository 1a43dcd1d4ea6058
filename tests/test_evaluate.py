"""emo evaluate for researchers and scripts: training splits recorded and checked, folders of face
crops without flags, per-item predictions, null recall for absent classes, the confusion plot."""

import csv
import io
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import ffmpeg
from emocli.cli import app
from emocli.errors import DatasetError
from emocli.labels import LABELS

runner = CliRunner()


def ok(r):
    assert r.exit_code == 0, r.output
    return r


# -- 2. still images that are face crops ------------------------------------------------------

def test_face_sized_image_without_a_face_is_scored_as_a_crop(face_only_bundle, tmp_path):
    import cv2

    from emocli.pipeline import Options, Pipeline

    rng = np.random.default_rng(1)
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    cv2.imwrite(str(small), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    cv2.imwrite(str(big), rng.integers(0, 255, (400, 300), dtype=np.uint8))
    res = Pipeline(face_only_bundle, Options()).run(small)
    assert res.status == "ok" and any("scored it whole as a face crop" in n for n in res.notes)
    assert sum(res.face_scores.values()) == pytest.approx(1, abs=1e-5)
    res = Pipeline(face_only_bundle, Options(detect=True)).run(small)  # --detect: no fallback
    assert res.status == "error" and "no face found" in res.error
    res = Pipeline(face_only_bundle, Options()).run(big)  # larger than a face crop: still an error
    assert res.status == "error" and "no face found" in res.error
