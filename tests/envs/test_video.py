"""The one MP4 writer (envs/io/video.py): H.264 that browsers play, even sizes, atomic writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import pytest

from envs.io.video import pad_even, side_by_side, write_video


def solid_frames(colors: list[int], height: int, width: int) -> list[np.ndarray]:
    return [np.full((height, width, 3), c, dtype=np.uint8) for c in colors]


def read_video(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Decode an MP4 through imageio's ffmpeg plugin: its metadata and its uint8 [H, W, 3] frames."""
    with imageio.get_reader(path, format="FFMPEG") as reader:
        return reader.get_meta_data(), list(reader.iter_data())


def test_write_video_reads_back_h264_with_even_size(tmp_path: Path) -> None:
    colors = [0, 60, 120, 180, 240]
    frames = solid_frames(colors, 33, 47)
    frames[0][-1, :] = (255, 0, 0)  # the last row is red, so the padding row must be red too
    path = write_video(frames, tmp_path / "clip.mp4", fps=5)
    meta, decoded = read_video(path)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["size"] == (48, 34)
    assert len(decoded) == len(colors)
    assert [round(float(f[:32].mean())) for f in decoded] == pytest.approx(colors, abs=3)
    assert decoded[0][-1, 20, 0] > 200 and decoded[0][-1, 20, 1] < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_pad_even_copies_edges() -> None:
    frame = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3)
    padded = pad_even(frame)
    assert padded.shape == (4, 6, 3)
    np.testing.assert_array_equal(padded[:3, :5], frame)
    np.testing.assert_array_equal(padded[3, :5], frame[2])
    np.testing.assert_array_equal(padded[:3, 5], frame[:, 4])
    assert pad_even(padded) is padded


def test_write_video_rejects_mismatch_and_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old video")
    frames = solid_frames([10, 20, 30], 16, 16) + solid_frames([40], 16, 18)
    with pytest.raises(ValueError, match=r"frames\[3\] has shape \(16, 18, 3\).*frames\[0\].*\(16, 16, 3\)"):
        write_video(frames, target)
    assert target.read_bytes() == b"old video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_write_video_rejects_empty_and_non_rgb(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "empty.mp4")
    with pytest.raises(ValueError, match="dtype uint8"):
        write_video([np.zeros((8, 8, 3), dtype=np.float32)], tmp_path / "float.mp4")
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        write_video([np.zeros((8, 8), dtype=np.uint8)], tmp_path / "gray.mp4")
    assert list(tmp_path.iterdir()) == []


def test_side_by_side_holds_the_shorter_video_and_checks_heights():

    a = [np.full((4, 3, 3), i, np.uint8) for i in range(3)]
    b = [np.full((4, 2, 3), 100 + i, np.uint8) for i in range(5)]
    frames = side_by_side(a, b, gap=1)
    assert len(frames) == 5 and frames[0].shape == (4, 3 + 1 + 2, 3)
    assert frames[4][0, 0, 0] == 2 and frames[4][0, 3, 0] == 255 and frames[4][0, 4, 0] == 104
    with pytest.raises(ValueError, match="share a height"):
        side_by_side(a, [np.zeros((5, 2, 3), np.uint8)])
