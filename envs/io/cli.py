"""Running a package's command line: commands generated from dataclasses and registries (tyro), a
``ValueError`` (bad input) ends the run with one line and no traceback, and summaries print as one
JSON object (``--json``) or as aligned ``key: value`` lines."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn, Union


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


def subcommands(classes: dict[str, type]) -> Any:
    """A union of dataclasses as tyro subcommands named by the keys, each described by its docstring."""
    import tyro

    return Union[tuple(Annotated[cls, tyro.conf.subcommand(name, description=cls.__doc__)]  # noqa: UP007
                       for name, cls in classes.items())]


def config_command(name: str, base: type, config: type, summary: str, module: str, fields: Sequence[tuple] = (),
                   **classvars: Any) -> type:
    """A command dataclass ``base`` + ``fields`` + a ``config: <config>`` field (its options become
    ``--config.*``), documented by ``summary``; ``classvars`` (e.g. the registry name) go on the class."""
    import tyro

    cls = dataclasses.make_dataclass(
        "".join(part.title() for part in name.replace("-", " ").split()) + base.__name__.removesuffix("Args"),
        [*fields, ("config", Annotated[config, tyro.conf.arg(help=f"{name}: hyperparameters.")],
                   dataclasses.field(default_factory=config))],
        bases=(base,), namespace={**classvars, "__module__": module},
    )
    cls.__doc__ = summary
    return cls


def parse(commands: dict[str, type], argv: Sequence[str] | None, prog: str, description: str) -> Any:
    """Parse ``argv`` into one of ``commands`` (name -> dataclass), with tyro."""
    import tyro

    spec = Union[tuple(Annotated[cls, tyro.conf.subcommand(name)] for name, cls in commands.items())]  # noqa: UP007
    return tyro.cli(spec, args=argv, prog=prog, config=(tyro.conf.OmitSubcommandPrefixes,), description=description)
