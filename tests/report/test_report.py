"""Rich tables of predict: header at the terminal's width, winners marked, a summary for several inputs."""

import numpy as np
from rich.console import Console

from emocli.labels import LABELS
from emocli.pipeline.options import Result
from emocli.report.output import result_table, summary_table


def _scores(top: str, p: float = 0.6) -> dict[str, float]:
    rest = (1 - p) / 6
    return {lab: (p if lab == top else rest) for lab in LABELS}


def _render(fn, arg, width: int = 200) -> str:
    console = Console(width=width, record=True, color_system=None)
    fn(arg, console=console)
    return console.export_text()


def test_result_table_marks_each_column_and_uses_the_terminal_width():
    long_name = "/data/" + "a-long-folder-name/" * 5 + "clip.avi"
    res = Result(file=long_name, label="happy", scores=_scores("happy"), face_scores=_scores("happy"),
                 voice_scores=_scores("disgust"), face_experts={"emo-cnn": _scores("happy"), "rafdb": _scores("sad")},
                 modalities=["face", "voice"], frames_used=11)
    text = _render(result_table, res)
    header = text.splitlines()[0]
    assert long_name in header and "happy" in header and "11 face frame(s)" in header  # not wrapped at 200
    head_row = next(line for line in text.splitlines() if "emotion" in line)
    for col in ("face", "emo-cnn", "rafdb", "voice", "fused"):
        assert col in head_row
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("│")}
    assert rows["happy"].count("\u25b8") == 3  # face, emo-cnn and fused pick happy
    assert rows["disgust"].count("\u25b8") == 1 and rows["sad"].count("\u25b8") == 1  # voice, rafdb


def test_result_table_says_which_modality_decided_alone():
    res = Result(file="a.wav", label="anger", scores=_scores("anger"), voice_scores=_scores("anger"),
                 modalities=["voice"])
    text = _render(result_table, res, width=120)
    assert "voice alone decided" in text.splitlines()[0] and "face frame" not in text.splitlines()[0]


def test_summary_table_has_one_row_per_input():
    ok = Result(file="a.avi", label="sad", scores=_scores("sad", 0.7), modalities=["face", "voice"])
    bad = Result(file="b.avi", status="error", error="b.avi: file not found", error_type="MediaError")
    text = _render(summary_table, [ok, bad], width=120)
    assert "2 inputs" in text
    line_a = next(line for line in text.splitlines() if "a.avi" in line)
    assert "sad" in line_a and "0.700" in line_a and "face + voice" in line_a and "ok" in line_a
    assert "MediaError" in next(line for line in text.splitlines() if "b.avi" in line)


def test_progress_bar_counts_inputs_on_a_terminal_only():
    import io

    from emocli.report.output import ProgressBar

    quiet = Console(file=io.StringIO(), force_terminal=False)
    bar = ProgressBar(quiet, 3)
    bar.advance("a.avi")
    bar.close()
    assert quiet.file.getvalue() == ""  # not a terminal: nothing on stderr

    term = Console(file=io.StringIO(), force_terminal=True, width=120)
    bar = ProgressBar(term, 3)  # pytest's stdout is not a terminal: results go elsewhere, the bar shows
    for name in ("a.avi", "b.avi"):
        bar.advance(name)
    bar.progress.refresh()
    shown = term.file.getvalue()
    bar.close()
    assert "2/3" in shown and "ETA" in shown and "b.avi" in shown


def test_csv_has_a_row_per_face_track_and_a_track_column():
    """--faces all --format csv: the result row, then a 'face' row per track; frames say their track; every box
    is 'x y w h' (the JSON's [x, y, w, h])."""
    from emocli.report.output import CSV_COLUMNS, csv_rows

    scores = {lab: 1 / 7 for lab in LABELS}
    faces = [{"track": 0, "main": True, "box": [10.0, 20.0, 30.0, 40.0], "label": "happy", "scores": scores,
              "frames_used": 5, "first": 0.0, "last": 0.8},
             {"track": 1, "main": False, "box": [100.0, 20.0, 30.0, 41.0], "label": "sad", "scores": scores,
              "frames_used": 4, "first": 0.2, "last": 0.8}]
    result = {"file": "two.mp4", "status": "ok", "label": "happy", "scores": scores, "face_scores": scores,
              "modalities": ["face"], "frames_used": 5, "duration": 1.0, "notes": [], "faces": faces}
    rows = [dict(zip(CSV_COLUMNS, r)) for r in csv_rows(result)]
    assert [r["kind"] for r in rows] == ["result", "face", "face"]
    assert [(r["track"], r["box"], r["label"], r["notes"]) for r in rows[1:]] == [
        (0, "10 20 30 40", "happy", "main"), (1, "100 20 30 41", "sad", "")]
    frame = {"file": "two.mp4", "frame": {"time": 0.2, "box": [100.0, 20.0, 30.0, 41.0], "face_scores": scores,
                                          "track": 1, "main": False}}
    (row,) = [dict(zip(CSV_COLUMNS, r)) for r in csv_rows(frame)]
    assert (row["kind"], row["track"], row["box"]) == ("frame", 1, "100 20 30 41")


def test_one_progress_bar_for_every_long_step():
    """predict, evaluate, extract and train-audio's features share report.output.ProgressBar: count, total, ETA,
    on a terminal only."""
    import io

    from emocli.report.output import ProgressBar

    buf = io.StringIO()
    bar = ProgressBar(Console(file=buf, force_terminal=True, width=120), 3, what="voice features")
    bar.advance()
    bar.update(2)
    bar.progress.refresh()
    bar.close()
    assert "voice features" in buf.getvalue() and "2/3" in buf.getvalue()
    quiet = io.StringIO()
    silent = ProgressBar(Console(file=quiet, force_terminal=False), 3, what="evaluate")
    silent.advance()
    silent.close()
    assert quiet.getvalue() == "" and silent.progress is None


def test_annotate_panel_goes_where_no_face_is_and_fits_a_small_frame():
    """The score panel takes the corner that covers the faces least (it hid the main face's label when fixed
    top-left), and on a 181x144 image it fits inside the frame; the box label says it is the face's score."""
    import numpy as np

    from emocli.report.annotate import draw_frame, panel_corner

    scores = {lab: 1 / 7 for lab in LABELS}
    frame = np.full((360, 480, 3), 200, np.uint8)
    face = {"box": [10.0, 10.0, 150.0, 150.0], "face_scores": dict(scores, happy=0.5)}
    assert panel_corner(frame.shape, (120, 100), [(10, 10, 160, 160)]) != (0, 0)
    out = draw_frame(frame, [face], scores)
    inside = out[40:140, 40:140]  # inside the face box, away from its outline and label
    assert (inside == 200).all()  # not darkened by the panel
    corners = [out[5:20, -20:-5], out[-20:-5, 5:20], out[-20:-5, -20:-5]]
    assert any(c.mean() < 100 for c in corners)  # the panel darkened one of the other corners
    small = np.full((144, 181, 3), 200, np.uint8)
    out = draw_frame(small, [], scores)
    dark = out.mean(axis=2) < 100
    assert dark.any() and dark.sum() < dark.size  # a panel, inside the frame, not the whole frame


def test_every_picture_uses_the_emotion_colours(tmp_path):
    """The timeline's areas are drawn in emocli.labels.EMOTION_COLOURS (the annotate bars use them too)."""
    import matplotlib.image

    from emocli.labels import EMOTION_COLOURS, emotion_rgb
    from emocli.report.output import Timeline, plot_timeline

    assert list(EMOTION_COLOURS) == list(LABELS)
    tl = Timeline()
    only_sad = {lab: float(lab == "sad") for lab in LABELS}
    tl.add("clip", {"start": 0.0, "end": 2.0, "scores": only_sad, "face_scores": only_sad, "voice_scores": only_sad})
    plot_timeline(tl, tmp_path / "t.png")
    img = (matplotlib.image.imread(tmp_path / "t.png")[..., :3] * 255).round()
    want = np.array(emotion_rgb("sad")) * 0.85 + 255 * 0.15  # alpha 0.85 on white
    h, w = img.shape[:2]
    assert np.abs(img[h // 2, w // 3] - want).max() <= 3
