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

Wind digits are the ASCII digits ``0-9`` only (``'²'`` or ``'٣'`` are unknown characters). A first
line made only of digits is a wind header: one strength per column, applied to every row of that
column (a digit cell overrides it). Rows and columns in error messages count from 0, the header
not included.

Where a map comes from (:func:`load_map`): a list of rows, or a string. A string with a line
break is the map itself. A one-line string is a *file path* when it contains a path separator
(``/`` or ``\\``) or ends in a file suffix (a dot followed by letters and digits, at least one of
them other than the map characters ``S G H C 0-9``: ``.txt``, ``.map``, ``.png``, but not the
``.G`` of the one-row map ``S.G``); a path must name an existing ``.txt`` file. Any other one-line
string is the name of a built-in map (lower case letters, digits, ``-`` and ``_``, e.g. ``cliff``)
when it looks like one, else a one-row map (``"S..G"``). A ``pathlib.Path`` is always a path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CELL_TYPES = "SG#HC."
WIND_DIGITS = "0123456789"  # ASCII only: str.isdigit() also accepts '²', which int() cannot read
MAPS_DIR = Path(__file__).resolve().parent.parent / "assets" / "maps"
_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_SUFFIX = re.compile(r"\.([A-Za-z0-9]+)$")

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

    A one-line string is a path when it contains ``/`` or ``\\`` or ends in a file suffix such as
    ``.txt`` (see the module docstring for the exact rule); a path must name an existing ``.txt`` file.

    Raises:
        ValueError: naming the problem: an unknown character (with its row, column and the
            character), rows of different lengths, no start cell, a wind header of the wrong length,
            a missing file, a file that is not ``.txt``.
    """
    rows = _rows_of(map)
    if not rows:
        raise ValueError("map is empty: expected at least one row of cells")
    header = None
    if len(rows) > 1 and _is_wind(rows[0]):
        header, rows = rows[0], rows[1:]
    for r, row in enumerate(rows):  # characters first: a stray one also makes its row the wrong length
        for c, ch in enumerate(row):
            if ch not in CELL_TYPES and ch not in WIND_DIGITS:
                raise ValueError(
                    f"unknown map character {ch!r} at row {r}, column {c}; "
                    f"expected one of S G # H C . or an ASCII wind digit 0-9"
                )
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
    digits = np.isin(grid, list(WIND_DIGITS))
    wind[digits] = grid[digits].astype(np.int64)
    grid[digits] = "."
    if not (grid == "S").any():
        raise ValueError("map has no start cell 'S'")
    return GridMap(cells=grid, wind=wind)


def looks_like_path(text: str) -> bool:
    """Whether a one-line ``map`` string names a file (the rule of the module docstring)."""
    if "\n" in text.strip():
        return False
    if "/" in text or "\\" in text:
        return True
    suffix = _SUFFIX.search(text.strip())
    return suffix is not None and not set(suffix.group(1)) <= set("SGHC" + WIND_DIGITS)


def _is_wind(row: str) -> bool:
    return bool(row) and all(ch in WIND_DIGITS for ch in row)


def _rows_of(map: MapLike) -> list[str]:  # noqa: A002
    if isinstance(map, (list, tuple)):
        if not all(isinstance(r, str) for r in map):
            raise ValueError("map given as a list must contain strings, one per row")
        return [r.strip() for r in map if r.strip()]
    if isinstance(map, os.PathLike) or (isinstance(map, str) and looks_like_path(map)):
        path = Path(map)
        if path.suffix.lower() != ".txt":
            raise ValueError(f"map file {str(path)!r} must be a .txt file of map rows, got suffix {path.suffix or 'none'!r}")
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
