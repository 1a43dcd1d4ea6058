import numpy as np
import pytest

from emocli.face import detect as faces

from emocli.media import ffmpeg as media


@pytest.fixture(scope="module")
def face_frame():
    from conftest import EXAMPLES

    _, frames = next(media.iter_frames(EXAMPLES / "1001_DFA_NEU_XX.avi", fps=5))
    return frames[0]


@pytest.mark.parametrize("name", faces.DETECTORS)
def test_detector_finds_the_face(face_frame, name):
    dets = faces.get_detector(name)(face_frame)
    assert dets, f"{name} found no face"
    d = dets[0]
    # The actor's face is in the middle of the 480x360 frame, roughly 110-130 px wide.
    cx, cy = d.center
    assert 180 < cx < 300 and 100 < cy < 200
    assert 80 < d.width < 160
    assert 0.0 < d.score <= 1.0


@pytest.mark.parametrize("name", ["yunet", "blazeface"])
def test_no_face_in_test_pattern(tmp_path, name):
    from conftest import make_clip

    clip = make_clip(tmp_path / "pattern.avi", seconds=0.4, audio=False)
    _, frames = next(media.iter_frames(clip, fps=5))
    det = faces.get_detector(name)
    tracker = faces.FaceTracker()
    idx, crops, _ = faces.faces_in_frames(frames, detector=det, tracker=tracker)
    assert idx == [] and crops == []


def _face_only(face_frame):
    """The actor's face cut out of the example frame (about 1.6 face widths around it)."""
    d = faces.get_detector("yunet")(face_frame)[0]
    return faces.crop_face(face_frame, d, margin=0.3)


def _on_grey(img, *, width: int, angle: float = 0.0, centre=(240, 240), frame=480):
    import cv2

    s = width / img.shape[1]
    m = cv2.getRotationMatrix2D((img.shape[1] / 2, img.shape[0] / 2), angle, s)
    m[:, 2] += (centre[0] - img.shape[1] / 2, centre[1] - img.shape[0] / 2)
    return cv2.warpAffine(img, m, (frame, frame), dst=np.full((frame, frame, 3), 128, np.uint8),
                          borderMode=cv2.BORDER_TRANSPARENT)


def test_default_detector_finds_close_ups_tilted_and_border_faces(face_frame):
    """The faces BlazeFace misses (issue 27): a close-up filling the frame, a face turned by 30 degrees,
    a face a third outside the frame. YuNet, the default, finds each, with its five landmarks."""
    face = _face_only(face_frame)
    cases = {"close-up": _on_grey(face, width=470), "tilted": _on_grey(face, width=200, angle=30),
             "border": _on_grey(face, width=200, centre=(-200 / 3 + 100, 240))}
    det = faces.get_detector(faces.DEFAULT_DETECTOR)
    assert faces.DEFAULT_DETECTOR == "yunet"
    for name, frame in cases.items():
        dets = det(frame)
        assert dets, f"no face in the {name} frame"
        assert dets[0].landmarks is not None and len(dets[0].landmarks) == 5
        assert abs(dets[0].width - dets[0].height) < 1e-6  # square, as crop_face expects


def test_a_face_missed_at_the_frames_size_is_found_by_the_second_look(face_frame):
    """Issue 27: a small turned face (40 px wide, 30 degrees) that the first pass misses is found at
    another size; the box and landmarks are in the frame's pixels, on the face."""
    frame = _on_grey(_face_only(face_frame), width=40, angle=30)
    assert faces.YuNetDetector(retry_scales=())(frame) == []
    det = faces.get_detector("yunet")
    assert det.retry_scales == faces.YUNET_RETRY_SCALES and det.first_pass(frame) == []
    dets = det(frame)
    assert dets and dets == det.second_look(frame)
    d = dets[0]
    assert abs(d.center[0] - 240) < 10 and abs(d.center[1] - 240) < 10 and 15 < d.width < 40
    assert all(abs(x - 240) < 25 and abs(y - 240) < 25 for x, y in d.landmarks)
    # the same frame as a video: found in every frame
    idx, crops, _ = faces.faces_in_frames(np.stack([frame] * 3), detector=det, tracker=faces.FaceTracker(min_face=16))
    assert idx == [0, 1, 2] and len(crops) == 3


class _CountingDetector:
    """A detector whose first pass never finds a face and whose second look finds one on given frames."""

    def __init__(self, found_on=()):
        self.found_on, self.looked = set(found_on), []

    def first_pass(self, frame):
        return []

    def second_look(self, frame):
        k = int(frame[0, 0, 0])
        self.looked.append(k)
        return [faces.Detection(10, 10, 60, 60, 0.9)] if k in self.found_on else []


def test_second_looks_are_rationed_on_face_free_frames_and_kept_while_they_find_the_face():
    frames = np.zeros((23, 8, 8, 3), np.uint8)
    frames[:, 0, 0, 0] = np.arange(23)
    det = _CountingDetector()
    faces.faces_in_frames(frames, detector=det, tracker=faces.FaceTracker(min_face=10))
    every = faces.SECOND_LOOK_EVERY
    assert det.looked == list(range(0, 23, every))  # the first frame, then one in SECOND_LOOK_EVERY
    det = _CountingDetector(found_on=range(5, 9))
    idx, _, _ = faces.faces_in_frames(frames, detector=det, tracker=faces.FaceTracker(min_face=10))
    assert idx == [5, 6, 7, 8]
    # found on frame 5: looked again on every frame while it found the face, then rationed again
    assert det.looked == [0, 5, 6, 7, 8, 9] + list(range(9 + every, 23, every))


def test_yunet_box_frames_the_face_like_blazeface(face_frame):
    """The square YuNet box sits on the face as BlazeFace's does (same centre, similar size), so the crop
    the networks see is framed as before."""
    y = faces.get_detector("yunet")(face_frame)[0]
    b = faces.get_detector("blazeface")(face_frame)[0]
    assert abs(y.center[0] - b.center[0]) < 0.15 * b.width and abs(y.center[1] - b.center[1]) < 0.15 * b.width
    assert 0.75 < y.width / b.width < 1.25


def test_tracker_keeps_main_face_not_background_face(face_frame):
    import cv2

    # The scene on the right, a smaller copy of it on the left: a "background face".
    frame = np.full((360, 960, 3), 90, np.uint8)
    frame[:, 480:] = face_frame
    frame[60:300, :320] = cv2.resize(face_frame, (320, 240))
    dets = faces.get_detector("blazeface")(frame)
    assert len(dets) >= 2
    chosen = faces.FaceTracker().choose(dets, frame.shape)
    assert chosen.width == max(d.width for d in dets)
    assert chosen.center[0] > 480


def test_tracker_drops_tiny_faces():
    t = faces.FaceTracker(min_face=24)
    assert t.choose([faces.Detection(0, 0, 10, 10, 0.99)], (100, 100, 3)) is None


def test_crop_is_square_and_padded_at_borders(face_frame):
    d = faces.Detection(-20, -20, 60, 60, 0.9)  # partly outside the frame
    crop = faces.crop_face(face_frame, d, margin=0.1)
    assert crop.shape[0] == crop.shape[1] == 96
    assert crop.dtype == np.uint8


def test_iou():
    a = faces.Detection(0, 0, 10, 10, 1)
    assert faces.iou(a, a) == pytest.approx(1.0)
    assert faces.iou(a, faces.Detection(20, 20, 30, 30, 1)) == 0.0
    assert faces.iou(a, faces.Detection(5, 0, 15, 10, 1)) == pytest.approx(50 / 150)


def _box(x0, y0=0.0, side=50.0):
    return faces.Detection(x0, y0, x0 + side, y0 + side, 0.9)


def test_linker_keeps_each_face_on_its_track_and_counts_the_others():
    linker = faces.FaceLinker()
    left, right = _box(0), _box(200)
    assert linker.add([right, left], right) == ([right, left], [0, 1])
    # both moved a little, listed in the other order: each stays on its own track
    moved_left, moved_right = _box(6, 4), _box(195, 3)
    assert linker.add([moved_left, moved_right], moved_right)[1] == [1, 0]
    assert linker.main_ == {0} and linker.others == 1
    tiny = faces.Detection(100, 100, 110, 110, 0.9)  # under MIN_FACE: not a face to score
    assert linker.add([moved_right, tiny], moved_right) == ([moved_right], [0])


def test_linker_ends_a_track_missing_for_too_many_frames():
    linker = faces.FaceLinker(max_missed=2)
    a = _box(0)
    assert linker.link([a]) == [0]
    for _ in range(2):
        assert linker.link([]) == []
    assert linker.link([a]) == [0]  # missed 2 frames: still the same track
    for _ in range(3):
        linker.link([])
    assert linker.link([a]) == [1]  # missed 3: a new track
