"""Running a package's command line: a ``ValueError`` (bad input) ends it with one line, no traceback;
summaries print as one JSON object (``--json``) or as aligned ``key: value`` lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn


def run_main(main: Callable[[], int]) -> NoReturn:
    """``sys.exit(main())``, turning a ``ValueError`` into ``error: <message>`` and exit status 1."""
    try:
        sys.exit(main())
    except ValueError as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit("interrupted (the last checkpoint, if any, is kept; --resume continues from it)")


def report(summary: dict[str, Any], as_json: bool) -> None:
    """Print a command's summary: one JSON line, or ``key: value`` lines (long lists and dicts abridged)."""
    if as_json:
        print(json.dumps(summary))
        return
    for key, value in summary.items():
        if isinstance(value, (list, dict)):
            text = json.dumps(value)
            value = text if len(text) < 100 else f"[{len(value)} entries]"
        elif isinstance(value, float):
            value = f"{value:.6g}"
        print(f"{key:>20}: {value}")
