"""PyBullet environments: a cart-pole and a two-link reacher, from state or from pixels.

The ids live in :data:`BULLET_ENVIRONMENTS` (same format as :data:`envs.registration.ENVIRONMENTS`).
This module does not import PyBullet (an optional extra, ``pip install machine-perception[bullet]``):
the classes load on first use, so the ids can be registered without it.
"""

from __future__ import annotations

import importlib
from typing import Any

# id -> (entry point, max_episode_steps, kwargs)
BULLET_ENVIRONMENTS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "mp/BulletCartPole-v0": ("envs.bullet.cartpole:BulletCartPoleEnv", 500, {}),
    "mp/BulletReacher-v0": ("envs.bullet.reacher:BulletReacherEnv", 50, {}),
}

_LAZY = {
    "BulletEnv": "envs.bullet.base", "Camera": "envs.bullet.base",
    "BulletCartPoleEnv": "envs.bullet.cartpole", "cartpole_accelerations": "envs.bullet.cartpole",
    "BulletReacherEnv": "envs.bullet.reacher", "ScriptedReacher": "envs.bullet.reacher",
    "forward_kinematics": "envs.bullet.reacher", "inverse_kinematics": "envs.bullet.reacher",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [  # noqa: PLE0604 - the lazily loaded names are strings too
    "BULLET_ENVIRONMENTS", *_LAZY,
]
