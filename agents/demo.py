"""``make demo``: pictures and videos of the tabular half of the notes, gathered in ``index.html``.

Each section writes its files and a ``section.json`` manifest into its own folder under ``--out``;
``index.html`` is rebuilt from every manifest found there, so later packages add their sections by
writing one more folder. ``--only`` reruns some sections; each section's page shows the command that reproduces it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from agents.commands import VIDEO_STEPS, slug, video_env, write_value_picture
from agents.rollout import record_video, rollout
from agents.tabular.base import TabularConfig
from agents.tabular.dp import policy_iteration, value_iteration
from agents.tabular.td import SARSA, QLearning
from envs import ENVIRONMENTS, make_env
from envs.io.figures import PALETTE, learning_curves, save_figure
from envs.io.page import command_line, write_index, write_section

Part = Literal["dynamic-programming", "cliff-walking", "deep-rl"]
"""The demo's sections: §11 dynamic programming, §11.2 Q-learning vs SARSA, §11.3 deep RL."""


@dataclass
class Demo:
    """Solve every registered gridworld and compare Q-learning with SARSA on CliffWalking."""

    out: Path = Path("outputs/demo")
    """Folder for the pictures, videos and index.html."""
    runs: int = 10
    """Independent seeds averaged in the CliffWalking learning curves."""
    episodes: int = 500
    """Training episodes per run."""
    progress: bool = True
    """Show progress bars."""
    deep: bool = True
    """Include the deep reinforcement learning section (about three minutes on two cores)."""
    dqn_steps: int = 50_000
    """Environment steps of DQN on CartPole-v1 in the deep section."""
    reacher_steps: int = 200_000
    """Environment steps of actor-critic on mp/BulletReacher-v0 in the deep section."""
    full: bool = False
    """The full budgets: 20 CliffWalking seeds and 800,000 actor-critic steps on the reacher."""
    only: tuple[Part, ...] = ()
    """Run only these sections and keep the others on the page; empty: all (deep-rl only with --deep)."""

    def selected(self, part: Part) -> bool:
        """Whether this demo runs ``part``."""
        return (not self.only or part in self.only) and (part != "deep-rl" or self.deep)


def section_command(args: Demo, part: Part) -> str:
    """The command that reproduces ``part``'s section: this demo's settings, that section only."""
    return command_line("python -m agents demo", dataclasses.replace(args, only=(part,)))


def dynamic_programming_section(out: Path, progress: bool, command: str) -> None:
    folder = out / "dynamic-programming"
    items = []
    for env_id in tqdm(ENVIRONMENTS, desc="dynamic programming", disable=not progress):
        env = make_env(env_id)
        mdp = env.unwrapped.mdp
        start = time.perf_counter()
        vi = value_iteration(mdp)
        vi_seconds = time.perf_counter() - start
        pi = policy_iteration(mdp)
        greedy = vi.policy
        path = rollout(env, lambda s: int(greedy[s]), seed=0)  # noqa: B023 - used before the loop moves on
        name = f"{slug(env_id)}.png"
        write_value_picture(env, vi.V, vi.policy, folder / name, f"{env_id}: V* and greedy policy", path)
        gap = float(np.abs(vi.V - pi.V).max())
        items.append({"kind": "image", "file": name, "caption": (
            f"{env_id} (gamma={mdp.gamma:g}, {mdp.n_states} states): value iteration took {vi.iterations} sweeps "
            f"({vi_seconds * 1e3:.1f} ms), policy iteration {pi.iterations} rounds; max |V_vi - V_pi| = {gap:.1e}. "
            f"The line is one greedy episode (return {path.return_:g}).")})
    write_section(folder, "11", "Dynamic programming on every registered gridworld (notes §11, Algorithms 4 and 5)",
                  "Optimal state values V* as colour, the greedy policy as arrows, walls and cliffs dark.", items,
                  command=command)


def cliff_section(out: Path, runs: int, episodes: int, progress: bool, command: str) -> dict[str, Any]:
    """Sutton & Barto's Example 6.6: Q-learning learns the risky optimal path, SARSA a safer one."""
    folder = out / "cliff-walking"
    config = TabularConfig(gamma=1.0, alpha=0.1, epsilon=0.1)
    env = make_env("mp/CliffWalking-v0")
    curves: dict[str, np.ndarray] = {}
    items = []
    summary = {}
    for cls in (QLearning, SARSA):
        returns = []
        for seed in tqdm(range(runs), desc=cls.name, disable=not progress):
            agent = cls(config)
            returns.append(agent.fit(env, episodes, seed=seed).returns)
            if seed == 0:
                first = agent
        curves[f"{cls.name} (mean of {runs} runs)"] = np.mean(returns, axis=0)
        greedy = rollout(env, first.act, seed=0)
        summary[cls.name] = {"greedy_return": greedy.return_, "online_return_last_100": float(np.mean(np.array(returns)[:, -100:]))}
        write_value_picture(env, first.value, first.policy, folder / f"{cls.name}-values.png",
                            f"{cls.name}: max_a Q and greedy path (return {greedy.return_:g})", greedy)
        record_video(video_env(make_env("mp/CliffWalking-v0", render_mode="rgb_array")), first.act,
                     folder / f"{cls.name}.mp4", seed=0)
        items += [
            {"kind": "image", "file": f"{cls.name}-values.png",
             "caption": f"{cls.name}, seed 0: learned values and the greedy path, return {greedy.return_:g}."},
            {"kind": "video", "file": f"{cls.name}.mp4", "caption": f"{cls.name}: one greedy episode after training."},
        ]
    save_figure(learning_curves(curves, window=10, ylim=(-150, 0),
                                title="CliffWalking, epsilon = 0.1, alpha = 0.1: return per episode while learning"),
                folder / "curves.png")
    items.insert(0, {"kind": "image", "file": "curves.png", "caption": (
        "Online return per episode (behaviour policy, epsilon-greedy). SARSA, on-policy, learns the path that stays "
        "safe while exploring and earns more online; Q-learning learns the optimal path along the cliff edge and "
        "falls off now and then while exploring (Sutton & Barto, Example 6.6).")})
    write_section(folder, "11.2", "Q-learning vs SARSA on CliffWalking (notes §11.2)",
                  f"{runs} seeds x {episodes} episodes each. Greedy returns: "
                  + ", ".join(f"{k} {v['greedy_return']:g}" for k, v in summary.items()) + ".", items, command=command)
    return summary


def deep_section(out: Path, dqn_steps: int, reacher_steps: int, progress: bool, command: str) -> dict[str, Any]:
    """DQN on CartPole-v1 (notes §11.3): learning curve and a greedy episode of the best weights; then
    actor-critic on the PyBullet reacher."""
    import gymnasium as gym
    import torch

    from agents.deep import DQN, DQNConfig, RunConfig, train

    torch.set_num_threads(1)  # small networks: one thread is faster than two competing ones
    folder = out / "deep-rl"
    for run in ("dqn-cartpole", "actor-critic-reacher"):  # the demo owns its run folders: a re-run starts afresh
        shutil.rmtree(folder / run, ignore_errors=True)
    make = lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))
    agent = DQN(make, DQNConfig(), seed=0, total_steps=dqn_steps)
    result = train(agent, lambda: gym.make("CartPole-v1"),
                   RunConfig(steps=dqn_steps, out=folder / "dqn-cartpole", eval_every=2_500, progress=progress))
    steps = [r["step"] for r in result.rows]
    curves = {"greedy evaluation (10 episodes)": (steps, [r["eval_mean"] for r in result.rows]),
              "training episodes (epsilon-greedy)": (steps, [r["train_return"] for r in result.rows])}
    colors = dict(zip(curves, (PALETTE.learned, PALETTE.training)))
    save_figure(learning_curves(curves, window=1, xlabel="environment steps", ylim=(0, 520), colors=colors,
                                title="DQN on CartPole-v1 (RL Zoo hyperparameters)"), folder / "dqn-curve.png")
    record_video(gym.make("CartPole-v1", render_mode="rgb_array"), agent.act, folder / "dqn-cartpole.mp4", seed=0,
                 max_steps=VIDEO_STEPS)
    items = [
        {"kind": "image", "file": "dqn-curve.png", "caption": (
            f"Mean greedy return of 10 episodes every 2,500 environment steps, and the mean return of the training "
            f"episodes in between; the best evaluation came at step {result.best_step:,}. "
            f"Final 20 greedy episodes: {result.mean_return:.0f} with the best weights, {result.last_mean_return:.0f} "
            "with the last ones" + (" (DQN's greedy policy keeps changing after it has solved the task, which is why "
                                    "the best weights are kept)." if result.last_mean_return < result.mean_return
                                    else "."))},
        {"kind": "video", "file": "dqn-cartpole.mp4", "caption": f"The best DQN weights balancing the pole (first {VIDEO_STEPS} steps)."},
    ]
    reacher = reacher_demo(folder, reacher_steps, progress)
    items += reacher.pop("items")
    write_section(folder, "11.3", "Deep reinforcement learning (notes §11.3)",
                  f"DQN with a target network and experience replay ({dqn_steps:,} steps on CartPole-v1), and a "
                  f"synchronous actor-critic ({reacher_steps:,} steps on the PyBullet reacher).", items, command=command)
    return {"dqn_mean_return": result.mean_return, "dqn_last_mean_return": result.last_mean_return,
            "dqn_best_step": result.best_step, **reacher}


def final_distance(act: Any, episodes: int = 20, seed: int = 1) -> float:
    """Mean distance (metres) from fingertip to target at the last step of greedy reacher episodes."""
    import gymnasium as gym

    env = gym.make("mp/BulletReacher-v0")
    distances = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(act(obs))
            done = terminated or truncated
        distances.append(info["distance"])
    env.close()
    return float(np.mean(distances))


def reacher_demo(folder: Path, steps: int, progress: bool) -> dict[str, Any]:
    """Actor-critic on mp/BulletReacher-v0 next to the scripted inverse-kinematics controller."""
    import gymnasium as gym

    from agents.deep import ActorCritic, ActorCriticConfig, RunConfig, train
    from agents.hyperparams import tuned_config
    from agents.rollout import evaluate
    from envs.bullet import ScriptedReacher
    from envs.io.video import side_by_side, write_video

    make = lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("mp/BulletReacher-v0"))
    config = dataclasses.replace(tuned_config("actor-critic", "mp/BulletReacher-v0", ActorCriticConfig),
                                 lr_decay_steps=steps)  # the tuned schedule decays over this run's budget
    agent = ActorCritic(make, config, seed=0)
    result = train(agent, lambda: gym.make("mp/BulletReacher-v0"),
                   RunConfig(steps=steps, out=folder / "actor-critic-reacher", eval_every=15_000, progress=progress))
    scripted = ScriptedReacher()
    eval_env = gym.make("mp/BulletReacher-v0")
    reference = float(evaluate(eval_env, scripted.act, 20, seed=1).mean())
    rng = np.random.default_rng(0)
    random_return = float(evaluate(eval_env, lambda o: rng.uniform(-1, 1, 2).astype(np.float32), 20, seed=1).mean())
    steps = [r["step"] for r in result.rows]
    curves = {"actor-critic (greedy, 10 episodes)": (steps, [r["eval_mean"] for r in result.rows]),
              "scripted reference": (steps, np.full(len(steps), reference)),
              "random actions": (steps, np.full(len(steps), random_return))}
    distance = {name: final_distance(act) for name, act in (("agent", agent.act), ("scripted", scripted.act))}
    colors = dict(zip(curves, (PALETTE.learned, PALETTE.reference, PALETTE.chance)))
    save_figure(learning_curves(curves, window=1, xlabel="environment steps", colors=colors,
                                title="mp/BulletReacher-v0: return per episode (50 steps)"), folder / "reacher-curve.png")
    frames_agent, frames_scripted = [], []
    for seed in range(3):  # the same targets for both
        frames_agent += rollout(gym.make("mp/BulletReacher-v0", render_mode="rgb_array"), agent.act, seed=seed, render=True).frames
        frames_scripted += rollout(gym.make("mp/BulletReacher-v0", render_mode="rgb_array"), scripted.act, seed=seed,
                                   render=True).frames
    write_video(side_by_side(frames_agent, frames_scripted), folder / "reacher.mp4", fps=20)
    reaches = distance["agent"] <= 2.0 * max(distance["scripted"], 0.01)
    verdict = "it reaches the targets" if reaches else "it has not learned to reach the targets within this budget"
    items = [
        {"kind": "image", "file": "reacher-curve.png", "caption": (
            f"Actor-critic on the PyBullet reacher from normalised state observations (the reacher settings of "
            f"agents/hyperparams.py), {steps[-1]:,} steps: {result.mean_return:.1f} "
            f"over 20 greedy episodes, against {reference:.1f} for the scripted controller and {random_return:.1f} for "
            f"random actions. At the end of an episode its fingertip is {100 * distance['agent']:.1f} cm from the target "
            f"on average (scripted: {100 * distance['scripted']:.1f} cm): {verdict}.")},
        {"kind": "video", "file": "reacher.mp4", "caption": (
            "Camera images of the PyBullet scene (TinyRenderer), three episodes with the same targets for both: the "
            f"actor-critic agent (left, {100 * distance['agent']:.1f} cm from the target at the end on average) and the "
            f"scripted inverse-kinematics + PD controller (right, {100 * distance['scripted']:.1f} cm).")},
    ]
    return {"reacher_mean_return": result.mean_return, "reacher_scripted": reference, "reacher_random": random_return,
            "reacher_final_distance": distance["agent"], "reacher_scripted_distance": distance["scripted"], "items": items}


def run_demo(args: Demo) -> Path:
    start = time.perf_counter()
    requested = args  # the command line asked for this; --full changes the budgets below
    if args.full:
        args = dataclasses.replace(args, runs=max(args.runs, 20), reacher_steps=max(args.reacher_steps, 800_000))
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    if args.selected("dynamic-programming"):
        dynamic_programming_section(args.out, args.progress, section_command(requested, "dynamic-programming"))
    if args.selected("cliff-walking"):
        summary["cliff_walking"] = cliff_section(args.out, args.runs, args.episodes, args.progress,
                                                 section_command(requested, "cliff-walking"))
    if args.selected("deep-rl"):
        summary["deep"] = deep_section(args.out, args.dqn_steps, args.reacher_steps, args.progress,
                                       section_command(requested, "deep-rl"))
    index = write_index(args.out)
    print(json.dumps({"index": str(index), **summary, "seconds": round(time.perf_counter() - start, 1)}))
    return index
