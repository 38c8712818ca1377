"""The ``mp/`` ids, registered when ``envs`` is imported: the gridworlds below and the PyBullet
scenes of :mod:`envs.bullet`; and the checks the environments run on their keyword arguments, so
that ``--option size=abc`` ends in one line that names the argument (see :func:`make_env`)."""

from __future__ import annotations

import ast
import inspect
import math
import re
from collections.abc import Collection, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

GRIDWORLD = "envs.gridworld:GridWorldEnv"

# id -> (entry point, max_episode_steps, kwargs)
ENVIRONMENTS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "mp/GridWorld-v0": (GRIDWORLD, 100, dict(map="gridworld", step_reward=-1.0, goal_reward=10.0, hole_reward=-10.0)),
    "mp/CliffWalking-v0": (GRIDWORLD, 500, dict(map="cliff", step_reward=-1.0, goal_reward=-1.0, cliff_reward=-100.0, gamma=1.0)),
    "mp/FrozenLake8x8-v0": (GRIDWORLD, 200, dict(map="frozenlake8x8", slip=2.0 / 3.0, step_reward=0.0, goal_reward=1.0, hole_reward=0.0)),
    "mp/WindyGridWorld-v0": (GRIDWORLD, 1000, dict(map="windy", step_reward=-1.0, goal_reward=-1.0, gamma=1.0)),
    "mp/FourRooms-v0": (GRIDWORLD, 500, dict(map="fourrooms", step_reward=0.0, goal_reward=1.0)),
    "mp/Maze-v0": ("envs.maze:MazeEnv", 1000, {}),
}


def all_environments() -> dict[str, tuple[str, int, dict[str, Any]]]:
    """Every ``mp/`` id: the gridworlds of :data:`ENVIRONMENTS` and the PyBullet scenes."""
    from envs.bullet import BULLET_ENVIRONMENTS

    return {**ENVIRONMENTS, **BULLET_ENVIRONMENTS}


def register_envs() -> None:
    """Register every id of :func:`all_environments` (idempotent; PyBullet loads only when one is made)."""
    for env_id, (entry_point, steps, kwargs) in all_environments().items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=steps, kwargs=kwargs)


def parse_env_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``["size=30", "slip=0.2", "map=cliff"]`` -> ``{"size": 30, "slip": 0.2, "map": "cliff"}``.

    Values are Python literals where they parse as one, strings otherwise.
    """
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"environment option {item!r} must look like key=value, e.g. size=30")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` with the ``mp/`` ids registered and clear errors: an unknown id, or a keyword
    argument the environment does not take, is a one-line ``ValueError`` listing the alternatives."""
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as err:  # NameNotFound, VersionNotFound, DeprecatedEnv, ...
        ours = ", ".join(all_environments())
        raise ValueError(f"cannot make environment {env_id!r}: {err} (this package registers: {ours})") from err
    except TypeError as err:
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        if unexpected is None:
            raise  # a bug inside the constructor, not a bad option: keep its traceback
        accepted = ", ".join(accepted_keywords(gym.spec(env_id).entry_point)) or "none"
        raise ValueError(f"environment {env_id!r} got an unexpected keyword argument {unexpected.group(1)!r}; "
                         f"it accepts: {accepted}") from None


def accepted_keywords(entry_point: Any) -> list[str]:
    """The keyword arguments an environment constructor (a class, a function or an ``"module:attr"``
    string) accepts, following ``**kwargs`` that a subclass passes on to its base class."""
    if isinstance(entry_point, str):
        entry_point = gym.envs.registration.load_env_creator(entry_point)
    if inspect.isclass(entry_point):
        chain = [c.__init__ for c in inspect.getmro(entry_point) if "__init__" in vars(c)]
    else:
        chain = [entry_point]
    names: list[str] = []
    for function in chain:
        parameters = list(inspect.signature(function).parameters.values())
        names += [q.name for q in parameters if q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY) and q.name != "self"
                  and q.name not in names]
        if not any(q.kind == q.VAR_KEYWORD for q in parameters):
            break
    return names


# ---------------------------------------------------------------------- argument checks of the environments
def check_integer(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an int; ``ValueError`` unless it is an integer (not a bool) ``>= minimum``."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
                 positive: bool = False, unit: str = "") -> float:
    """``value`` as a float; ``ValueError`` unless it is a finite real number (not a bool) in
    ``[low, high]``, and ``> 0`` when ``positive``. ``unit`` is named in the message."""
    if positive:
        what = "a positive number"
    elif math.isfinite(low) and math.isfinite(high):
        what = f"a number in [{low:g}, {high:g}]"
    else:
        what = "a finite number"
    what += f" ({unit})" if unit else ""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    x = float(value)
    if not math.isfinite(x) or (positive and x <= 0):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if not low <= x <= high:
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got {value!r}")
    return x


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; ``ValueError`` unless it is ``True`` or ``False`` (a string such as "hello" is not)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` itself; ``ValueError`` naming the ``choices`` unless it is one of them."""
    if not isinstance(value, (str, type(None))) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def discrete_action(action: Any, n: int) -> int:
    """``action`` as an int; ``ValueError`` unless it is an integer scalar (a Python int or a 0-d numpy
    integer, not a bool or a float such as 2.0) in ``[0, n)``, as ``gymnasium.spaces.Discrete(n)`` demands."""
    a = np.asarray(action) if isinstance(action, (int, np.integer, np.ndarray)) else None
    if a is None or a.shape != () or not np.issubdtype(a.dtype, np.integer) or not 0 <= int(a) < n:
        raise ValueError(f"action must be an integer in [0, {n}), got {action!r}")
    return int(a)
