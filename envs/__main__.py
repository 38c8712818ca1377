"""``python -m envs list`` and ``python -m envs show ID --out picture.png``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import gymnasium as gym
import imageio.v3 as iio
import tyro

from envs import make_env, parse_env_kwargs
from envs.io import atomic_path
from envs.io.cli import run_main
from envs.registration import all_environments


@dataclass
class List:
    """List the registered mp/ environments with their spaces."""

    json: bool = False
    """Print one JSON object per environment instead of a table."""


@dataclass
class Show:
    """Render the first observation of an environment to a PNG (and print its text map)."""

    env: Annotated[str, tyro.conf.Positional]
    """Environment id, e.g. mp/CliffWalking-v0 (any Gymnasium id with rgb_array rendering works)."""
    out: Path = Path("env.png")
    """Where to write the picture."""
    option: tuple[str, ...] = ()
    """Environment keyword arguments as key=value, e.g. --option size=30 slip=0.1."""
    seed: int = 0
    """Seed of the reset."""


def short(space: object) -> str:
    """``Box(2,) float32`` rather than the full bounds."""
    if isinstance(space, gym.spaces.Box):
        return f"Box{space.shape} {space.dtype}"
    return str(space)


def describe(env_id: str) -> dict[str, object]:
    env = make_env(env_id)
    info = {
        "id": env_id,
        "observation_space": short(env.observation_space),
        "action_space": short(env.action_space),
        "max_episode_steps": env.spec.max_episode_steps if env.spec else None,
        "states": env.unwrapped.mdp.n_states if hasattr(env.unwrapped, "mdp") else None,
    }
    env.close()
    return info


def main(argv: list[str] | None = None) -> int:
    args = tyro.extras.subcommand_cli_from_dict({"list": List, "show": Show}, args=argv, prog="python -m envs")
    if isinstance(args, List):
        rows = [describe(env_id) for env_id in all_environments()]
        if args.json:
            for row in rows:
                print(json.dumps(row))
        else:
            print(f"{'id':<22} {'states':>6}  {'steps':>5}  {'actions':<19} observation")
            for r in rows:
                states = "-" if r["states"] is None else r["states"]
                print(f"{r['id']:<22} {states:>6}  {r['max_episode_steps']:>5}  {r['action_space']:<19} {r['observation_space']}")
        return 0
    env = make_env(args.env, render_mode="rgb_array", **parse_env_kwargs(args.option))
    env.reset(seed=args.seed)
    frame = env.render()
    if hasattr(env.unwrapped, "_render_text"):
        print(env.unwrapped._render_text(), end="")
    with atomic_path(args.out) as tmp:
        iio.imwrite(tmp, frame)
    print(f"wrote {args.out} ({frame.shape[1]}x{frame.shape[0]})")
    return 0


if __name__ == "__main__":
    run_main(main)
