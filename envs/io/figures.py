"""The one figure helper: matplotlib's object-oriented API (``Figure``, never ``pyplot``) and atomic PNGs.

Nothing depends on a GUI backend and figures are garbage-collected like any other object.
:func:`learning_curves` and :func:`image_grid` are the two pictures every package draws; a
package's own pictures (value maps, reconstructions) build a ``Figure`` and save it here.

Legibility: :func:`save_figure` (and :func:`figure_image`, for video frames) raise every label (tick labels, axis
labels, titles, legends, colour bars) to at least :data:`envs.io.page.MIN_TEXT_PX` pixels at the width the demo
page shows the picture, and record the smallest label's size in the PNG (``min_label_px``). Colours:
:data:`PALETTE` gives one colour per role (the method, what it is compared with, the truth, training-time
numbers, chance), the same in every picture and video.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.text import Text

from envs.io.files import atomic_path
from envs.io.page import FIGURE_WIDTH, MIN_TEXT_PX, WIDE_WIDTH, spans_page

Curve = np.ndarray | Sequence[float] | tuple[Sequence[float], Sequence[float]]
"""``y`` values (drawn against their index) or an ``(x, y)`` pair."""


@dataclass(frozen=True)
class Palette:
    """One colour per role, the same in every picture and video of the page (:data:`PALETTE`)."""

    learned: str = "#1f77b4"
    """What a section is about: the method it trains, its evaluation, its fit."""
    reference: str = "#ff7f0e"
    """What that is compared with: a peer method, a baseline, a scripted controller."""
    truth: str = "#2ca02c"
    """The ground truth: targets, true keypoints, the data."""
    training: str = "#9467bd"
    """Numbers measured while training (the behaviour policy's returns), beside the evaluation's."""
    chance: str = "#7f7f7f"
    """The floor: random actions, a trivial predictor."""


PALETTE = Palette()


def shown_width(fig: Figure, dpi: float = 100, wide: bool | None = None) -> float:
    """Width in CSS pixels at which the demo page shows ``fig`` saved at ``dpi``: never enlarged, at most a column
    (:data:`~envs.io.page.FIGURE_WIDTH`) or, when ``wide`` (``None``: when it is too wide for a column), the page."""
    width = fig.get_figwidth() * dpi
    if wide is None:
        wide = spans_page("image", round(width))
    return min(width, WIDE_WIDTH if wide else FIGURE_WIDTH)


def label_texts(fig: Figure) -> list[Text]:
    """The visible, non-empty labels of ``fig``: tick and axis labels, titles, legends, figure titles, colour bars;
    not the annotations drawn inside axes (``ax.text``), whose size belongs to what they annotate."""
    fig.draw_without_rendering()  # tick labels exist only once the figure is laid out
    inside = {id(t) for ax in fig.axes for t in ax.texts}
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in inside]


def legible(fig: Figure, dpi: float = 100, wide: bool | None = None, min_px: float = MIN_TEXT_PX) -> float:
    """Raise every label of ``fig`` (:func:`label_texts`) smaller than ``min_px`` CSS pixels as the page shows it
    (:func:`shown_width`) to that size; return the smallest label's size in the picture's own pixels."""
    scale = shown_width(fig, dpi, wide) / (fig.get_figwidth() * dpi)
    min_points = np.ceil(min_px * 72.0 / (dpi * scale) * 100) / 100  # rounded up, so that it is never a hair short
    fig.draw_without_rendering()  # the tick labels as they will be drawn
    for ax in fig.axes:
        for name in ("x", "y"):
            ticks = getattr(ax, f"{name}axis").get_ticklabels(which="both")
            if ticks and min(t.get_fontsize() for t in ticks) < min_points:
                ax.tick_params(axis=name, which="both", labelsize=min_points)
    for text in label_texts(fig):
        if text.get_fontsize() < min_points:
            text.set_fontsize(min_points)
    sizes = [t.get_fontsize() for t in label_texts(fig)]
    return (min(sizes) if sizes else float("inf")) * dpi / 72.0


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100, *, wide: bool | None = None) -> Path:
    """Write ``fig`` as a PNG of ``figsize * dpi`` pixels to ``path`` atomically; return the path.

    Labels are first made :func:`legible` at the size the page shows the picture (``wide``: it spans the page;
    ``None``: when it is too wide for a column); the PNG's ``min_label_px`` text field records the smallest
    label's size in its own pixels.
    """
    path = Path(path)
    smallest = legible(fig, dpi, wide)
    metadata = {"min_label_px": f"{smallest:.3f}"} if np.isfinite(smallest) else {}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", metadata=metadata)
    return path


def figure_image(fig: Figure, dpi: int = 100, *, wide: bool | None = None) -> np.ndarray:  # -> uint8 [H, W, 3]
    """``fig`` rendered to an RGB array (a video frame), its labels made :func:`legible` as for :func:`save_figure`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    legible(fig, dpi, wide)
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def wrap_title(title: str, width_inches: float, fontsize: float = 11.0) -> str:
    """``title`` broken into lines that fit ``width_inches`` at ``fontsize`` points (0.62 em per character,
    a little more than DejaVu Sans needs on average, and a margin), so it is never clipped."""
    if not title:
        return title
    chars = max(int((width_inches - 0.2) * 72 / (fontsize * 0.62)), 10)
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in title.splitlines())


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of each run of ``window`` consecutive values of x [N]; returns [N - window + 1].

    Entry ``j`` averages ``x[j : j + window]``, so it belongs to index ``j + window - 1``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D [N], got shape {x.shape}")
    if not 1 <= window <= len(x):
        raise ValueError(f"window must be in [1, {len(x)}] for x of shape {x.shape}, got {window}")
    csum = np.concatenate([[0.0], np.cumsum(x)])
    return (csum[window:] - csum[:-window]) / window


def _xy(name: str, curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(curve, tuple) and len(curve) == 2:
        x, y = np.asarray(curve[0], dtype=np.float64), np.asarray(curve[1], dtype=np.float64)
    else:
        y = np.asarray(curve, dtype=np.float64)
        x = np.arange(len(y), dtype=np.float64) if y.ndim == 1 else y
    if y.ndim != 1 or len(y) == 0 or x.shape != y.shape:
        raise ValueError(f"curve {name!r} must be a non-empty 1-D array [N] or an (x, y) pair of them, "
                         f"got shapes {x.shape} and {y.shape}")
    return x, y


def learning_curves(
    curves: Mapping[str, Curve],
    *,
    window: int = 20,
    xlabel: str = "episode",
    ylabel: str = "return",
    title: str = "",
    ylim: tuple[float, float] | None = None,
    logy: bool = False,
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Plot each curve faint and its ``window``-point moving average bold, one colour each.

    A curve is ``y`` (drawn against 0, 1, ...) or ``(x, y)``, e.g. returns against environment
    steps. The average over points ``i - window + 1 .. i`` is drawn at ``x[i]``; a curve shorter
    than ``window`` is averaged over its whole length; with ``window=1`` only the curve is drawn.
    ``colors`` gives curves their colour by name (a role of :data:`PALETTE`); the others take
    matplotlib's cycle in order.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, curve) in enumerate(curves.items()):
        x, y = _xy(name, curve)
        w = min(window, len(y))
        color = (colors or {}).get(name, f"C{i % 10}")
        if w > 1:
            ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(x[w - 1 :], moving_average(y, w), color=color, linewidth=2.0, label=name,
                marker="o" if len(y) <= 30 else None, markersize=3)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(wrap_title(title, 7.0))
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(ylim)
    if curves:
        ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return fig


def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    columns: int | None = None,
    *,
    title: str = "",
    cell: float = 2.6,
    cmap: str | None = None,
    fontsize: float = 11,
) -> Figure:
    """Images (``[H, W]`` or ``[H, W, 3]``, float in [0, 1] or uint8) in a grid, each with its title.

    Titles are set at ``fontsize`` points on a figure of ``cell`` inches per image, so labels stay
    readable when the page scales the picture down.
    """
    if len(images) == 0:
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles must have one entry per image, got {len(titles)} for {len(images)} images")
    columns = columns or len(images)
    rows = -(-len(images) // columns)
    lines = max((t.count("\n") + 1 for t in titles or [""]), default=1)
    title_inches = fontsize / 72 * 1.35 * lines + 0.1  # the titles' lines above every image
    fig = Figure(figsize=(cell * columns, (cell + title_inches) * rows + (0.45 if title else 0.1)), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.08, w_pad=0.04)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for k, (ax, image) in enumerate(zip(axes, images)):
        image = np.asarray(image)
        if image.dtype != np.uint8:
            image = np.clip(image, 0.0, 1.0)
        ax.imshow(image, cmap=cmap if image.ndim == 2 else None, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k], fontsize=fontsize)
    if title:
        fig.suptitle(wrap_title(title, cell * columns, fontsize + 1), fontsize=fontsize + 1)
    return fig
