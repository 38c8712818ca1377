"""An environment's state as plain data, so that a checkpoint can hold a live environment without pickling it.

:func:`env_state` walks the wrapper chain from the outside in and returns a dict of plain data: dicts
with string keys, lists, ``str``, ``int``, ``float``, ``bool``, ``None``, numpy arrays and numpy
scalars (a generator's ``bit_generator.state``, a dict with big ints, included). :func:`load_env_state`
puts it back into an environment built the same way (same id, keyword arguments and wrappers), which
then continues exactly as the original would have: the same observations, rewards and episode ends.
A checkpoint layer may turn the arrays into tensors and the numpy scalars into Python numbers on
the way (``envs.io.checkpoint`` does): :func:`load_env_state` takes them back as they come.

What each layer contributes:

* The wrappers that keep state between steps have a handler in :data:`WRAPPER_STATE`: ``TimeLimit``
  (elapsed steps), ``OrderEnforcing`` (has reset), ``PassiveEnvChecker`` (which one-off checks ran),
  ``RecordEpisodeStatistics`` (running return and length, the last episodes' statistics, and the time
  the episode has run so far: a restored episode goes on from ``now - that time``), ``FrameStackObservation``
  (the stacked observations), ``Autoreset``, ``TimeAwareObservation``, ``StickyAction``,
  ``NormalizeObservation`` and ``NormalizeReward``. The wrappers in :data:`STATELESS_WRAPPERS` keep none.
  Any other wrapper is refused with a ``ValueError``: add an entry to :data:`WRAPPER_STATE` (or its
  class to :data:`STATELESS_WRAPPERS`) to allow it.
* An environment that defines both ``get_state() -> dict`` and ``set_state(dict)`` (the ``mp/`` ids)
  gives its own state.
* Any other environment (Gymnasium's CartPole-v1, FrozenLake-v1, Taxi-v4, CliffWalking-v1, Acrobot-v1)
  is captured by a generic rule, see :func:`generic_state`.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import wrappers

MAX_ARRAY_SIZE = 100_000
"""Arrays with more elements than this are not captured by the generic rule: it refuses them."""

TUPLE = "__tuple__"
"""Key of the one-entry dict that stands for a tuple (the plain-data format has lists only)."""

Getter = Callable[[Any], dict[str, Any]]
Setter = Callable[[Any, dict[str, Any]], None]


# ---------------------------------------------------------------------- plain data
def encode(value: Any, where: str) -> Any:
    """``value`` as plain data (copied); tuples become ``{TUPLE: [...]}``. ``ValueError`` naming
    ``where`` for anything else (an object, a dict with non-string keys)."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return value.item() if isinstance(value, (np.str_, np.bytes_)) else value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ValueError(f"cannot capture {where}: an array of Python objects")
        return value.copy()
    if isinstance(value, (list, deque)):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {TUPLE: [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise ValueError(f"cannot capture {where}: a {type(value).__name__} is not plain data")


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`; arrays (or tensors a checkpoint layer made of them) become numpy arrays."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return value
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {TUPLE}:
            return tuple(decode(v) for v in value[TUPLE])
        return {k: decode(v) for k, v in value.items()}
    return np.array(value)  # a numpy array, or a CPU tensor made from one


def np_random_state(env: gym.Env) -> dict[str, Any]:
    """``env.np_random``'s bit-generator state (``None`` before the first seeding) and ``env.np_random_seed``."""
    rng = env._np_random  # not env.np_random: reading the property would seed a fresh generator
    return {"bit_generator": None if rng is None else copy.deepcopy(rng.bit_generator.state),
            "seed": getattr(env, "_np_random_seed", None)}


def set_np_random_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Undo :func:`np_random_state`: the generator continues with the same draws."""
    env._np_random = None if state["bit_generator"] is None else generator_from(state["bit_generator"], env._np_random)
    env._np_random_seed = state["seed"]


def generator_from(state: dict[str, Any], rng: np.random.Generator | None = None) -> np.random.Generator:
    """``rng`` (or a new generator of the right kind) with its bit generator set to ``state``."""
    if rng is None or type(rng.bit_generator).__name__ != state["bit_generator"]:
        rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    rng.bit_generator.state = state
    return rng


# ---------------------------------------------------------------------- wrappers
def _attributes(*names: str) -> tuple[Getter, Setter]:
    """A handler for a wrapper whose state is a few plain attributes."""
    def get(w: Any) -> dict[str, Any]:
        return {name: encode(getattr(w, name), f"{type(w).__name__}.{name}") for name in names}

    def put(w: Any, state: dict[str, Any]) -> None:
        for name in names:
            setattr(w, name, decode(state[name]))
    return get, put


def _time_limit_get(w: wrappers.TimeLimit) -> dict[str, Any]:
    return {"elapsed_steps": w._elapsed_steps, "max_episode_steps": w._max_episode_steps}


def _time_limit_set(w: wrappers.TimeLimit, state: dict[str, Any]) -> None:
    if state["max_episode_steps"] != w._max_episode_steps:
        raise ValueError(f"the state was taken under TimeLimit(max_episode_steps={state['max_episode_steps']}), "
                         f"this environment has max_episode_steps={w._max_episode_steps}")
    w._elapsed_steps = state["elapsed_steps"]


def _checker_get(w: wrappers.PassiveEnvChecker) -> dict[str, Any]:
    return {name: getattr(w, name) for name in ("checked_reset", "checked_step", "checked_render", "close_called")}


def _checker_set(w: wrappers.PassiveEnvChecker, state: dict[str, Any]) -> None:
    """The flags of the one-off checks; the check that two calls return distinct objects is marked done
    (it compares against data of the original's last call, which is not part of the state)."""
    w.checked_reset, w.checked_render, w.close_called = state["checked_reset"], state["checked_render"], state["close_called"]
    w.checked_step = bool(state["checked_step"]) or w._previous_data is None
    w.checked_data_reuse = True
    if w.checked_step:
        w._previous_data = None


def _statistics_get(w: wrappers.RecordEpisodeStatistics) -> dict[str, Any]:
    running = None if w.episode_start_time < 0 else time.perf_counter() - w.episode_start_time
    return {"episode_count": w.episode_count, "episode_returns": encode(w.episode_returns, "episode_returns"),
            "episode_lengths": w.episode_lengths, "episode_time": running,
            "time_queue": list(w.time_queue), "return_queue": encode(w.return_queue, "return_queue"),
            "length_queue": list(w.length_queue)}


def _statistics_set(w: wrappers.RecordEpisodeStatistics, state: dict[str, Any]) -> None:
    w.episode_count, w.episode_lengths = state["episode_count"], state["episode_lengths"]
    w.episode_returns = decode(state["episode_returns"])
    w.episode_start_time = -1 if state["episode_time"] is None else time.perf_counter() - state["episode_time"]
    for name in ("time_queue", "return_queue", "length_queue"):
        queue: deque = getattr(w, name)
        queue.clear()
        queue.extend(decode(state[name]))


def _frames_get(w: wrappers.FrameStackObservation) -> dict[str, Any]:
    return {"obs_queue": encode(w.obs_queue, "FrameStackObservation.obs_queue"),
            "padding_value": encode(w.padding_value, "FrameStackObservation.padding_value")}


def _frames_set(w: wrappers.FrameStackObservation, state: dict[str, Any]) -> None:
    if len(state["obs_queue"]) != w.stack_size:
        raise ValueError(f"the state stacks {len(state['obs_queue'])} observations, this FrameStackObservation {w.stack_size}")
    w.obs_queue.clear()
    w.obs_queue.extend(decode(state["obs_queue"]))
    w.padding_value = decode(state["padding_value"])


def _running_moments(attribute: str, *extra: str) -> tuple[Getter, Setter]:
    """A handler for the normalising wrappers: their ``RunningMeanStd`` and ``extra`` attributes."""
    get_extra, set_extra = _attributes(*extra)

    def get(w: Any) -> dict[str, Any]:
        rms = getattr(w, attribute)
        return {"mean": encode(rms.mean, "mean"), "var": encode(rms.var, "var"), "count": rms.count, **get_extra(w)}

    def put(w: Any, state: dict[str, Any]) -> None:
        rms = getattr(w, attribute)
        rms.mean, rms.var, rms.count = decode(state["mean"]), decode(state["var"]), state["count"]
        set_extra(w, state)
    return get, put


WRAPPER_STATE: dict[type, tuple[Getter, Setter]] = {
    wrappers.TimeLimit: (_time_limit_get, _time_limit_set),
    wrappers.OrderEnforcing: _attributes("_has_reset"),
    wrappers.PassiveEnvChecker: (_checker_get, _checker_set),
    wrappers.RecordEpisodeStatistics: (_statistics_get, _statistics_set),
    wrappers.FrameStackObservation: (_frames_get, _frames_set),
    wrappers.Autoreset: _attributes("autoreset"),
    wrappers.TimeAwareObservation: _attributes("timesteps"),
    wrappers.StickyAction: _attributes("last_action", "is_sticky_actions", "num_repeats", "repeats_taken"),
    wrappers.NormalizeObservation: _running_moments("obs_rms", "_update_running_mean"),
    wrappers.NormalizeReward: _running_moments("return_rms", "discounted_reward", "_update_running_mean"),
}
"""Wrapper class -> ``(get, set)`` of its state between steps (the exact class: a subclass may add state)."""

STATELESS_WRAPPERS: set[type] = {
    wrappers.ClipAction, wrappers.RescaleAction, wrappers.TransformAction, wrappers.DiscretizeAction,
    wrappers.FlattenObservation, wrappers.FilterObservation, wrappers.TransformObservation,
    wrappers.DtypeObservation, wrappers.ReshapeObservation, wrappers.RescaleObservation,
    wrappers.GrayscaleObservation, wrappers.ResizeObservation, wrappers.DiscretizeObservation,
    wrappers.AddRenderObservation, wrappers.MaxAndSkipObservation, wrappers.RepeatAction,
    wrappers.ClipReward, wrappers.TransformReward,
}
"""Wrappers whose ``step`` and ``reset`` change nothing in them (``MaxAndSkipObservation``'s buffer is rewritten every step)."""


# ---------------------------------------------------------------------- the base environment
_SKIPPED = {"spec", "render_mode", "metadata", "_np_random", "_np_random_seed"}


def _kind(value: Any) -> str:
    """How the generic rule treats an attribute: ``"plain"`` (captured), ``"generator"`` (its bit-generator
    state is captured), ``"fixed"`` (taken as fixed at construction or used only for drawing: skipped)
    or ``"refused"``."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return "plain"
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            return "plain" if value.size <= MAX_ARRAY_SIZE else "refused"
        return "fixed" if value.dtype.kind in "SU" else "refused"  # text: a map such as FrozenLake's `desc`
    if isinstance(value, np.random.Generator):
        return "generator"
    if isinstance(value, (list, tuple)):
        kinds = {_kind(v) for v in value}
        return "refused" if "refused" in kinds else "plain" if kinds <= {"plain"} else "fixed"
    if isinstance(value, (dict, gym.Space, gym.envs.registration.EnvSpec)) or callable(value):
        return "fixed"
    if type(value).__module__.split(".")[0] == "pygame":  # rendering handles (screen, clock, sprites)
        return "fixed"
    return "refused"


def generic_state(env: gym.Env) -> dict[str, Any]:
    """The state of an environment that has no ``get_state``, by a rule that fits Gymnasium's own.

    Captured: ``np_random`` (bit-generator state and seed), every other ``numpy.random.Generator``
    attribute, and every instance attribute that holds plain data: ``None``, numbers, strings, numpy
    scalars, numeric arrays of at most :data:`MAX_ARRAY_SIZE` elements, and lists or tuples of these
    (CartPole's ``state`` and ``steps_beyond_terminated``, FrozenLake's ``s`` and ``lastaction``).
    Skipped as fixed at construction: dicts (the toy-text ``P`` tables, image caches), spaces, the spec,
    callables, text arrays (FrozenLake's ``desc``), lists holding such things, and pygame objects
    (rendering). ``render_mode`` is left as the receiving environment has it.
    Refused with a ``ValueError`` naming the attribute: anything else (a physics engine's handle, an
    object array, a bigger array), since its state cannot be read as plain data; give such an
    environment ``get_state``/``set_state`` methods.
    """
    attributes: dict[str, Any] = {}
    generators: dict[str, Any] = {}
    for name, value in vars(env).items():
        if name in _SKIPPED:
            continue
        kind = _kind(value)
        if kind == "refused":
            size = f" with {value.size} elements" if isinstance(value, np.ndarray) else ""
            raise ValueError(
                f"cannot capture the state of {type(env).__name__}: attribute {name!r} holds a "
                f"{type(value).__name__}{size}, which is not plain data; give the environment get_state() and set_state()"
            )
        if kind == "plain":
            attributes[name] = encode(value, f"{type(env).__name__}.{name}")
        elif kind == "generator":
            generators[name] = copy.deepcopy(value.bit_generator.state)
    return {"np_random": np_random_state(env), "attributes": attributes, "generators": generators}


def set_generic_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Undo :func:`generic_state`."""
    set_np_random_state(env, state["np_random"])
    for name, value in state["attributes"].items():
        setattr(env, name, decode(value))
    for name, value in state["generators"].items():
        setattr(env, name, generator_from(value, getattr(env, name, None)))


def _has_own_state(env: gym.Env) -> bool:
    return callable(getattr(env, "get_state", None)) and callable(getattr(env, "set_state", None))


# ---------------------------------------------------------------------- public API
def _layers(env: gym.Env) -> tuple[list[gym.Wrapper], gym.Env]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain, env


def _name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _chain_text(names: list[str]) -> str:
    return " > ".join(n.rsplit(".", 1)[-1] for n in names)


def env_state(env: gym.Env) -> dict[str, Any]:
    """The state of ``env`` and its wrappers as plain data (see the module docstring for what is held).

    Raises:
        ValueError: naming the wrapper or attribute that cannot be captured.
    """
    chain, base = _layers(env)
    layers = []
    for w in chain:
        if type(w) in WRAPPER_STATE:
            layers.append({"type": _name(w), "state": WRAPPER_STATE[type(w)][0](w)})
        elif type(w) in STATELESS_WRAPPERS:
            layers.append({"type": _name(w), "state": {}})
        else:
            raise ValueError(f"cannot capture the state of wrapper {type(w).__name__}: add (get, set) for it to "
                             "envs.state.WRAPPER_STATE, or its class to envs.state.STATELESS_WRAPPERS if it keeps no state")
    own = base.get_state() if _has_own_state(base) else generic_state(base)
    return {"wrappers": layers, "env": {"type": _name(base), "state": encode(own, type(base).__name__)}}


def load_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Put a state from :func:`env_state` into ``env``, built the same way as the one it came from.

    Raises:
        ValueError: when the environment class or the wrapper chain differ from the state's.
    """
    chain, base = _layers(env)
    ours = [_name(w) for w in chain] + [_name(base)]
    theirs = [layer["type"] for layer in state["wrappers"]] + [state["env"]["type"]]
    if ours != theirs:
        raise ValueError(f"state is of {_chain_text(theirs)}, but the environment is {_chain_text(ours)}")
    for w, layer in zip(chain, state["wrappers"]):
        if type(w) in WRAPPER_STATE:
            WRAPPER_STATE[type(w)][1](w, layer["state"])
    if _has_own_state(base):
        base.set_state(decode(state["env"]["state"]))
    else:
        set_generic_state(base, state["env"]["state"])
