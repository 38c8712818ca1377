"""Drawing gridworlds with numpy: a cached background and the agent stamped on a copy."""

from __future__ import annotations

import numpy as np

from envs.grid_map import GridMap

COLOURS: dict[str, tuple[int, int, int]] = {
    ".": (236, 231, 218),  # free
    "S": (171, 205, 239),  # start
    "G": (92, 184, 92),  # goal
    "#": (64, 64, 72),  # wall
    "H": (33, 48, 92),  # hole
    "C": (176, 64, 52),  # cliff
}
AGENT = np.array([222, 40, 40], dtype=np.uint8)
GRID_LINE = np.array([200, 195, 182], dtype=np.uint8)
WIND = np.array([120, 150, 200], dtype=np.float64)


def draw_background(grid: GridMap, cell: int, lines: bool = True) -> np.ndarray:
    """The map as a ``uint8 [nrow * cell, ncol * cell, 3]`` image; wind tints free cells blue."""
    nrow, ncol = grid.shape
    colours = np.array([COLOURS[ch] for ch in grid.cells.ravel()], dtype=np.float64).reshape(nrow, ncol, 3)
    strength = np.clip(grid.wind / 4.0, 0.0, 1.0)[..., None] * (grid.cells == ".")[..., None]
    colours = (1 - 0.6 * strength) * colours + 0.6 * strength * WIND
    image = np.repeat(np.repeat(colours.astype(np.uint8), cell, axis=0), cell, axis=1)
    if lines and cell >= 8:
        image[::cell, :] = GRID_LINE
        image[:, ::cell] = GRID_LINE
    return image


def disk(cell: int) -> np.ndarray:
    """Boolean ``[cell, cell]`` mask of a centred disk, the agent's marker."""
    centre = (cell - 1) / 2.0
    yy, xx = np.mgrid[:cell, :cell]
    radius = max(cell * 0.32, 1.0)
    return (yy - centre) ** 2 + (xx - centre) ** 2 <= radius**2


TRAIL = np.array([235, 150, 60], dtype=np.uint8)


def stamp_agent(background: np.ndarray, mask: np.ndarray, row: int, col: int,
                trail: list[tuple[int, int]] | None = None) -> np.ndarray:
    """A copy of ``background`` with the agent drawn in cell ``(row, col)``, and a small dot in each
    cell of ``trail`` (the cells visited earlier in the episode)."""
    cell = mask.shape[0]
    image = background.copy()
    if trail:
        dot = np.zeros_like(mask)
        k = max(cell // 3, 1)
        dot[(cell - k) // 2 : (cell + k) // 2 + 1, (cell - k) // 2 : (cell + k) // 2 + 1] = True
        for r, c in trail:
            image[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell][dot] = TRAIL
    patch = image[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell]
    patch[mask] = AGENT
    return image


def render_cell_size(shape: tuple[int, int], target: int = 512) -> int:
    """Pixels per cell so that the longer side of a rendered frame is about ``target`` pixels."""
    return int(np.clip(target // max(shape), 4, 48))
