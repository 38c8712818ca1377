"""What ``python -m agents solve | train | evaluate`` do: run the work, write the run folder, and
return the summary that ``--json`` prints. The argument dataclasses here generate the command line.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from agents.plots import learning_curves, save_figure, value_heatmap
from agents.rollout import Episode, evaluate, record_video, rollout
from agents.tabular.base import TabularAgent, TabularConfig
from agents.tabular.dp import Solution, policy_iteration, value_iteration
from agents.tabular.mc import MonteCarloControl, MonteCarloPrediction
from agents.tabular.schedules import parse_schedule
from agents.tabular.td import SARSA, TD0, QLearning
from envs import ACTION_DELTAS, TabularMDP, make_env, parse_env_kwargs
from envs.io import atomic_path, atomic_write_text

Method = Literal["value-iteration", "policy-iteration"]
AgentName = Literal["mc", "mc-prediction", "td0", "sarsa", "q-learning", "dqn", "reinforce", "actor-critic"]
DEEP = ("dqn", "reinforce", "actor-critic")
AGENTS: dict[str, type[TabularAgent]] = {
    "mc": MonteCarloControl, "mc-prediction": MonteCarloPrediction, "td0": TD0, "sarsa": SARSA, "q-learning": QLearning,
}


@dataclass
class Solve:
    """Solve a known MDP by dynamic programming; write a value heatmap and solution.npz."""

    env: str
    """Environment id: an mp/ gridworld or any Gymnasium toy-text id (FrozenLake-v1, Taxi-v4)."""
    method: Method = "value-iteration"
    """Algorithm 4 (value iteration) or Algorithm 5 (policy iteration) of the notes."""
    gamma: float | None = None
    """Discount factor; default: the environment's own (mp/ ids), else 0.99."""
    tol: float = 1e-8
    """Stop when the sup-norm change between iterations is at most this."""
    out: Path | None = None
    """Run folder; default runs/solve/<env>-<method>."""
    option: tuple[str, ...] = ()
    """Environment keyword arguments as key=value, e.g. --option size=100."""
    json: bool = False
    """Print one JSON object {env, method, gamma, iterations, V, policy, seconds}."""


@dataclass
class Train:
    """Train a model-free tabular agent; write metrics.csv, curve.png, value.png, agent.npz, eval.mp4."""

    env: str
    """Environment id with Discrete observations and actions, e.g. mp/CliffWalking-v0."""
    agent: AgentName = "q-learning"
    """Tabular: mc (on-policy MC control), mc-prediction, td0 (prediction), sarsa, q-learning. Deep: dqn, reinforce, actor-critic."""
    episodes: int = 500
    """Tabular agents: number of training episodes."""
    steps: int = 50_000
    """Deep agents: environment steps to train for."""
    eval_every: int = 5_000
    """Deep agents: environment steps between greedy evaluations and checkpoints."""
    resume: Path | None = None
    """Deep agents: continue the run in this folder from its checkpoint.pt (same seed, same curve)."""
    tensorboard: bool = False
    """Deep agents: also log to <out>/tensorboard."""
    frame_stack: int = 1
    """Deep agents: feed the last K observations stacked (Gymnasium's FrameStackObservation), e.g. 4 for pixels."""
    seed: int = 0
    """Seed of the environment and the agent; same seed, same run."""
    out: Path | None = None
    """Run folder; default runs/<agent>/<env>-seed<seed>."""
    gamma: float | None = None
    """Discount factor; default: the environment's own (mp/ ids), else 0.99."""
    alpha: str | None = None
    """Step size: a number or a schedule (linear:1.0:0.05:400, exp:1.0:0.01:0.99); default 0.1 (TD), sample average (MC)."""
    epsilon: str = "0.1"
    """Exploration rate of control agents: a number or a schedule, as for alpha."""
    every_visit: bool = False
    """Monte Carlo: average every visit of a state instead of the first one."""
    policy: Path | None = None
    """Prediction agents: .npz holding a 'policy' array (a solution.npz from solve); default uniform random."""
    max_episode_steps: int | None = None
    """Time limit of an episode; default: the id's own, or 1000 for ids without one."""
    option: tuple[str, ...] = ()
    """Environment keyword arguments as key=value."""
    video_episodes: int = 1
    """Greedy episodes recorded into eval.mp4 (0 for none)."""
    progress: bool = True
    """Show a progress bar."""
    json: bool = False
    """Print one JSON object: tabular {agent, env, episodes, mean_return, greedy_return, seconds};
    deep {agent, env, steps, mean_return, std_return, episodes, seconds, best_step, last_mean_return}: 20 greedy
    episodes of the best-evaluated weights (best.pt, from step best_step) and of the last weights."""


@dataclass
class Evaluate:
    """Run a saved agent's policy for some episodes; optionally record a video."""

    env: str
    """Environment id the agent was trained on."""
    agent: Path
    """A saved agent: agent.npz (tabular) or checkpoint.pt (deep), e.g. runs/dqn/CartPole-v1-seed0/checkpoint.pt."""
    episodes: int = 10
    """Number of evaluation episodes."""
    seed: int = 0
    """Seed of the first episode (episode i uses seed + i)."""
    video: Path | None = None
    """Write the first episodes to this MP4."""
    frame_stack: int = 1
    """Deep agents: as in training; feed the last K observations stacked (Gymnasium's FrameStackObservation), e.g. 4 for pixels."""
    max_episode_steps: int | None = None
    """Time limit of an episode; default: the id's own, or 1000 for ids without one."""
    option: tuple[str, ...] = ()
    """Environment keyword arguments as key=value."""
    json: bool = False
    """Print one JSON object {env, agent, episodes, mean_return, std_return, returns}."""


# ---------------------------------------------------------------------- helpers
DEFAULT_TIME_LIMIT = 1000
VIDEO_STEPS = 200  # frames are held in memory until written; a video shows at most this many steps per episode


def task_env(args: Train | Evaluate, **extra: Any) -> gym.Env:
    """The environment of a run, always with a time limit: a learned greedy policy can loop forever
    in an id registered without one (Gymnasium's CliffWalking-v1)."""
    env = make_env(args.env, **parse_env_kwargs(args.option), **extra)
    limit = args.max_episode_steps or (env.spec.max_episode_steps if env.spec else None)
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be at least 1, got {args.max_episode_steps}")
    if limit is None or args.max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, limit or DEFAULT_TIME_LIMIT)
    return env


def stacked_env(args: Train | Evaluate, **extra: Any) -> gym.Env:
    """:func:`task_env` with the last ``args.frame_stack`` observations stacked (for deep agents)."""
    if args.frame_stack < 1:
        raise ValueError(f"frame_stack must be at least 1, got {args.frame_stack}")
    env = task_env(args, **extra)
    return gym.wrappers.FrameStackObservation(env, args.frame_stack) if args.frame_stack > 1 else env


def video_env(env: gym.Env) -> gym.Env:
    """Our gridworlds draw the path walked so far on video frames."""
    if hasattr(env.unwrapped, "trail"):
        env.unwrapped.trail = True
    return env


def task_gamma(env: gym.Env, gamma: float | None) -> float:
    """The discount to use: the one asked for, else the environment's own, else 0.99."""
    return float(gamma if gamma is not None else getattr(env.unwrapped, "gamma", 0.99))


def model_of(env: gym.Env, gamma: float) -> TabularMDP:
    """The environment's exact model: ``env.unwrapped.mdp`` (mp/ ids) or its toy-text ``P`` dict."""
    mdp = getattr(env.unwrapped, "mdp", None)
    return mdp.with_gamma(gamma) if isinstance(mdp, TabularMDP) else TabularMDP.from_gymnasium(env, gamma)


def slug(env_id: str) -> str:
    return env_id.replace("/", "_").replace(":", "_")


def write_value_picture(env: gym.Env, V: np.ndarray, policy: np.ndarray | None, path: Path, title: str,
                        trajectory: Episode | None = None) -> Path | None:
    """A heatmap of ``V`` with policy arrows for grid environments; ``None`` if the env is no grid."""
    base = env.unwrapped
    if hasattr(base, "to_grid"):  # our gridworlds: walls and cliffs masked
        grid, shape = base.to_grid(V), base.shape
    elif hasattr(base, "desc") and np.size(base.desc) == np.size(V):  # FrozenLake (our action order)
        shape = base.desc.shape
        grid = np.asarray(V, dtype=np.float64).reshape(shape)
    else:
        return None
    arrows = None
    if policy is not None:
        arrows = np.asarray(policy).reshape(shape).copy()
        arrows[np.isnan(grid)] = -1
        if hasattr(base, "mdp"):
            arrows[base.mdp.terminal.reshape(shape)] = -1
    cells = None
    if trajectory is not None:
        cells = [divmod(int(s), shape[1]) for s in trajectory.observations]
    return save_figure(value_heatmap(grid, arrows, action_deltas=ACTION_DELTAS, path=cells, title=title), path)


def load_policy(path: Path) -> np.ndarray:
    """The ``policy`` array of a ``solution.npz`` or ``agent.npz``."""
    try:
        with np.load(path) as data:
            if "policy" not in data:
                raise ValueError(f"{path} has no 'policy' array (keys: {', '.join(data.files)})")
            return data["policy"]
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read a policy from {path}: {err}") from err


# ---------------------------------------------------------------------- commands
def solve(args: Solve) -> dict[str, Any]:
    env = make_env(args.env, **parse_env_kwargs(args.option))
    gamma = task_gamma(env, args.gamma)
    mdp = model_of(env, gamma)
    start = time.perf_counter()
    solution: Solution = value_iteration(mdp, tol=args.tol) if args.method == "value-iteration" else policy_iteration(mdp, tol=args.tol)
    seconds = time.perf_counter() - start
    out = args.out or Path("runs/solve") / f"{slug(args.env)}-{args.method}"
    with atomic_path(out / "solution.npz") as tmp:
        np.savez(tmp, V=solution.V, Q=solution.Q, policy=solution.policy, gamma=gamma,
                 iterations=solution.iterations, residuals=solution.residuals, env=args.env, method=args.method)
    title = f"{args.env}: V* and greedy policy ({args.method}, gamma={gamma:g}, {solution.iterations} iterations)"
    write_value_picture(env, solution.V, solution.policy, out / "value.png", title)
    return {"env": args.env, "method": args.method, "gamma": gamma, "iterations": solution.iterations,
            "V": solution.V.tolist(), "policy": solution.policy.tolist(), "seconds": seconds, "out": str(out)}


def build_agent(args: Train, gamma: float) -> TabularAgent:
    cls = AGENTS[args.agent]
    alpha = parse_schedule(args.alpha) if args.alpha is not None else cls.default_config().alpha
    config = TabularConfig(gamma=gamma, alpha=alpha, epsilon=parse_schedule(args.epsilon))
    kwargs: dict[str, Any] = {"config": config}
    if args.agent in ("mc", "mc-prediction"):
        kwargs["first_visit"] = not args.every_visit
    if args.agent in ("mc-prediction", "td0"):
        kwargs["policy"] = load_policy(args.policy) if args.policy is not None else None
    elif args.policy is not None:
        raise ValueError(f"--policy is for prediction agents (mc-prediction, td0), not {args.agent}")
    return cls(**kwargs)


def train(args: Train) -> dict[str, Any]:
    if args.agent in DEEP:
        return train_deep(args)
    if args.episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {args.episodes}")
    env = task_env(args)
    agent = build_agent(args, task_gamma(env, args.gamma))
    start = time.perf_counter()
    log = agent.fit(env, args.episodes, seed=args.seed, progress=args.progress)
    seconds = time.perf_counter() - start
    out = args.out or Path("runs") / args.agent / f"{slug(args.env)}-seed{args.seed}"

    agent.save(out / "agent.npz")
    csv = io.StringIO()
    csv.write("episode,return,length,epsilon\n")
    for i, (g, n, e) in enumerate(zip(log.returns, log.lengths, log.epsilons)):
        csv.write(f"{i},{g:.6g},{n},{e:.6g}\n")
    atomic_write_text(out / "metrics.csv", csv.getvalue())
    save_figure(learning_curves({args.agent: log.returns}, title=f"{args.agent} on {args.env}"), out / "curve.png")

    greedy = rollout(env, agent.act, seed=args.seed)
    write_value_picture(env, agent.value, agent.policy if agent.policy.ndim == 1 else None, out / "value.png",
                        f"{args.agent} on {args.env}: learned values and greedy path", greedy)
    if args.video_episodes > 0:
        record_video(video_env(task_env(args, render_mode="rgb_array")), agent.act, out / "eval.mp4",
                     episodes=args.video_episodes, seed=args.seed, max_steps=VIDEO_STEPS)
    recent = log.returns[-min(100, len(log.returns)):]
    return {"agent": args.agent, "env": args.env, "episodes": args.episodes, "mean_return": float(np.mean(recent)),
            "greedy_return": float(greedy.return_), "seconds": seconds, "out": str(out)}


def evaluate_saved(args: Evaluate) -> dict[str, Any]:
    if args.episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {args.episodes}")
    if args.agent.suffix == ".pt":
        return evaluate_deep(args)
    agent = TabularAgent.load(args.agent)
    env = task_env(args)
    n_states = getattr(env.observation_space, "n", None)
    if n_states != agent.Q.shape[0] or env.action_space.n != agent.Q.shape[1]:
        raise ValueError(
            f"agent {args.agent} has tables for {agent.Q.shape[0]} states and {agent.Q.shape[1]} actions, "
            f"but {args.env} has observation space {env.observation_space} and action space {env.action_space}"
        )
    returns = evaluate(env, agent.act, args.episodes, seed=args.seed)
    if args.video is not None:
        record_video(video_env(task_env(args, render_mode="rgb_array")), agent.act, args.video, episodes=min(args.episodes, 3),
                     seed=args.seed, max_steps=VIDEO_STEPS)
    return {"env": args.env, "agent": str(args.agent), "episodes": args.episodes, "mean_return": float(returns.mean()),
            "std_return": float(returns.std()), "returns": returns.tolist()}


# ---------------------------------------------------------------------- deep agents
def build_deep_agent(name: str, make: Callable[[], gym.Env], config: dict[str, Any] | None, seed: int, steps: int) -> Any:
    """A deep agent ``name`` with its config class filled from ``config`` (defaults where missing)."""
    from agents.deep import AGENTS as DEEP_AGENTS

    if name not in DEEP_AGENTS:
        raise ValueError(f"unknown deep agent {name!r}; known: {', '.join(DEEP_AGENTS)}")
    cls, config_cls = DEEP_AGENTS[name]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in (config or {}).items() if k in fields}
    kwargs: dict[str, Any] = {"total_steps": steps} if "total_steps" in inspect.signature(cls).parameters else {}
    return cls(make, config_cls(**values), seed=seed, **kwargs)


def train_deep(args: Train) -> dict[str, Any]:
    import torch

    from agents.deep import RunConfig
    from agents.deep import train as run_loop
    from agents.deep.networks import is_image_space

    if args.steps < 1:
        raise ValueError(f"steps must be at least 1, got {args.steps}")
    out = args.resume or args.out or Path("runs") / args.agent / f"{slug(args.env)}-seed{args.seed}"
    make = lambda: gym.wrappers.RecordEpisodeStatistics(stacked_env(args))  # noqa: E731
    probe = stacked_env(args)  # only its observation space; closed at once (a PyBullet env holds a client)
    images = is_image_space(probe.observation_space)
    probe.close()
    if not images:
        torch.set_num_threads(1)  # small MLPs: a second thread costs more in synchronisation than it gains
    overrides = {"gamma": args.gamma} if args.gamma is not None else {}
    agent = build_deep_agent(args.agent, make, overrides, args.seed, args.steps)
    run = RunConfig(steps=args.steps, out=out, eval_every=args.eval_every, seed=args.seed, resume=args.resume is not None,
                    tensorboard=args.tensorboard, progress=args.progress)
    start = time.perf_counter()
    result = run_loop(agent, lambda: stacked_env(args), run)
    seconds = time.perf_counter() - start
    curves = {"greedy evaluation": np.array([r["eval_mean"] for r in result.rows]),
              "training episodes": np.array([r["train_return"] for r in result.rows])}
    save_figure(learning_curves(curves, window=1, xlabel=f"evaluation (every {args.eval_every} steps)",
                                title=f"{args.agent} on {args.env}"), out / "curve.png")
    if args.video_episodes > 0:
        try:
            env = video_env(stacked_env(args, render_mode="rgb_array"))
        except (ValueError, TypeError) as err:  # no rgb_array rendering: no video
            print(f"note: no video ({err})")
        else:
            record_video(env, lambda o: agent.act(o), out / "eval.mp4", episodes=args.video_episodes, seed=args.seed,
                         max_steps=VIDEO_STEPS)
    return {"agent": args.agent, "env": args.env, "steps": args.steps, "mean_return": result.mean_return,
            "std_return": result.std_return, "episodes": result.episodes, "seconds": seconds,
            "best_step": result.best_step, "last_mean_return": result.last_mean_return, "out": str(out)}


def evaluate_deep(args: Evaluate) -> dict[str, Any]:
    from envs.io import load_torch_checkpoint

    if not args.agent.is_file():
        raise ValueError(f"checkpoint {args.agent} does not exist")
    state = load_torch_checkpoint(args.agent)["agent"]
    agent = build_deep_agent(state["name"], lambda: gym.wrappers.RecordEpisodeStatistics(stacked_env(args)),
                             state.get("config"), 0, int(state["steps"]))
    try:
        agent.load_state_dict(state)
    except RuntimeError as err:  # torch: the networks' shapes differ
        raise ValueError(
            f"checkpoint {args.agent} does not fit {args.env} with these options (trained with other --option or "
            f"--frame-stack values?): {str(err).splitlines()[0]}"
        ) from err
    returns = evaluate(stacked_env(args), lambda o: agent.act(o), args.episodes, seed=args.seed)
    if args.video is not None:
        record_video(video_env(stacked_env(args, render_mode="rgb_array")), lambda o: agent.act(o), args.video,
                     episodes=min(args.episodes, 3), seed=args.seed, max_steps=VIDEO_STEPS)
    return {"env": args.env, "agent": str(args.agent), "episodes": args.episodes, "mean_return": float(returns.mean()),
            "std_return": float(returns.std()), "returns": returns.tolist()}
