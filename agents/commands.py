"""What ``python -m agents solve | train <agent> | evaluate`` do: run the work, write the run folder,
and return the summary that ``--json`` prints.

The argument dataclasses here generate the command line; ``train`` has one subcommand per agent of
:mod:`agents.registry`, each with only the options of its family (a tabular agent has no
``--tensorboard``, DQN no ``--epsilon``: argparse rejects them) and, for deep agents, every
hyperparameter as ``--config.*``, their defaults per environment in ``agents/hyperparams/<agent>.yml``
(:mod:`agents.hyperparams`). Every run folder holds the ``config.json`` that reproduces it, takes a
lock while it runs, and is never overwritten: a default folder gets a number (``...-seed0-2``), an
explicit ``--out`` that already holds a run is refused. ``--seeds`` trains one run per seed
(:mod:`agents.seeds`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import tyro

from agents.diagnostics import describe_grid_loop, find_loop
from agents.plots import value_heatmap
from agents.registry import TABULAR, deep_agents
from agents.rollout import Episode, evaluate, record_video, rollout
from agents.tabular.base import TabularAgent, TabularConfig
from agents.tabular.dp import Solution, diagnose, policy_iteration, value_iteration
from agents.tabular.schedules import parse_schedule
from envs import TabularMDP, make_env, parse_env_kwargs
from envs.gridworld import ACTION_DELTAS
from envs.io.arrays import read_npz
from envs.io.cli import config_command, subcommands
from envs.io.figures import learning_curves, save_figure
from envs.io.files import atomic_path, atomic_write_csv
from envs.io.run import RunFolder, numbered, resume_config

Method = Literal["value-iteration", "policy-iteration"]
DEFAULT_TIME_LIMIT = 1000
VIDEO_STEPS = 200  # frames are held in memory until written; a video shows at most this many steps per episode


# ---------------------------------------------------------------------- arguments
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
    max_iterations: int = 100_000
    """Give up (and say so) after this many sweeps or rounds."""
    out: Path | None = None
    """Output folder; default runs/solve/<env>-<method>."""
    option: tuple[str, ...] = ()
    """Environment keyword arguments as key=value, e.g. --option size=100."""
    json: bool = False
    """Print one JSON object {env, method, gamma, iterations, V, policy, seconds}."""


@dataclass
class TrainArgs:
    """Options of every agent."""

    agent_name: ClassVar[str] = ""

    env: str
    """Environment id, e.g. mp/CliffWalking-v0 (tabular agents: Discrete observations and actions)."""
    seed: int = 0
    """Seed of the environment and the agent; same seed, same run."""
    seeds: tuple[int, ...] = ()
    """Train one run per seed (not with --seed), in parallel, into OUT/seed<k>/; plot the mean with a 95% band."""
    workers: int | None = None
    """Processes that train the --seeds at once; default min(number of seeds, CPU count)."""
    out: Path | None = None
    """Run folder; default runs/<agent>/<env>-seed<seed> (or -seeds), numbered -2, -3, ... if it holds a run."""
    gamma: float | None = None
    """Discount factor; default: the environment's own (mp/ ids), else 0.99."""
    max_episode_steps: int | None = None
    """Time limit of an episode; default: the id's own, or 1000 for ids without one."""
    option: tuple[str, ...] = ()
    """Environment keyword arguments as key=value, e.g. --option size=30 slip=0.1."""
    video_episodes: int = 1
    """Greedy episodes recorded into eval.mp4 (0 for none)."""
    progress: bool = True
    """Show a progress bar."""
    json: bool = False
    """Print the summary as one JSON object."""


@dataclass
class Explores:
    """Options of control agents."""

    epsilon: str = "0.1"
    """Exploration rate: a number or a schedule (linear:1.0:0.05:400, exp:1.0:0.01:0.99)."""


@dataclass
class AveragesVisits:
    """Options of Monte Carlo agents."""

    every_visit: bool = False
    """Average every visit of a state instead of the first one."""


@dataclass
class Evaluates:
    """Options of prediction agents."""

    policy: Path | None = None
    """.npz holding a 'policy' array (a solution.npz from solve); default uniform random."""


@dataclass
class TabularArgs(TrainArgs):
    """Options of the tabular agents; writes metrics.csv, curve.png, value.png, agent.npz, eval.mp4."""

    episodes: int = 500
    """Training episodes."""
    alpha: str | None = None
    """Step size: a number or a schedule (linear:1.0:0.05:400); default 0.1 (TD), sample averages (MC)."""


@dataclass
class DeepArgs(TrainArgs):
    """Options of the deep agents; writes metrics.csv, curve.png, eval.mp4, checkpoint.pt, best.pt."""

    steps: int = 50_000
    """Environment steps to train for."""
    eval_every: int = 5_000
    """Environment steps between greedy evaluations and checkpoints."""
    resume: Path | None = None
    """Continue the run in this folder from its checkpoint.pt, with the options of its config.json."""
    tensorboard: bool = True
    """Also log the metrics and each evaluation's last frame to <out>/tensorboard (if tensorboard is installed)."""
    wandb: bool = False
    """Also log to Weights & Biases (offline unless an API key is configured; WANDB_MODE overrides)."""
    frame_stack: int = 1
    """Feed the last K observations stacked (Gymnasium's FrameStackObservation), e.g. 4 for pixels."""
    threads: int = 1
    """Torch CPU threads (one is the fastest for these small networks on a busy 2-core machine)."""
    hyperparams: tuple[str, ...] = ()
    """key=value, read as YAML (hidden=[64,64]); overrides agents/hyperparams/<agent>.yml's --env entry and --config.*."""
    hyperparams_file: tyro.conf.Suppress[str | None] = None
    """The YAML file whose entry for the environment was applied (set by the run, recorded in config.json)."""
    yaml_overrides: tyro.conf.Suppress[dict[str, Any]] = field(default_factory=dict)
    """The values that entry set (recorded in config.json)."""
    command_line_overrides: tyro.conf.Suppress[dict[str, Any]] = field(default_factory=dict)
    """The values --config.*, --gamma and --hyperparams set (recorded in config.json)."""


RESUMABLE = ("steps", "progress", "json", "video_episodes", "tensorboard", "wandb", "threads", "resume", "out")
"""Options that a resumed deep run takes from the command line; the others come from its config.json."""


def _tabular_command(name: str) -> type[TabularArgs]:
    entry = TABULAR[name]
    mixins = ([Explores] if entry.control else [Evaluates]) + ([AveragesVisits] if entry.monte_carlo else [])
    cls = dataclasses.make_dataclass(f"Train{name.title().replace('-', '')}", [], bases=(*mixins, TabularArgs),
                                     namespace={"agent_name": name, "__module__": __name__})
    cls.__doc__ = entry.summary
    return cls


TRAIN_COMMANDS: dict[str, type[TrainArgs]] = {
    **{name: _tabular_command(name) for name in TABULAR},
    **{name: config_command(name, DeepArgs, entry.config, entry.summary, __name__, agent_name=name)
       for name, entry in deep_agents().items()},
}
TrainAgent = subcommands(TRAIN_COMMANDS)
"""One subcommand per agent."""


@dataclass
class TrainCommand:
    """Train an agent: tabular (notes §11.1-11.2) or deep (notes §11.3)."""

    agent: Annotated[TrainAgent, tyro.conf.arg(name="")]


@dataclass
class Evaluate:
    """Run a saved agent's policy for some episodes; optionally record a video."""

    env: str
    """Environment id the agent was trained on."""
    agent: Path
    """A saved agent: agent.npz (tabular) or checkpoint.pt / best.pt (deep)."""
    episodes: int = 10
    """Number of evaluation episodes."""
    seed: int = 0
    """Seed of the first episode (episode i uses seed + i)."""
    video: Path | None = None
    """Write the first episodes to this MP4."""
    frame_stack: int = 1
    """Deep agents: as in training, the last K observations stacked."""
    max_episode_steps: int | None = None
    """Time limit of an episode; default: the id's own, or 1000 for ids without one."""
    option: tuple[str, ...] = ()
    """Environment keyword arguments as key=value."""
    json: bool = False
    """Print one JSON object {env, agent, episodes, mean_return, std_return, returns}."""


# ---------------------------------------------------------------------- helpers
def task_env(args: TrainArgs | Evaluate, **extra: Any) -> gym.Env:
    """The environment of a run, always with a time limit: a learned greedy policy can loop forever
    in an id registered without one (Gymnasium's CliffWalking-v1)."""
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be at least 1, got {args.max_episode_steps}")
    env = make_env(args.env, **parse_env_kwargs(args.option), **extra)
    limit = args.max_episode_steps or (env.spec.max_episode_steps if env.spec else None)
    if limit is None or args.max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, limit or DEFAULT_TIME_LIMIT)
    return env


def stacked_env(args: DeepArgs | Evaluate, **extra: Any) -> gym.Env:
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


def grid_layout(env: gym.Env) -> tuple[tuple[int, int], np.ndarray] | None:
    """``(shape, cell labels)`` of a grid environment (our gridworlds, FrozenLake), else ``None``."""
    base = env.unwrapped
    if hasattr(base, "grid") and hasattr(base, "shape"):
        return tuple(base.shape), np.asarray(base.grid.cells)
    if hasattr(base, "desc"):
        desc = np.asarray(base.desc).astype(str)
        return desc.shape, desc
    return None


def write_value_picture(env: gym.Env, V: np.ndarray, policy: np.ndarray | None, path: Path, title: str,
                        trajectory: Episode | None = None) -> Path | None:
    """A heatmap of ``V`` with policy arrows, cell kinds and a path for grid environments; ``None`` otherwise."""
    base = env.unwrapped
    layout = grid_layout(env)
    if layout is None or int(np.prod(layout[0])) != np.size(V):
        return None
    shape, labels = layout
    grid = base.to_grid(V) if hasattr(base, "to_grid") else np.asarray(V, dtype=np.float64).reshape(shape)
    arrows = None
    if policy is not None:
        arrows = np.asarray(policy).reshape(shape).copy()
        arrows[np.isnan(grid)] = -1
        if hasattr(base, "mdp"):
            arrows[base.mdp.terminal.reshape(shape)] = -1
    cells = [divmod(int(s), shape[1]) for s in trajectory.observations] if trajectory is not None else None
    return save_figure(value_heatmap(grid, arrows, action_deltas=ACTION_DELTAS, path=cells, title=title, labels=labels),
                       path)


def load_policy(path: Path) -> np.ndarray:
    """The ``policy`` array of a ``solution.npz`` or ``agent.npz``."""
    try:
        arrays = read_npz(path)
    except ValueError as err:
        raise ValueError(f"--policy: {err}") from None
    if "policy" not in arrays:
        raise ValueError(f"--policy: {path} has no 'policy' array (keys: {', '.join(arrays)})")
    return arrays["policy"]


def greedy_loop(env: gym.Env, mdp: TabularMDP, episode: Episode) -> str | None:
    """Where a greedy episode that the time limit cut is stuck, in a deterministic gridworld."""
    deterministic = bool(np.all(np.diff(mdp.P.indptr) == 1))
    layout = grid_layout(env)
    if not episode.truncated or not deterministic or layout is None:
        return None
    loop = find_loop(episode.observations)
    return describe_grid_loop(loop, layout[0]) if loop is not None else None


def default_out(args: TrainArgs) -> Path:
    name = f"{slug(args.env)}-seeds" if args.seeds else f"{slug(args.env)}-seed{args.seed}"
    return numbered(Path("runs") / args.agent_name / name)


def with_hyperparams(args: DeepArgs, given: Collection[str] | None = None) -> DeepArgs:
    """``args`` with its config resolved as :func:`agents.hyperparams.resolve` says (dataclass defaults < the
    YAML entry for ``args.env`` < the ``--config.*`` options given and ``--gamma`` < ``--hyperparams``), and
    where each value came from recorded. ``given``: the options named on the command line
    (:func:`agents.hyperparams.given_options`); None for a call from Python, where a config field that differs
    from its default counts as given."""
    from agents.hyperparams import given_values, resolve, shown

    config = args.config  # type: ignore[attr-defined]
    explicit = given_values(config, given)
    if args.gamma is not None:
        explicit["gamma"] = args.gamma
    resolved = resolve(args.agent_name, args.env, type(config), explicit, args.hyperparams)
    return dataclasses.replace(args, config=resolved.config,  # type: ignore[call-arg]
                               hyperparams_file=shown(resolved.file) if resolved.file is not None else None,
                               yaml_overrides=resolved.yaml, command_line_overrides=resolved.command_line)


# ---------------------------------------------------------------------- solve
def solve(args: Solve) -> dict[str, Any]:
    env = make_env(args.env, **parse_env_kwargs(args.option))
    gamma = task_gamma(env, args.gamma)
    mdp = model_of(env, gamma)
    start = time.perf_counter()
    solver = value_iteration if args.method == "value-iteration" else policy_iteration
    with warnings.catch_warnings():  # a solver that runs out of iterations warns; diagnose() says it below
        warnings.simplefilter("ignore", RuntimeWarning)
        solution: Solution = solver(mdp, tol=args.tol, max_iterations=args.max_iterations)
    seconds = time.perf_counter() - start
    out = args.out or Path("runs/solve") / f"{slug(args.env)}-{args.method}"
    with atomic_path(out / "solution.npz") as tmp:
        np.savez(tmp, V=solution.V, Q=solution.Q, policy=solution.policy, gamma=gamma, iterations=solution.iterations,
                 residuals=solution.residuals, converged=solution.converged, env=args.env, method=args.method)
    greedy = rollout(env, lambda s: int(solution.policy[s]), seed=0) if grid_layout(env) is not None else None
    title = f"{args.env}: V* and greedy policy ({args.method}, gamma={gamma:g}, {solution.iterations} iterations)"
    write_value_picture(env, solution.V, solution.policy, out / "value.png", title, greedy)
    problem = diagnose(mdp, solution)
    if problem is not None:
        raise ValueError(f"{args.env}: {problem} (the values are in {out / 'solution.npz'})")
    return {"env": args.env, "method": args.method, "gamma": gamma, "iterations": solution.iterations,
            "V": solution.V.tolist(), "policy": solution.policy.tolist(), "seconds": seconds, "out": str(out)}


# ---------------------------------------------------------------------- train
def build_agent(args: TabularArgs, gamma: float) -> TabularAgent:
    entry = TABULAR[args.agent_name]
    alpha = parse_schedule(args.alpha) if args.alpha is not None else entry.cls.default_config().alpha
    epsilon = parse_schedule(args.epsilon) if entry.control else TabularConfig().epsilon  # type: ignore[attr-defined]
    kwargs: dict[str, Any] = {"config": TabularConfig(gamma=gamma, alpha=alpha, epsilon=epsilon)}
    if entry.monte_carlo:
        kwargs["first_visit"] = not args.every_visit  # type: ignore[attr-defined]
    if not entry.control:
        policy = args.policy  # type: ignore[attr-defined]
        kwargs["policy"] = load_policy(policy) if policy is not None else None
    return entry.cls(**kwargs)


def train(args: TrainArgs, given: Collection[str] | None = None) -> dict[str, Any]:
    """Train as ``args`` say: one run, or one per seed of ``--seeds`` (:func:`agents.seeds.train_seeds`).

    ``given``: the options named on the command line (:func:`agents.hyperparams.given_options`), which decide
    what overrides the hyperparameters' YAML defaults; None for a call from Python.
    """
    if args.seeds:
        from agents.seeds import train_seeds

        return train_seeds(args, given)
    if isinstance(args, DeepArgs):
        return train_deep(prepare_deep(args, given))
    return train_tabular(args)  # type: ignore[arg-type]


def train_tabular(args: TabularArgs) -> dict[str, Any]:
    if args.episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {args.episodes}")
    env = task_env(args)
    gamma = task_gamma(env, args.gamma)
    agent = build_agent(args, gamma)
    out = args.out or default_out(args)
    with RunFolder(out, config=args):
        start = time.perf_counter()
        log = agent.fit(env, args.episodes, seed=args.seed, progress=args.progress)
        seconds = time.perf_counter() - start
        agent.save(out / "agent.npz")
        atomic_write_csv(out / "metrics.csv", [{"episode": i, "return": g, "length": n, "epsilon": e}
                                               for i, (g, n, e) in enumerate(zip(log.returns, log.lengths, log.epsilons))])
        save_figure(learning_curves({args.agent_name: log.returns}, title=f"{args.agent_name} on {args.env}"),
                    out / "curve.png")
        greedy = rollout(env, agent.act, seed=args.seed)
        write_value_picture(env, agent.value, agent.policy if agent.policy.ndim == 1 else None, out / "value.png",
                            f"{args.agent_name} on {args.env}: learned values and greedy path", greedy)
        if args.video_episodes > 0:
            record_video(video_env(task_env(args, render_mode="rgb_array")), agent.act, out / "eval.mp4",
                         episodes=args.video_episodes, seed=args.seed, max_steps=VIDEO_STEPS)
    recent = log.returns[-min(100, len(log.returns)):]
    summary = {"agent": args.agent_name, "env": args.env, "episodes": args.episodes, "mean_return": float(np.mean(recent)),
               "greedy_return": float(greedy.return_), "seconds": seconds, "out": str(out)}
    loop = greedy_loop(env, model_of(env, gamma), greedy) if TABULAR[args.agent_name].control else None
    if loop is not None:
        summary["greedy_loop"] = loop
    return summary


def build_deep_agent(name: str, make: Callable[[], gym.Env], config: Any, seed: int, steps: int) -> Any:
    """A deep agent ``name`` with ``config`` (its dataclass, or a dict of its fields)."""
    import inspect

    agents = deep_agents()
    if name not in agents:
        raise ValueError(f"unknown deep agent {name!r}; known: {', '.join(agents)}")
    entry = agents[name]
    if not isinstance(config, entry.config):
        from envs.io.config import from_jsonable

        config = from_jsonable(entry.config, config or {}, f"{name} config")
    kwargs: dict[str, Any] = {"total_steps": steps} if "total_steps" in inspect.signature(entry.cls).parameters else {}
    return entry.cls(make, config, seed=seed, **kwargs)


def resumed_deep(args: DeepArgs) -> DeepArgs:
    """The run a ``--resume DIR`` continues: DIR's ``config.json``, except :data:`RESUMABLE` options."""
    assert args.resume is not None
    if not (args.resume / "checkpoint.pt").is_file():
        raise ValueError(f"--resume: {args.resume} holds no checkpoint.pt, so there is nothing to resume")
    # where the hyperparameters came from follows from the options; only differences in those are worth a note
    record = ("hyperparams_file", "yaml_overrides", "command_line_overrides")
    try:
        stored = json.loads((args.resume / "config.json").read_text())
    except (OSError, ValueError):
        stored = None  # resume_config says what is wrong with the file
    current = dataclasses.replace(args, out=args.resume)
    if isinstance(stored, dict):
        current = dataclasses.replace(current, **{k: stored[k] for k in record if k in stored})
    return resume_config(type(args), args.resume, current, RESUMABLE)


def prepare_deep(args: DeepArgs, given: Collection[str] | None = None) -> DeepArgs:
    """The arguments a deep run trains with: :func:`with_hyperparams`, then, with ``--resume``, those stored in
    its ``config.json`` (:func:`resumed_deep`)."""
    args = with_hyperparams(args, given)
    return resumed_deep(args) if args.resume is not None else args


def eval_env(args: DeepArgs) -> gym.Env:
    """The evaluation environment: rendering ``rgb_array`` frames when a tracker logs them, where it can."""
    if args.tensorboard or args.wandb:
        try:
            return stacked_env(args, render_mode="rgb_array")
        except (ValueError, TypeError):  # no rgb_array rendering: no images
            pass
    return stacked_env(args)


def train_deep(args: DeepArgs) -> dict[str, Any]:
    """Train one deep run with ``args`` as they are (resolved by :func:`prepare_deep`)."""
    import torch

    from agents.deep.trainer import RunConfig
    from agents.deep.trainer import train as run_loop

    if args.steps < 1:
        raise ValueError(f"steps must be at least 1, got {args.steps}")
    if args.threads < 1:
        raise ValueError(f"threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    out = args.resume or args.out or default_out(args)
    make = lambda: gym.wrappers.RecordEpisodeStatistics(stacked_env(args))
    config = args.config  # type: ignore[attr-defined]
    tensorboard = None if args.tensorboard else False  # on by default where the tensorboard package is installed
    run = RunConfig(steps=args.steps, out=out, eval_every=args.eval_every, seed=args.seed,
                    resume=args.resume is not None, tensorboard=tensorboard, wandb=args.wandb, progress=args.progress)
    with RunFolder(out, config=dataclasses.replace(args, out=out), resume=run.resume, tensorboard=tensorboard,
                   wandb=args.wandb) as folder:
        agent = build_deep_agent(args.agent_name, make, config, args.seed, args.steps)
        try:
            start = time.perf_counter()
            result = run_loop(agent, lambda: eval_env(args), run, folder)
            seconds = time.perf_counter() - start
            steps = np.array([r["step"] for r in result.rows], dtype=np.float64)
            curves = {"greedy evaluation": (steps, [r["eval_mean"] for r in result.rows]),
                      "training episodes": (steps, [r["train_return"] for r in result.rows])}
            save_figure(learning_curves(curves, window=1, xlabel="environment steps",
                                        title=f"{args.agent_name} on {args.env}"), out / "curve.png")
            if args.video_episodes > 0:
                try:
                    env = video_env(stacked_env(args, render_mode="rgb_array"))
                except (ValueError, TypeError) as err:  # no rgb_array rendering: no video
                    print(f"note: no video ({err})", file=sys.stderr)
                else:
                    record_video(env, lambda o: agent.act(o), out / "eval.mp4", episodes=args.video_episodes,
                                 seed=args.seed, max_steps=VIDEO_STEPS)
                    env.close()
        finally:
            agent.close()
    return {"agent": args.agent_name, "env": args.env, "steps": args.steps, "mean_return": result.mean_return,
            "std_return": result.std_return, "episodes": result.episodes, "seconds": seconds,
            "best_step": result.best_step, "last_mean_return": result.last_mean_return, "out": str(out)}


# ---------------------------------------------------------------------- evaluate
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
        record_video(video_env(task_env(args, render_mode="rgb_array")), agent.act, args.video,
                     episodes=min(args.episodes, 3), seed=args.seed, max_steps=VIDEO_STEPS)
    return {"env": args.env, "agent": str(args.agent), "episodes": args.episodes, "mean_return": float(returns.mean()),
            "std_return": float(returns.std()), "returns": returns.tolist()}


def evaluate_deep(args: Evaluate) -> dict[str, Any]:
    from agents.deep.trainer import load_agent_state, restore

    state = load_agent_state(args.agent)  # safe: torch.load(weights_only=True), a one-line error otherwise
    if not isinstance(state, dict) or not isinstance(state.get("name"), str) or "steps" not in state:
        raise ValueError(f"checkpoint {args.agent} does not hold a deep agent (no name and steps)")
    agent = build_deep_agent(state["name"], lambda: gym.wrappers.RecordEpisodeStatistics(stacked_env(args)),
                             state.get("config"), 0, int(state["steps"]))
    try:
        restore(agent, state, args.agent)
    except ValueError as err:
        agent.close()
        raise ValueError(f"{err}; was it trained on {args.env} with these --option and --frame-stack values?") from None
    try:
        returns = evaluate(stacked_env(args), lambda o: agent.act(o), args.episodes, seed=args.seed)
        if args.video is not None:
            record_video(video_env(stacked_env(args, render_mode="rgb_array")), lambda o: agent.act(o), args.video,
                         episodes=min(args.episodes, 3), seed=args.seed, max_steps=VIDEO_STEPS)
    finally:
        agent.close()
    return {"env": args.env, "agent": str(args.agent), "episodes": args.episodes, "mean_return": float(returns.mean()),
            "std_return": float(returns.std()), "returns": returns.tolist()}
