"""Tuned hyperparameters, listed once: (agent name, environment id) -> overrides of the agent's config.

The config dataclasses' defaults suit the classic-control tasks they were tuned on (CartPole-v1 for
the policy-gradient agents); an entry here changes only the fields it names, for one environment.
Every entry says where its numbers came from. :func:`tuned_config` builds the config.

``("actor-critic", "mp/BulletReacher-v0")``, for a budget of 200,000 environment steps
    Measured with ``agents.deep.trainer.train`` (``final="best"``, 10 evaluations), greedy returns over
    the 20 episodes with seeds 1-20 (random actions -12.26, scripted controller -3.02; final fingertip
    distance: untuned defaults 167 mm, scripted 0.67 mm); one torch thread, about 18 s per run:

    ====  ==============  ===========  ==============
    seed  greedy return   gap closed   final distance
    ====  ==============  ===========  ==============
    0     -5.76           0.70         106 mm
    1     -5.22           0.76          91 mm
    2     -5.58           0.72          85 mm
    5     -5.71           0.71         103 mm
    ====  ==============  ===========  ==============

    Why these settings. The arm is frictionless and light: one step at full torque spins the elbow to
    26 rad/s, so the observation mixes centimetres (target, fingertip - target, ~0.05) with tens of
    rad/s (velocities); unnormalised, the velocities drown out the target and the best policy the
    network finds ignores it and folds the arm onto the base (the point nearest a random target on
    average). ``normalize_observations`` fixes that. The other failure was a collapse in some seeds:
    a randomly initialised policy output plus PyTorch RMSprop's large first steps (its running mean of
    squared gradients starts at 0) drive the mean action deep into the tanh squashing within ~20
    updates, where the score function carries no signal and the arm spins (returns worse than random).
    ``ortho_init`` (0.01-gain policy output) removed it in the seeds above. Larger batches (16 x 16)
    were the most robust of ~150 runs: smaller ones (4 x 5, 4 x 8) reach -4.4 in some seeds but
    collapse in others; ``lr_decay_steps`` made the last evaluations the best; gamma 0.97 with
    lambda 0.9 beat 0.99/0.95. Not reached at this budget: the fingertip stops 8-11 cm short on
    average (an over-damped policy; 3 cm after 800,000 steps), far from the scripted 0.67 mm.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

Config = TypeVar("Config")

TUNED: dict[tuple[str, str], dict[str, Any]] = {
    ("actor-critic", "mp/BulletReacher-v0"): {
        "n_envs": 16, "n_steps": 16, "optimizer": "rmsprop", "learning_rate": 1.8e-3, "lr_decay_steps": 200_000,
        "gamma": 0.97, "gae_lambda": 0.9, "normalize_advantages": True, "normalize_observations": True,
        "hidden": (128, 128), "log_std_init": -0.5, "max_grad_norm": 5.0, "ortho_init": True,
    },
}
"""(agent name as in :mod:`agents.registry`, environment id) -> config field overrides."""


def tuned_config(agent: str, env_id: str, config_cls: type[Config]) -> Config:
    """``config_cls`` with the overrides :data:`TUNED` lists for ``(agent, env_id)``; the defaults where it has none.

    An override naming a field ``config_cls`` does not have raises ``ValueError`` (a stale table entry).
    """
    if not dataclasses.is_dataclass(config_cls):
        raise ValueError(f"config_cls must be a config dataclass, got {config_cls!r}")
    overrides = TUNED.get((agent, env_id), {})
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(config_cls)})
    if unknown:
        raise ValueError(f"TUNED[{(agent, env_id)!r}] sets {', '.join(unknown)}, which {config_cls.__name__} lacks")
    return config_cls(**overrides)
