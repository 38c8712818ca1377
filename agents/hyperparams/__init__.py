"""Hyperparameters per environment, RL Zoo style: ``agents/hyperparams/<agent>.yml`` maps environment ids
to overrides of the agent's config dataclass, and every entry says in a comment where its numbers come from.

``python -m agents train <agent> --env ID`` resolves the config in this order, each step overriding the
one before (:func:`resolve`):

1. the config dataclass's defaults;
2. the entry for ``ID`` in ``<agent>.yml`` (none: the defaults stay, and a note says so);
3. the ``--config.*`` options given on the command line (and ``--gamma``);
4. ``--hyperparams key=value ...``, values read as YAML (``learning_rate=0.001``, ``hidden=[64,64]``).

The files are read with ``yaml.safe_load`` and checked against the dataclass: an unknown key, or a value
of the wrong type, is one line naming the file, the id and the key. Numbers that PyYAML reads as
strings (YAML 1.1 wants ``1.0e-3``, not ``1e-3``) are taken as the numbers they spell.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

Config = TypeVar("Config")

DIRECTORY = Path(__file__).resolve().parent
"""Where the shipped ``<agent>.yml`` files live."""

_NUMBER = re.compile(r"[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?")


class Resolved(NamedTuple):
    """A config and where its values came from (what ``config.json`` records)."""

    config: Any
    """The config dataclass, every override applied."""
    file: Path | None
    """The YAML file whose entry was applied; None when it has no entry for the environment."""
    yaml: dict[str, Any]
    """The overrides of that entry (JSON-ready values)."""
    command_line: dict[str, Any]
    """The overrides given on the command line, ``--config.*`` then ``--hyperparams`` (JSON-ready values)."""


def hyperparams_file(agent: str, directory: Path | None = None) -> Path:
    """The YAML file of ``agent`` (its name in :mod:`agents.registry`) in ``directory`` (default :data:`DIRECTORY`),
    e.g. ``agents/hyperparams/dqn.yml``."""
    return Path(directory or DIRECTORY) / f"{agent}.yml"


def shown(path: Path) -> str:
    """``path`` as config.json records it: relative to the repository for the shipped files, else as given."""
    try:
        return str(Path(path).resolve().relative_to(DIRECTORY.parents[1]))
    except ValueError:
        return str(path)


def as_numbers(value: Any) -> Any:
    """``value`` with strings that spell a number (``"1e-3"``) turned into that number, in lists too."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value)
        return int(number) if number.is_integer() and not re.search(r"[.eE]", value) else number
    if isinstance(value, list):
        return [as_numbers(v) for v in value]
    return value


def load_table(path: Path) -> dict[str, dict[str, Any]]:
    """The entries of one YAML file: environment id -> overrides (an empty entry is ``{}``).

    Read with ``yaml.safe_load``; a file that is not a mapping of ids to mappings is one ``ValueError`` line.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        reason = " ".join(str(err).split())
        raise ValueError(f"{path} is not valid YAML: {reason[:200]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must map environment ids to hyperparameters, got a {type(data).__name__}")  # noqa: TRY004
    table: dict[str, dict[str, Any]] = {}
    for env_id, entry in data.items():
        if entry is None:
            entry = {}
        if not isinstance(env_id, str) or not isinstance(entry, dict) or not all(isinstance(k, str) for k in entry):
            raise ValueError(f"{path}: entry {env_id!r} must map field names to values, got {entry!r}")
        table[env_id] = {key: as_numbers(value) for key, value in entry.items()}
    return table


def apply_overrides(config: Config, overrides: Mapping[str, Any], where: str) -> Config:
    """``config`` (a dataclass) with ``overrides`` (field name -> JSON-like value) applied and type-checked.

    An unknown field or a value of the wrong type is a one-line ``ValueError`` starting with ``where``.
    """
    from envs.io.config import from_jsonable, to_jsonable

    cls = type(config)
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"config must be a config dataclass, got {config!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in overrides if key not in known]
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} for {cls.__name__} (its fields: {', '.join(known)})")
    return from_jsonable(cls, {**to_jsonable(config), **overrides}, where)


def parse_overrides(items: Sequence[str], where: str = "--hyperparams") -> dict[str, Any]:
    """``["learning_rate=0.001", "hidden=[64,64]", "double=true"]`` -> ``{"learning_rate": 0.001, ...}``.

    Each value is read as YAML (a scalar or a flow list); ``hidden=64,64`` is read as a list too.
    """
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise ValueError(f"{where}: {item!r} must look like key=value, e.g. learning_rate=0.001")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise ValueError(f"{where}: cannot read the value of {item!r} as YAML") from None
        if isinstance(value, str) and "," in value:  # hidden=64,64
            value = [as_numbers(part.strip()) for part in value.split(",")]
        overrides[key] = as_numbers(value)
    return overrides


def given_options(argv: Sequence[str]) -> set[str]:
    """The options named in a command line ``argv``, as dotted field paths: ``--config.learning-rate=0.1`` ->
    ``config.learning_rate``, ``--seed`` -> ``seed``; tyro's ``--config.no-X`` flags give ``config.no_X``."""
    return {token[2:].partition("=")[0].replace("-", "_") for token in argv if token.startswith("--") and len(token) > 2}


def given_values(config: Any, given: Collection[str] | None) -> dict[str, Any]:
    """The fields of ``config`` that ``--config.*`` options in ``given`` (:func:`given_options`) set, with their
    (JSON-ready) values. ``given=None`` (a call from Python): the fields that differ from their defaults."""
    from envs.io.config import to_jsonable

    values = to_jsonable(config)
    if given is None:
        defaults = to_jsonable(type(config)())
        return {k: v for k, v in values.items() if v != defaults[k]}
    fields: dict[str, Any] = {}
    for option in sorted(given):
        if not option.startswith("config."):
            continue
        name = option.removeprefix("config.")
        if name not in values and name.startswith("no_"):  # --config.no-double sets double
            name = name[3:]
        if name in values:
            fields[name] = values[name]
    return fields


def yaml_entry(agent: str, env_id: str, directory: Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """``(file, overrides)`` of ``agent``'s YAML entry for ``env_id``; ``(None, {})`` when it has none."""
    path = hyperparams_file(agent, directory)
    if not path.is_file():
        return None, {}
    table = load_table(path)
    return (path, table[env_id]) if env_id in table else (None, {})


def resolve(agent: str, env_id: str, config_cls: type[Config], explicit: Mapping[str, Any] | None = None,
            hyperparams: Sequence[str] = (), directory: Path | None = None, note: bool = True) -> Resolved:
    """The config of ``agent`` on ``env_id``: defaults < YAML entry < ``explicit`` (``--config.*`` options
    given, field -> value) < ``hyperparams`` (``key=value`` strings). ``note`` says on stderr when the
    YAML file has no entry for ``env_id``."""
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise ValueError(f"config_cls must be a config dataclass, got {config_cls!r}")
    from envs.io.config import to_jsonable

    path, entry = yaml_entry(agent, env_id, directory)
    config = config_cls()
    if path is not None:
        config = apply_overrides(config, entry, f"{shown(path)} [{env_id}]")
    elif note:
        print(f"note: {shown(hyperparams_file(agent, directory))} has no entry for {env_id}; "
              f"{config_cls.__name__}'s defaults apply", file=sys.stderr)
    command_line = dict(to_jsonable(dict(explicit or {})))
    if command_line:
        config = apply_overrides(config, command_line, "--config")
    given = parse_overrides(hyperparams)
    if given:
        config = apply_overrides(config, given, "--hyperparams")
        command_line.update(given)
    return Resolved(config, path, to_jsonable(entry) if path is not None else {}, command_line)


def tuned_config(agent: str, env_id: str, config_cls: type[Config], directory: Path | None = None) -> Config:
    """``config_cls`` with the YAML entry for ``(agent, env_id)`` applied; the defaults where there is none."""
    return resolve(agent, env_id, config_cls, directory=directory, note=False).config
