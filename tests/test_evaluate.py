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


# -- 5. the confusion plot ----------------------------------------------------------------------

def _report(face: bool, voice: bool):
    from emocli.evaluate import Evaluation

    ev = Evaluation()
    rng = np.random.default_rng(0)
    for i in range(20):
        s = {lab: float(v) for lab, v in zip(LABELS, rng.dirichlet(np.ones(7)))}
        ev.add(LABELS[i % 5], {"face": s if face else None, "voice": s if voice else None, "fused": s}, )
    return ev.report()


@pytest.mark.parametrize("face,voice,panels", [(True, True, 4), (True, False, 2), (False, True, 2)])
def test_confusion_figure_draws_the_modalities_that_ran(face, voice, panels, tmp_path):
    import matplotlib.pyplot as plt

    from emocli.evaluate import confusion_figure, plot_confusions

    rep = _report(face, voice)
    fig = confusion_figure(rep)
    images = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if ax.patches]
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(images) == panels - 1 and len(bars) == 1 and len(colorbars) == 1
    titles = [ax.get_title().split(":")[0] for ax in images]
    assert titles == [m for m, on in (("face", face), ("voice", voice), ("fused", face and voice)) if on]
    # percent of the true class in large print, counts in small
    assert any(t.get_text().isdigit() and t.get_fontsize() < 7 for t in images[0].texts)
    plt.close(fig)
    assert plot_confusions(rep, tmp_path / "cm.png") == panels
