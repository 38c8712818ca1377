"""Per-episode schedules for the step size ``alpha`` and the exploration rate ``epsilon`` (notes §11.2).

The notes use a fixed learning rate ``alpha`` and a fixed ``epsilon`` for the epsilon-greedy policy;
in practice both are often annealed over episodes (GLIE exploration: ``epsilon -> 0``). A schedule is
any callable ``episode -> value``; the three dataclasses here cover the usual cases and have a
one-line text form for the command line and for saved agents:

* ``"0.1"``                  -> :class:`Constant` ``(0.1)``
* ``"linear:1.0:0.05:400"``  -> :class:`Linear` ``(start=1.0, end=0.05, episodes=400)``
* ``"exp:1.0:0.01:0.99"``    -> :class:`Exponential` ``(start=1.0, end=0.01, decay=0.99)``
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

SCHEDULE_FORMS = '"<value>", "linear:<start>:<end>:<episodes>", "exp:<start>:<end>:<decay>"'


@runtime_checkable
class Schedule(Protocol):
    """A value that depends on the (0-based) episode index."""

    def __call__(self, episode: int) -> float: ...


def _check_finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")


@dataclass(frozen=True)
class Constant:
    """The same value in every episode."""

    value: float
    """The value returned for every episode."""

    def __post_init__(self) -> None:
        _check_finite(value=self.value)

    def __call__(self, episode: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class Linear:
    """Linear interpolation from ``start`` (episode 0) to ``end`` (episode ``episodes``), then flat."""

    start: float
    """Value at episode 0."""
    end: float
    """Value from episode ``episodes`` on."""
    episodes: int
    """Number of episodes the interpolation takes; must be positive."""

    def __post_init__(self) -> None:
        _check_finite(start=self.start, end=self.end)
        if self.episodes <= 0:
            raise ValueError(f"episodes must be a positive integer, got {self.episodes}")

    def __call__(self, episode: int) -> float:
        fraction = min(max(episode, 0) / self.episodes, 1.0)
        return float(self.start + (self.end - self.start) * fraction)


@dataclass(frozen=True)
class Exponential:
    """Geometric decay ``start * decay**episode``, floored at ``end``."""

    start: float
    """Value at episode 0."""
    end: float
    """Floor: the value never drops below it."""
    decay: float
    """Factor per episode, in ``(0, 1]``."""

    def __post_init__(self) -> None:
        _check_finite(start=self.start, end=self.end, decay=self.decay)
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must lie in (0, 1], got {self.decay}")

    def __call__(self, episode: int) -> float:
        return float(max(self.start * self.decay ** max(episode, 0), self.end))


def as_schedule(value: float | Schedule) -> Schedule:
    """Wrap a plain number in :class:`Constant`; return a schedule unchanged."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Constant(float(value))
    if callable(value):
        return value
    raise TypeError(f"expected a number or a Schedule, got {type(value).__name__}: {value!r}")


def parse_schedule(text: str) -> Schedule:
    """Parse the command-line form of a schedule (see the module docstring).

    Raises:
        ValueError: naming ``text`` and the accepted forms when it matches none of them.
    """
    fields = text.strip().split(":")
    kind, args = fields[0].lower(), fields[1:]
    try:
        if len(fields) == 1:
            return Constant(float(fields[0]))
        if kind == "linear" and len(args) == 3:
            return Linear(float(args[0]), float(args[1]), int(args[2]))
        if kind == "exp" and len(args) == 3:
            return Exponential(float(args[0]), float(args[1]), float(args[2]))
        cause = f"unknown kind {kind!r} or wrong number of fields ({len(args)})"
    except ValueError as error:
        cause = str(error)
    raise ValueError(f"cannot parse schedule {text!r} ({cause}); accepted forms: {SCHEDULE_FORMS}")


def format_schedule(schedule: Schedule) -> str:
    """The text form of a schedule, the inverse of :func:`parse_schedule`.

    Raises:
        ValueError: for a schedule that is not :class:`Constant`, :class:`Linear` or
            :class:`Exponential`, which has no text form.
    """
    if isinstance(schedule, Constant):
        return repr(float(schedule.value))
    if isinstance(schedule, Linear):
        return f"linear:{float(schedule.start)!r}:{float(schedule.end)!r}:{int(schedule.episodes)}"
    if isinstance(schedule, Exponential):
        return f"exp:{float(schedule.start)!r}:{float(schedule.end)!r}:{float(schedule.decay)!r}"
    raise ValueError(f"schedule {schedule!r} has no text form; use Constant, Linear or Exponential to save it")
