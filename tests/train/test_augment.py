"""Frame-like augmentation of aligned faces (emo train-expert --from-stage before 7x7)."""

from dataclasses import replace

import numpy as np

from emocli.train.augment import FrameLike, frame_like


def faces(n=6, side=112):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    img[:, 40:60] = (250, 120, 30)  # a band that survives every change
    return img


def test_augmented_faces_keep_shape_and_type_and_a_seed_repeats_them():
    x = faces()
    a, b = (frame_like(x, np.random.default_rng(3)) for _ in range(2))
    assert a.shape == x.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, frame_like(x, np.random.default_rng(4)))
    assert all(not np.array_equal(a[i], x[i]) for i in range(len(x)))  # every face changed
    assert abs(float(a.mean()) - float(x.mean())) < 40  # and stays a face of the same range


def test_nothing_changes_when_every_change_is_zero_but_the_mirror():
    none = FrameLike(rotation=0, zoom=0, shift=0, brightness=0, contrast=0, saturation=0, grey=0, small=0, blur=0,
                     jpeg=0)
    x = faces()
    out = frame_like(x, np.random.default_rng(0), none)
    for i in range(len(x)):
        assert np.abs(out[i].astype(int) - x[i]).max() <= 1 or np.abs(out[i].astype(int) - x[i, :, ::-1]).max() <= 1


def test_grey_small_and_jpeg_do_what_they_say():
    none = FrameLike(rotation=0, zoom=0, shift=0, brightness=0, contrast=0, saturation=0, grey=0, small=0, blur=0,
                     jpeg=0)
    x = faces()
    grey = frame_like(x, np.random.default_rng(0), replace(none, grey=1.0))
    assert np.abs(grey[..., 0].astype(int) - grey[..., 2]).max() <= 1  # no colour left

    def detail(img):  # high-frequency energy: what a far, upscaled face has lost
        return float(np.abs(np.diff(img.astype(np.float32), axis=1)).mean())

    small = frame_like(x, np.random.default_rng(0), replace(none, small=1.0, small_side=(24, 24)))
    assert detail(small) < 0.5 * detail(x)
    jpeg = frame_like(x, np.random.default_rng(0), replace(none, jpeg=1.0))
    for i in range(len(x)):  # blocks and lost noise, whichever way the face was mirrored
        err = min(np.abs(jpeg[i].astype(int) - x[i]).mean(), np.abs(jpeg[i].astype(int) - x[i, :, ::-1]).mean())
        assert err > 2
