"""Appearance metrics and outputs of the methods that render images (NeRF, Gaussian splatting): notes §12.4-12.5.

* :func:`ssim` -- structural similarity (Wang et al., 2004, "Image quality assessment: from error visibility to
  structural similarity") through scikit-image, with the paper's constants: an 11x11 Gaussian window of
  ``sigma = 1.5``, ``K1 = 0.01``, ``K2 = 0.03``, population (not sample) covariances, mean over the valid
  windows and the three channels.
* :func:`evaluate_views` -- PSNR and SSIM of every test view against the dataset's images composited on the
  method's background, render frames per second, and ``test_renders/<i>.png`` (render | ground truth).
* :func:`orbit_videos` -- a turntable of novel views, ``orbit.mp4``, and its depth, ``orbit_depth.mp4``.

A render function ``render_fn(pose [4, 4], intrinsics) -> view`` returns anything with ``rgb`` ``[H, W, 3]``
in ``[0, 1]`` and ``depth`` ``[H, W]`` (viewing-axis depth, 0 on the background), e.g.
:class:`vision3d.nerf.NeRFImage`.

Metrics are computed on the 8-bit render that ``test_renders/<i>.png`` holds (``round(255 rgb) / 255``), so
they can be recomputed exactly from the saved files; quantisation moves the PSNR by at most a few hundredths
of a dB at the PSNRs of this course (its error, ``<= 1/510`` per value, is far below the model's).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from envs.io.files import atomic_path
from envs.io.video import write_video
from vision3d.camera import Intrinsics, sphere_poses
from vision3d.dataset import BlenderDataset
from vision3d.metrics import psnr

SSIM_SIGMA = 1.5
"""Standard deviation of SSIM's Gaussian window (Wang et al.); scikit-image makes it 11 pixels wide."""
SSIM_WINDOW = 11


class View(Protocol):
    """What a render function returns for one camera."""

    @property
    def rgb(self) -> np.ndarray: ...  # [H, W, 3] float in [0, 1], on the method's background

    @property
    def depth(self) -> np.ndarray: ...  # [H, W] float viewing-axis depth


RenderFn = Callable[[np.ndarray, Intrinsics], View]
"""``render_fn(pose [4, 4] camera-to-world, intrinsics) -> View``."""


def ssim(a: np.ndarray, b: np.ndarray) -> float:  # both [H, W, 3] in [0, 1]
    """Mean structural similarity of two RGB images (Wang et al. 2004; see the module docstring)."""
    from skimage.metrics import structural_similarity

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"a and b must be RGB images [H, W, 3] of one shape, got {a.shape} and {b.shape}")
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[:2]}")
    return float(structural_similarity(a, b, channel_axis=2, data_range=1.0, gaussian_weights=True,
                                       sigma=SSIM_SIGMA, use_sample_covariance=False))


def to_uint8(rgb: np.ndarray) -> np.ndarray:  # [..., 3] float in [0, 1] -> uint8
    """Colours in ``[0, 1]`` as 8-bit values (rounded, clipped)."""
    return np.round(np.clip(np.asarray(rgb, np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


class AppearanceMetrics(NamedTuple):
    """Novel-view quality of a rendering method on a dataset split."""

    psnr: float  # dB, of all pixels of all views pooled (one MSE), as evaluate_nerf and evaluate_dvr
    ssim: float  # mean over views
    per_view: list[dict[str, float]]  # {"psnr", "ssim"} of each view, in the split's order
    fps: float  # rendered views per second at the views' resolution (timed; depends on the machine)
    views: int
    size: tuple[int, int]  # (height, width) of the views

    def to_dict(self) -> dict[str, object]:
        return {**self._asdict(), "size": list(self.size)}


def evaluate_views(render_fn: RenderFn, views: BlenderDataset, out_dir: Path | None = None) -> AppearanceMetrics:
    """Render every view of ``views`` with ``render_fn`` and score it against ``views.rgb`` (the images
    composited on the method's background): pooled PSNR, mean SSIM, frames per second. With ``out_dir``,
    write ``out_dir/test_renders/<i>.png``: the 8-bit render on the left, the 8-bit ground truth on the right."""
    if len(views) == 0:
        raise ValueError("views: expected at least one view, got none")
    renders, seconds = [], 0.0
    for pose in views.poses:
        start = time.perf_counter()
        rgb = np.asarray(render_fn(pose, views.intrinsics).rgb)
        seconds += time.perf_counter() - start
        if rgb.shape != views.rgb.shape[1:]:
            raise ValueError(f"render_fn returned rgb of shape {rgb.shape}, the views are {views.rgb.shape[1:]}")
        renders.append(to_uint8(rgb))
    rendered = np.stack(renders).astype(np.float64) / 255.0  # what the PNGs hold
    truth = views.rgb.astype(np.float64)
    per_view = [{"psnr": psnr(r, t), "ssim": ssim(r, t)} for r, t in zip(rendered, truth)]
    if out_dir is not None:
        for i, (render, target) in enumerate(zip(renders, truth)):
            write_png(Path(out_dir) / "test_renders" / f"{i}.png", np.concatenate([render, to_uint8(target)], axis=1))
    return AppearanceMetrics(psnr(rendered, truth), float(np.mean([v["ssim"] for v in per_view])), per_view,
                             len(renders) / max(seconds, 1e-9), len(renders), views.rgb.shape[1:3])


def write_png(path: Path, image: np.ndarray) -> Path:  # uint8 [H, W, 3]
    """Write a PNG atomically."""
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, image, extension=".png")
    return path


def colorize_depth(depth: np.ndarray, lo: float, hi: float, cmap: str = "turbo") -> np.ndarray:
    """Depth ``[..., H, W]`` through a matplotlib colour map over ``[lo, hi]`` as uint8 ``[..., H, W, 3]``;
    pixels with depth ``<= 0`` (nothing hit) are white."""
    from matplotlib import colormaps

    depth = np.asarray(depth, np.float64)
    t = np.clip((depth - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    rgb = colormaps[cmap](t)[..., :3]
    rgb[depth <= 0] = 1.0
    return to_uint8(rgb)


def orbit_videos(
    render_fn: RenderFn,
    intrinsics: Intrinsics,
    out_dir: Path,
    radius: float = 2.0,
    frames: int = 48,
    fps: int = 24,
    elevation: float = 25.0,
) -> tuple[Path, Path]:
    """A turntable of ``frames`` novel views (one turn at ``elevation`` degrees, ``radius`` from the origin):
    ``out_dir/orbit.mp4`` (colour) and ``out_dir/orbit_depth.mp4`` (depth, one colour scale for every frame)."""
    if frames <= 0 or fps <= 0 or radius <= 0:
        raise ValueError(f"frames, fps and radius must be positive, got {frames}, {fps}, {radius}")
    rendered = [render_fn(pose, intrinsics) for pose in sphere_poses(frames, radius, "turntable", elevation)]
    depths = np.stack([np.asarray(v.depth) for v in rendered])
    hit = depths[depths > 0]
    lo, hi = (float(hit.min()), float(hit.max())) if hit.size else (0.0, 1.0)
    out_dir = Path(out_dir)
    colour = write_video((to_uint8(v.rgb) for v in rendered), out_dir / "orbit.mp4", fps=fps)
    depth = write_video(list(colorize_depth(depths, lo, hi)), out_dir / "orbit_depth.mp4", fps=fps)
    return colour, depth
