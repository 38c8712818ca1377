"""The one MP4 writer: uint8 RGB frames to H.264 (yuv420p) through imageio's ffmpeg plug-in.

Rollouts of agents, turntables of reconstructions and latent walks all go through :func:`write_video`,
so every video of the project plays in a browser, has even sizes and is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs.io.files import atomic_path


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike[str], *, fps: float = 4) -> Path:
    """Write uint8 ``[H, W, 3]`` frames to an H.264/yuv420p MP4 at ``path`` (atomically); return the path.

    All frames must share one shape. Odd heights/widths are padded by one row/column copied from
    the edge, since yuv420p needs even sizes. Frames are checked while writing (an iterable is
    consumed lazily, so long videos need not sit in memory), and a bad frame leaves any previous
    file at ``path`` untouched.
    """
    import imageio.v2 as imageio

    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,  # we pad to even sizes ourselves; the default 16 would rescale
            ffmpeg_log_level="error",
        )
        try:
            count = _append_frames(writer, frames)
        finally:
            writer.close()
        if count == 0:
            raise ValueError("write_video got no frames")
    return path


def side_by_side(*videos: Sequence[np.ndarray], gap: int = 4) -> list[np.ndarray]:
    """Frames of several videos next to each other; a shorter video holds its last frame.

    All frames must share a height; a white strip of ``gap`` pixels separates the videos.
    """
    if not videos or any(len(v) == 0 for v in videos):
        raise ValueError("side_by_side needs at least one non-empty video")
    heights = {v[0].shape[0] for v in videos}
    if len(heights) != 1:
        raise ValueError(f"videos to put side by side must share a height, got heights {sorted(heights)}")
    strip = np.full((heights.pop(), gap, 3), 255, np.uint8)
    frames = []
    for t in range(max(len(v) for v in videos)):
        parts = [v[min(t, len(v) - 1)] for v in videos]
        frames.append(np.concatenate([p for part in parts for p in (part, strip)][:-1], axis=1))
    return frames


def pad_even(frame: np.ndarray) -> np.ndarray:
    """Pad a ``[H, W, 3]`` frame with its last row/column so that H and W are even."""
    pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
    return np.pad(frame, pad, mode="edge") if any(p[1] for p in pad) else frame


def as_frame(image: Any, name: str = "frame") -> np.ndarray:
    """``image`` as a uint8 ``[H, W, 3]`` array, or a ``ValueError`` naming what is wrong."""
    frame = np.asarray(image)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{name} must be an RGB image [H, W, 3], got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {frame.dtype}")
    return frame


def _append_frames(writer: Any, frames: Iterable[np.ndarray]) -> int:
    """Check and pad each frame, hand it to ``writer``; return how many were written."""
    first_shape: tuple[int, ...] | None = None
    count = 0
    for i, frame in enumerate(frames):
        frame = as_frame(frame, name=f"frames[{i}]")
        if first_shape is None:
            first_shape = frame.shape
        elif frame.shape != first_shape:
            raise ValueError(f"frames[{i}] has shape {frame.shape} but frames[0] has shape {first_shape}")
        writer.append_data(pad_even(frame))
        count += 1
    return count
