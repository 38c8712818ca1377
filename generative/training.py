"""The one optimisation engine of every torch package (generative, vision3d, bodies).

A method is an :class:`Objective`: it owns its modules and data and computes ``loss(step, generator)``.
:func:`fit` owns what every run needs: seeding, the device and thread count, the optimizer and its
learning-rate schedule (warm-up, then cosine, linear or constant), gradient clipping exactly as notes
§4.3, an optional exponential moving average of the weights, the progress bar with the loss, the run
folder (``config.json``, ``metrics.csv``, atomic ``checkpoint.pt``, lock; :class:`envs.io.RunFolder`),
TensorBoard (on by default) and Weights & Biases (``--config.fit.wandb``) logs, bit-identical resume, a
clean stop on a non-finite loss, and data-parallel training under ``torchrun``.

Optional hooks on the objective, used only where a method needs them:

* ``optimizers(config) -> dict[str, Optimizer]`` — several optimizers (a GAN's two players); each
  gets the schedule; without ``train_step`` they all step after one backward pass.
* ``train_step(step, generator, optimizers) -> dict[str, float]`` — a custom step (it does its own
  backward passes and optimizer steps; the returned dict must hold ``"loss"``).
* ``on_step_end(step)`` — after the update (EMA of a target, densify/prune Gaussians).
* ``evaluate(step) -> dict[str, float]`` — metrics, every ``eval_every`` steps and at the end; the
  values join ``metrics.csv``. Declared as ``evaluate(step, run_dir)`` it also gets the run folder,
  to write sample grids and other pictures there.
* ``pictures(step) -> dict[str, np.ndarray]`` — images of the model at each evaluation (sample grids,
  test renders): name -> uint8 ``[H, W, 3]`` or ``[H, W]``, shown in TensorBoard and W&B. Called only
  when one of them is on (:attr:`envs.io.RunFolder.logs_images`), with the EMA weights like ``evaluate``.
* ``state_dict() / load_state_dict(state)`` — extra state of the objective for the checkpoint
  (tensors and plain data).

Reproducibility: batches are drawn inside the objective from the ``torch.Generator`` that ``fit``
seeds from ``FitConfig.seed`` (rank ``r`` of a distributed run: :func:`rank_generator`) and stores in
the checkpoint, so a resumed run continues with exactly the numbers of an uninterrupted one. Build
the objective's modules after ``seed_everything(seed)`` on ``resolve_device(config.device)``.

Several processes or machines: ``torchrun --nproc_per_node=N -m <package> ...`` runs the same
command in N processes; :func:`resolve_device` joins them into one process group (gloo on CPU, NCCL
on CUDA), :func:`fit` wraps the modules in ``DistributedDataParallel`` (gradients are averaged over
the ranks, so N ranks with batch B step like one process with batch N*B), logs the rank-averaged
loss, and only rank 0 writes the run folder.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from envs.io.config import to_jsonable
from envs.io.run import CHECKPOINT, RunFolder, TrainingDiverged, opened, resume_config, rng_state, set_rng_state
from generative.nn.clipping import clip_gradients

__all__ = [
    "CHECKPOINT",
    "EMA",
    "FitConfig",
    "FitResult",
    "Objective",
    "OneModel",
    "TrainingDiverged",
    "command_args",
    "distributed",
    "evaluating",
    "fit",
    "load_modules",
    "lr_factor",
    "rank_generator",
    "resolve_device",
    "seed_everything",
    "set_threads",
]

FORMAT = "machine-perception/fit-1"


@dataclass
class FitConfig:
    """How long and how fast to optimise, and how to watch the run."""

    steps: int = 2000
    """Optimisation steps in total (also when resuming: a resumed run stops at the same step)."""
    lr: float = 1e-3
    """Learning rate (parameter groups may scale their own)."""
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    """Adam, AdamW (decoupled weight decay) or SGD with momentum."""
    momentum: float = 0.9
    """Momentum of SGD."""
    weight_decay: float = 0.0
    """L2 penalty (Adam, SGD) or decoupled decay (AdamW); the Gaussian prior of notes §1.2."""
    schedule: Literal["cosine", "constant", "linear"] = "cosine"
    """Learning rate after the warm-up: cosine or linear decay to ``lr * lr_min_ratio``, or constant."""
    warmup_steps: int = 0
    """Steps of linear warm-up from 0 to ``lr`` (a run shorter than that never reaches ``lr``)."""
    lr_min_ratio: float = 0.05
    """Final learning rate of the cosine and linear schedules, as a fraction of ``lr``."""
    clip_norm: float | None = None
    """Gradient clipping threshold ``k`` of notes §4.3 (global norm); none by default."""
    ema_decay: float | None = None
    """Decay of an exponential moving average of the weights (e.g. 0.999); its weights are the result."""
    seed: int = 0
    """Seed of the initialisation and of the batch generator."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to fit; ``auto`` picks CUDA when available."""
    threads: int = 1
    """Torch CPU threads. One is the fastest for the small networks here on a busy 2-core machine."""
    log_every: int = 50
    """Steps between rows of ``metrics.csv``."""
    eval_every: int = 0
    """Steps between evaluations (``Objective.evaluate``); 0 evaluates only at the end."""
    checkpoint_every: int = 500
    """Steps between checkpoints (one is always written at the end)."""
    progress: bool = True
    """Show a progress bar with the loss."""
    tensorboard: bool = True
    """Write the logged rows and the evaluation images to ``RUN/tensorboard`` (without the tensorboard package:
    one note, no log)."""
    wandb: bool = False
    """Also log rows and images to Weights & Biases (needs the wandb package; offline unless an API key is
    configured, ``WANDB_MODE`` overrides; files in ``RUN/wandb``)."""

    def __post_init__(self) -> None:
        if min(self.steps, self.log_every, self.checkpoint_every, self.threads) < 1 or self.eval_every < 0:
            raise ValueError(
                f"steps, log_every, checkpoint_every and threads must be >= 1 and eval_every >= 0, got steps="
                f"{self.steps}, log_every={self.log_every}, checkpoint_every={self.checkpoint_every}, threads="
                f"{self.threads}, eval_every={self.eval_every}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)) or not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ValueError(f"lr must be > 0 and lr_min_ratio in [0, 1], got {self.lr}, {self.lr_min_ratio}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.clip_norm is not None and not (self.clip_norm > 0 and math.isfinite(self.clip_norm)):
            raise ValueError(f"clip_norm must be a positive number or None, got {self.clip_norm}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.weight_decay < 0 or not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"weight_decay must be >= 0 and momentum in [0, 1), got {self.weight_decay}, {self.momentum}")


class Objective(Protocol):
    """What :func:`fit` optimises (see the module docstring for the optional hooks)."""

    def modules(self) -> dict[str, nn.Module]:
        """The modules whose state_dicts are checkpointed (networks, code embeddings)."""
        ...

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups: ``{"params": [...]}`` with an optional ``"lr"`` of their own."""
        ...

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss of ``step`` (batches drawn from ``generator``) and the terms to log."""
        ...


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Evaluation mode (no dropout) inside the block, the model's previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class OneModel:
    """Base of an objective that trains one module, ``self.model``: its ``modules()`` and ``param_groups()``."""

    model: nn.Module

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.model.parameters())}]


class FitResult(NamedTuple):
    """What a fit did."""

    steps: int
    final_loss: float
    losses: list[float]  # loss of every step from the first (also across a resume)
    rows: list[dict[str, float]]  # the rows of metrics.csv
    run_dir: Path
    evaluation: dict[str, float]  # the last Objective.evaluate (empty without the hook)


# ---------------------------------------------------------------------- devices, threads, seeds
class Distributed(NamedTuple):
    """This process's place in a ``torchrun`` launch (rank 0 of 1 without one)."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed(device_type: str = "cpu") -> Distributed:
    """Join the process group of a ``torchrun`` launch (once; gloo on CPU, NCCL on CUDA) and return
    this process's rank; without ``torchrun`` (``WORLD_SIZE`` unset or 1) rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(0, 1, 0)
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error. Under ``torchrun``
    this also joins the process group, and ``cuda`` means this process's local GPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch.cuda.is_available() is False")
    kind = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
    place = distributed(kind)
    return torch.device(kind, place.local_rank) if kind == "cuda" and place.world_size > 1 else torch.device(kind)


def set_threads(threads: int) -> None:
    """Use ``threads`` torch CPU threads (intra-op); see :attr:`FitConfig.threads`."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(int(threads))


def seed_everything(seed: int) -> None:
    """Seed torch's global generators (module initialisation) and numpy's legacy one."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def rank_generator(seed: int, rank: int = 0) -> torch.Generator:
    """The batch generator of rank ``rank``: seeded with ``seed`` for rank 0 (a single process), and
    with a distinct, fixed seed for every other rank."""
    return torch.Generator().manual_seed(int(seed) + 1_000_003 * int(rank))


# ---------------------------------------------------------------------- schedule, optimizer, EMA
def lr_factor(step: int, config: FitConfig) -> float:
    """Multiplier of the learning rate at ``step``: linear warm-up, then the schedule of ``config``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress = min((step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1), 1.0)
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if config.schedule == "cosine" else 1.0 - progress
    return config.lr_min_ratio + (1.0 - config.lr_min_ratio) * shape


def make_optimizer(groups: list[dict[str, Any]], config: FitConfig) -> torch.optim.Optimizer:
    """The optimizer of ``config`` over parameter ``groups``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=config.lr, weight_decay=config.weight_decay)


class EMA:
    """Exponential moving average of parameters: ``theta_bar <- d theta_bar + (1 - d) theta`` after each step."""

    def __init__(self, modules: Mapping[str, nn.Module], decay: float) -> None:
        self.decay = decay
        self.params = {f"{n}.{k}": p for n, m in modules.items() for k, p in m.named_parameters()}
        self.shadow = {k: p.detach().clone() for k, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        for key, p in self.params.items():
            self.shadow[key].lerp_(p.detach(), 1.0 - self.decay)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside the block the modules hold the averaged weights."""
        backup = {k: p.detach().clone() for k, p in self.params.items()}
        self.copy_to()
        try:
            yield
        finally:
            with torch.no_grad():
                for key, p in self.params.items():
                    p.copy_(backup[key])

    @torch.no_grad()
    def copy_to(self) -> None:
        for key, p in self.params.items():
            p.copy_(self.shadow[key])

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        for key in self.shadow:
            self.shadow[key].copy_(state[key])


class _Wrapped(nn.Module):
    """The objective's modules in one ``nn.Module`` whose forward is the loss, for DistributedDataParallel."""

    def __init__(self, objective: Objective) -> None:
        super().__init__()
        self.objective = objective
        self.parts = nn.ModuleDict(objective.modules())

    def forward(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        return self.objective.loss(step, generator)


def _all_mean(values: list[float], place: Distributed) -> list[float]:
    """The mean of each value over the ranks (the values themselves in a single process)."""
    if place.world_size == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return (t / place.world_size).tolist()


def _gather_generators(generator: torch.Generator, place: Distributed) -> list[Tensor]:
    state = generator.get_state()
    if place.world_size == 1:
        return [state]
    import torch.distributed as dist

    states = [torch.empty_like(state) for _ in range(place.world_size)]
    dist.all_gather(states, state)
    return states


def _with_fit_options(args: Any) -> Any:
    """``args`` with its ``--steps``, ``--seed`` and ``--threads`` (where given) written into ``args.config.fit``."""
    changes = {k: getattr(args, k) for k in ("steps", "seed", "threads") if getattr(args, k) is not None}
    if not changes:
        return args
    config = dataclasses.replace(args.config, fit=dataclasses.replace(args.config.fit, **changes))
    return dataclasses.replace(args, config=config)


def command_args(args: Any, resumable: Sequence[str]) -> Any:
    """The options a training command runs with (``args``: a dataclass with ``config`` holding a ``fit:
    FitConfig``, and ``steps``/``seed``/``threads``/``resume``/``out``): the command line for a new run;
    for ``--resume``, the run's stored ``config.json`` except the dotted options in ``resumable``, which come
    from the command line (any other difference is named on stderr and ignored)."""
    if not args.resume:
        return _with_fit_options(args)
    return _with_fit_options(resume_config(type(args), args.out, _with_fit_options(args), resumable))


def load_modules(run_dir: Path, modules: Mapping[str, nn.Module], name: str = CHECKPOINT) -> int:
    """Load the modules of ``run_dir/checkpoint.pt`` into ``modules`` (safely); returns the checkpoint's step."""
    path = Path(run_dir) / name
    from envs.io.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    saved = state.get("modules", {})
    for key, module in modules.items():
        if key not in saved:
            raise ValueError(f"checkpoint {path} has no module {key!r} (it has {', '.join(saved) or 'none'})")
        try:
            module.load_state_dict(saved[key])
        except RuntimeError as err:
            raise ValueError(f"checkpoint {path}: module {key!r} does not fit: {str(err).splitlines()[0]}") from None
    return int(state["step"])


# ---------------------------------------------------------------------- the loop
def fit(
    objective: Objective,
    config: FitConfig,
    run_dir: RunFolder | str | os.PathLike[str],
    resume: bool = False,
    desc: str = "fit",
    record: Any = None,
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Minimise ``objective.loss`` for ``config.steps`` steps; see the module docstring.

    ``run_dir`` is a folder, or a :class:`~envs.io.run.RunFolder` that the caller opened (and closes;
    its ``resume`` flag then counts). Either way ``config.tensorboard`` and ``config.wandb`` choose the folder's
    trackers. ``record`` is what a new folder's ``config.json`` stores (the method's whole typed config); by
    default the ``FitConfig``. ``on_log`` sees every row of ``metrics.csv``.
    """
    set_threads(config.threads)
    device = resolve_device(config.device)
    place = distributed(device.type)
    tracking = {"tensorboard": None if config.tensorboard else False, "wandb": config.wandb}  # None: when installed
    with opened(run_dir, config=record if record is not None else config, resume=resume, writer=place.main,
                **tracking) as run:
        run.track(**tracking)  # a folder the caller opened takes them too
        return _fit(objective, config, run, run.resume, desc, place, on_log)


def _fit(objective: Objective, config: FitConfig, run: RunFolder, resume: bool, desc: str, place: Distributed,
         on_log: Callable[[dict[str, float]], None] | None) -> FitResult:
    modules = objective.modules()
    custom_step = getattr(objective, "train_step", None)
    if hasattr(objective, "optimizers"):
        optimizers: dict[str, torch.optim.Optimizer] = objective.optimizers(config)
    else:
        optimizers = {"main": make_optimizer(objective.param_groups(), config)}
    base_lrs = {k: [g["lr"] for g in opt.param_groups] for k, opt in optimizers.items()}
    parameters = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    ema = EMA(modules, config.ema_decay) if config.ema_decay is not None else None
    forward: Callable[[int, torch.Generator], tuple[Tensor, dict[str, float]]] = objective.loss
    if place.world_size > 1:
        if custom_step is not None:
            raise ValueError(f"{desc}: objectives with their own train_step do not run under torchrun yet")
        from torch.nn.parallel import DistributedDataParallel

        device = next(iter(parameters)).device
        forward = DistributedDataParallel(_Wrapped(objective), device_ids=[device.index] if device.type == "cuda" else None)
    generator = rank_generator(config.seed, place.rank)
    step, losses, pending, evaluation = 0, [], {}, {}
    if resume:
        state = run.load()
        if state.get("format") != FORMAT:
            raise ValueError(f"{run.path / CHECKPOINT} was not written by this engine (format {state.get('format')!r})")
        if len(state["generators"]) != place.world_size:
            raise ValueError(f"{run.path / CHECKPOINT} was written by {len(state['generators'])} processes; "
                             f"resume it with as many (got {place.world_size})")
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        generator.set_state(state["generators"][place.rank])
        set_rng_state(state["rng"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if hasattr(objective, "load_state_dict") and state.get("objective") is not None:
            objective.load_state_dict(state["objective"])
        run.load_state_dict(state["run"])
        step, losses, pending, evaluation = state["step"], state["losses"], state["pending"], state["evaluation"]

    def snapshot() -> dict[str, Any]:
        return {
            "format": FORMAT,
            "step": step,
            "modules": {name: module.state_dict() for name, module in modules.items()},
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "generators": _gather_generators(generator, place),
            "rng": rng_state(),
            "ema": ema.state_dict() if ema is not None else None,
            "objective": objective.state_dict() if hasattr(objective, "state_dict") else None,
            "run": run.state_dict(),
            "losses": list(losses),
            "pending": {k: list(v) for k, v in pending.items()},
            "evaluation": dict(evaluation),
            "config": to_jsonable(config),
        }

    def run_evaluation() -> dict[str, float]:
        pictures = getattr(objective, "pictures", None)
        if not hasattr(objective, "evaluate") and not callable(pictures):  # the same on every rank
            return {}
        draws = callable(pictures) and run.logs_images  # only rank 0's folder logs
        result: dict[str, float] = {}
        if place.main:
            with ema.swapped() if ema is not None else nullcontext():
                if hasattr(objective, "evaluate"):
                    # evaluate(step) or evaluate(step, run_dir): the latter may write pictures into the run folder
                    wants_dir = "run_dir" in inspect.signature(objective.evaluate).parameters
                    result = dict(objective.evaluate(step, **({"run_dir": run.path} if wants_dir else {})))
                for name, image in (pictures(step) if draws else {}).items():
                    run.log_image(name, image, step)
        if place.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
        return result

    bar = tqdm(total=config.steps, initial=step, desc=desc, unit="step", disable=not (config.progress and place.main))
    try:
        while step < config.steps:
            factor = lr_factor(step, config)
            for name, opt in optimizers.items():
                for group, base in zip(opt.param_groups, base_lrs[name]):
                    group["lr"] = base * factor
            if custom_step is not None:
                terms = dict(custom_step(step, generator, optimizers))
                value = float(terms.pop("loss"))
                _check_finite(value, step, desc, run)
            else:
                loss, terms = forward(step, generator)
                values = _all_mean([float(loss.detach()), *map(float, terms.values())], place)
                value, terms = values[0], dict(zip(terms, values[1:]))
                _check_finite(value, step, desc, run)
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.clip_norm is not None:
                    terms["grad_norm"] = clip_gradients(parameters, config.clip_norm)
                for opt in optimizers.values():
                    opt.step()
            if ema is not None:
                ema.update()
            if hasattr(objective, "on_step_end"):
                objective.on_step_end(step)
            step += 1
            losses.append(value)
            for key, term in {"loss": value, **terms}.items():
                pending.setdefault(key, []).append(float(term))
            bar.update(1)
            evaluate_now = step == config.steps or (config.eval_every and step % config.eval_every == 0)
            if evaluate_now:
                evaluation = run_evaluation()
            if step % config.log_every == 0 or step == config.steps or evaluate_now:
                row: dict[str, float] = {"step": step, "lr": config.lr * factor, "seconds": round(run.seconds, 3)}
                row.update({k: float(np.mean(v)) for k, v in pending.items()})
                if evaluate_now:
                    row.update(evaluation)
                run.log(row)
                pending = {}
                bar.set_postfix(loss=f"{row['loss']:.4g}")
                if on_log is not None:
                    on_log(row)
            if step % config.checkpoint_every == 0 or step == config.steps:
                run.save(snapshot())
    finally:
        bar.close()
    if ema is not None:
        ema.copy_to()
    return FitResult(step, losses[-1] if losses else float("nan"), list(losses), list(run.rows), run.path, evaluation)


def _check_finite(value: float, step: int, desc: str, run: RunFolder) -> None:
    if not math.isfinite(value):
        checkpoint = run.path / CHECKPOINT
        raise TrainingDiverged(
            f"{desc}: the loss became {value} at step {step}; stopped. The last good checkpoint is "
            f"{checkpoint if checkpoint.exists() else 'not written yet'}."
        )
