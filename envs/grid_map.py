"""Text maps for gridworlds: parsing and validation.

A map is a rectangle of characters, one row per line:

====  ==========================================================================
``S``  start (free; several ``S`` give a uniform start distribution)
``G``  goal: entering it ends the episode with ``goal_reward``
``#``  wall: moves into it leave the agent where it was
``H``  hole: entering it ends the episode with ``hole_reward``
``C``  cliff: entering it gives ``cliff_reward`` and sends the agent back to the start
``.``  free
``0-9`` free, with an upward wind of that strength (as in Sutton & Barto's windy gridworld)
====  ==========================================================================

A first line made only of digits is a wind header: one strength per column, applied to every
row of that column (a digit cell overrides it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CELL_TYPES = "SG#HC."
MAPS_DIR = Path(__file__).resolve().parent.parent / "assets" / "maps"
_NAME = re.compile(r"[a-z][a-z0-9_-]*")

MapLike = str | os.PathLike[str] | list[str] | tuple[str, ...]


@dataclass(frozen=True)
class GridMap:
    """A parsed map.

    ``cells`` is a ``[nrow, ncol]`` array of single characters from ``SG#HC.`` (wind digits are
    turned into ``.``), ``wind`` an int ``[nrow, ncol]`` array of upward wind strengths.
    """

    cells: np.ndarray  # [nrow, ncol] dtype '<U1'
    wind: np.ndarray  # [nrow, ncol] int

    @property
    def shape(self) -> tuple[int, int]:
        return self.cells.shape  # type: ignore[return-value]

    def mask(self, kind: str) -> np.ndarray:
        """Boolean ``[nrow, ncol]`` mask of the cells of one type, e.g. ``mask("#")``."""
        return self.cells == kind

    def rows(self) -> list[str]:
        """The map as text rows (wind digits shown where a cell has wind)."""
        out = self.cells.copy()
        windy = (self.wind > 0) & (self.cells == ".")
        out[windy] = self.wind[windy].astype(str)
        return ["".join(r) for r in out]


def builtin_maps() -> list[str]:
    """Names of the maps shipped in ``assets/maps`` (usable as ``map="name"``)."""
    return sorted(p.stem for p in MAPS_DIR.glob("*.txt"))


def load_map(map: MapLike) -> GridMap:  # noqa: A002 - `map` is the public keyword name
    """Parse a map given as a list of rows, a multi-line string, a built-in name or a ``.txt`` path.

    Raises:
        ValueError: naming the problem: an unknown character (with its row and column), rows of
            different lengths, no start cell, a wind header of the wrong length, a missing file.
    """
    rows = _rows_of(map)
    if not rows:
        raise ValueError("map is empty: expected at least one row of cells")
    header = None
    if len(rows) > 1 and rows[0].isdigit():
        header, rows = rows[0], rows[1:]
    ncol = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != ncol:
            raise ValueError(
                f"map rows must all have the same length: row {i} has {len(row)} characters, row 0 has {ncol}"
            )
    grid = np.array([list(r) for r in rows])
    wind = np.zeros(grid.shape, dtype=np.int64)
    if header is not None:
        if len(header) != ncol:
            raise ValueError(f"wind header has {len(header)} digits but the map has {ncol} columns")
        wind[:] = np.array([int(ch) for ch in header])
    for (r, c), ch in np.ndenumerate(grid):
        if ch.isdigit():
            wind[r, c] = int(ch)
            grid[r, c] = "."
        elif ch not in CELL_TYPES:
            raise ValueError(
                f"unknown map character {str(ch)!r} at row {r}, column {c}; "
                f"expected one of S G # H C . or a wind digit 0-9"
            )
    if not (grid == "S").any():
        raise ValueError("map has no start cell 'S'")
    return GridMap(cells=grid, wind=wind)


def _rows_of(map: MapLike) -> list[str]:  # noqa: A002
    if isinstance(map, (list, tuple)):
        if not all(isinstance(r, str) for r in map):
            raise ValueError("map given as a list must contain strings, one per row")
        return [r.strip() for r in map if r.strip()]
    if isinstance(map, os.PathLike) or (isinstance(map, str) and "\n" not in map and map.endswith(".txt")):
        path = Path(map)
        if not path.is_file():
            raise ValueError(f"map file {str(path)!r} does not exist")
        return _rows_of(path.read_text())
    if not isinstance(map, str):
        raise ValueError(f"map must be a list of rows, a string or a path, got {type(map).__name__}")
    if "\n" not in map and _NAME.fullmatch(map):
        path = MAPS_DIR / f"{map}.txt"
        if not path.is_file():
            raise ValueError(f"no built-in map named {map!r}; built-in maps: {', '.join(builtin_maps())}")
        return _rows_of(path.read_text())
    return [line.strip() for line in map.splitlines() if line.strip()]
