"""Lists of paths on stdin, as shells and tools write them."""

from __future__ import annotations

import io

import pytest

from conftest import EXAMPLES
from emocli.media.inputs import MAX_PATH_LINE, expand_inputs

CLIP = str(EXAMPLES / "1001_DFA_HAP_XX.avi")
OTHER = str(EXAMPLES / "1001_DFA_SAD_XX.avi")


def entries(data: bytes):
    return list(expand_inputs(["-"], stdin=io.BufferedReader(io.BytesIO(data))))


def read(data: bytes):
    return [(name, None if path is None else str(path), problem) for name, path, problem in entries(data)]


@pytest.mark.parametrize("data", [
    f"\ufeff{CLIP}\n{OTHER}\n".encode(),                                  # a UTF-8 byte-order mark
    f"\x1b[0m\x1b[01;35m{CLIP}\x1b[0m\n\x1b[01;35m{OTHER}\x1b[0m\n".encode(),  # ls --color=always
    f"{CLIP}\0{OTHER}\0".encode(),                                       # find -print0
    f"{CLIP}\r\n{OTHER}\r\n".encode(),                                   # Windows line ends
])
def test_a_list_is_read_as_a_list_whatever_wraps_it(data):
    assert read(data) == [(CLIP, CLIP, None), (OTHER, OTHER, None)]


def test_spaces_in_names_are_kept_as_written(tmp_path):
    (tmp_path / " lead.avi").write_bytes(b"x")
    (tmp_path / "trail.avi ").write_bytes(b"x")
    got = read(f"{tmp_path}/ lead.avi\n{tmp_path}/trail.avi \n".encode())
    assert [p for _, p, _ in got] == [f"{tmp_path}/ lead.avi", f"{tmp_path}/trail.avi "]


def test_an_overlong_line_is_one_error_and_the_list_goes_on():
    data = f"{CLIP}\n".encode() + b"a" * (MAX_PATH_LINE + 6 * 1024) + f"\n{OTHER}\n".encode()
    got = read(data)
    assert got[0] == (CLIP, CLIP, None) and got[-1] == (OTHER, OTHER, None)
    assert len(got) == 3 and got[1][1] is None and "longer than" in got[1][2]


def test_a_line_with_control_characters_is_its_own_error():
    got = read(f"{CLIP}\nbad\x01name.avi\n{OTHER}\n".encode())
    assert got[0][1] == CLIP and got[2][1] == OTHER
    assert got[1][1] is None and "control characters" in got[1][2]


def test_media_bytes_are_still_media():
    from emocli.media.live import LiveSource

    for clip in (CLIP, EXAMPLES.parent / "tests" / "data" / "ravdess_shouted_03-01-05-02-02-01-18.flac"):
        (name, src, problem), = entries(open(clip, "rb").read())
        assert name == "<stdin>" and isinstance(src, LiveSource) and problem is None


def test_a_silent_wav_is_media_not_a_list(tmp_path):
    """Digital silence is mostly NUL bytes, which also separate `find -print0` paths: still media."""
    from conftest import write_wav
    from emocli.media.live import LiveSource

    import numpy as np

    wav = write_wav(tmp_path / "silence.wav", np.zeros(16000 * 3))
    (name, src, problem), = entries(wav.read_bytes())
    assert name == "<stdin>" and isinstance(src, LiveSource) and problem is None
