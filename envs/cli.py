"""Running a package's command line: a ``ValueError`` (bad input) ends it with one line, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn


def run_main(main: Callable[[], int]) -> NoReturn:
    """``sys.exit(main())``, turning a ``ValueError`` into ``error: <message>`` and exit status 1."""
    try:
        sys.exit(main())
    except ValueError as err:
        sys.exit(f"error: {err}")
