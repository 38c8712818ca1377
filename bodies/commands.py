"""The command line of ``python -m bodies``: render data sets, train the 2D pose methods and LGD, fit bodies."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import tyro

from bodies.data import CameraRange, RenderConfig, load_renders, render_dataset
from envs.io.files import atomic_write_json

TrainMethod = Literal["cpm", "deeppose", "pictorial", "lgd"]


@dataclass
class Render:
    """Render posed, shaped bodies with exact 2D/3D ground truth (RGB, masks, keypoints, COCO JSON)."""

    out: Path
    """Data set folder to write (must be empty or new)."""
    poses: int = 100
    """Number of images (one body each)."""
    size: int = 128
    """Image width and height in pixels."""
    seed: int = 0
    """Seed of the poses, shapes, cameras and backgrounds."""
    shape_scale: float = 1.0
    """Standard deviation of the shape coefficients."""
    model: Path | None = None
    """An SMPL-format model file (.npz or SMPL .pkl); default: the shipped procedural body."""
    json: bool = False
    """Print one JSON object with what was written."""


@dataclass
class Train:
    """Train a 2D pose method (cpm, deeppose, pictorial) on rendered data, or learned gradient descent (lgd)."""

    method: Annotated[TrainMethod, tyro.conf.Positional]
    """cpm, deeppose and pictorial learn from --data's images; lgd draws its own problems (Algorithm 7)."""
    out: Path
    """Run folder (config.json, metrics.csv, checkpoint.pt, metrics.json)."""
    data: Path | None = None
    """Rendered data set (`python -m bodies render`); for lgd optional, used as held-out keypoints."""
    held_out: float = 0.1
    """Fraction of --data kept out of training and scored (PCK@0.2, per stage)."""
    steps: int | None = None
    """Training steps; default: the method's own (DeepPose: its first stage; the refinement stages keep theirs)."""
    seed: int = 0
    """Seed of the initialisation and the batches."""
    threads: int = 1
    """Torch CPU threads (one is often the fastest on a busy 2-core machine)."""
    resume: bool = False
    """Continue the run in --out from its checkpoint."""
    tensorboard: bool = True
    """Write the training curves to <out>/tensorboard (without the tensorboard package: one note, no log)."""
    wandb: bool = False
    """Also log them to Weights & Biases (needs the wandb package; offline unless an API key is configured)."""
    json: bool = False
    """Print metrics.json."""


@dataclass
class Fit:
    """Fit bodies to the 2D keypoints of a rendered data set: learned gradient descent or Adam (SMPLify-style)."""

    method: Annotated[Literal["lgd", "adam"], tyro.conf.Positional]
    """lgd: the learned steps of a `train lgd` run (--lgd); adam: 1000 Adam steps with pose and shape priors."""
    data: Path
    """Rendered data set; its keypoints2d are fitted, its 3D keypoints score the fit."""
    out: Path
    """Folder for metrics.json and fits.npz."""
    lgd: Path | None = None
    """Run folder of `train lgd` (needed for --method lgd)."""
    count: int | None = None
    """Fit only the first COUNT samples."""
    steps: int = 1000
    """Adam steps."""
    threads: int = 1
    """Torch CPU threads."""
    json: bool = False
    """Print metrics.json."""


@dataclass
class Export:
    """Write a body model as an SMPL-style .pkl of plain numpy arrays (for tools that read only SMPL pickles, such as
    smplx.SMPL(model_path=...))."""

    out: Path
    """The .pkl to write."""
    model: Path | None = None
    """An SMPL-format .npz; default: the shipped procedural body."""
    json: bool = False
    """Print one JSON object with what was written."""


def export(args: Export) -> dict[str, Any]:
    from bodies.model import default_model_path
    from bodies.model_files import read_model, write_smpl_pickle

    path = write_smpl_pickle(args.model or default_model_path(), args.out)
    arrays = read_model(path)  # read back through the restricted unpickler
    return {"out": str(path), "vertices": len(arrays.v_template), "joints": len(arrays.parents)}


def render(args: Render) -> dict[str, Any]:
    return render_dataset(args.out, RenderConfig(count=args.poses, size=args.size, seed=args.seed,
                                                 shape_scale=args.shape_scale, camera=CameraRange()),
                          model_path=args.model, progress=not args.json)


def _split(count: int, held_out: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"--held-out must be in (0, 1), got {held_out}")
    cut = max(1, round(count * (1 - held_out)))
    if cut >= count:
        raise ValueError(f"--data holds {count} images: too few to keep {held_out:.0%} out")
    return np.arange(cut), np.arange(cut, count)


def train(args: Train) -> dict[str, Any]:
    from generative.training import set_threads

    set_threads(args.threads)
    if args.method != "lgd" and args.data is None:
        raise ValueError(f"train {args.method} needs --data (a folder written by `python -m bodies render`)")
    start = time.perf_counter()
    if args.method == "lgd":
        summary = _train_lgd(args)
    else:
        renders = load_renders(args.data)
        train_idx, test_idx = _split(len(renders.images), args.held_out)
        tr, te = renders.subset(train_idx), renders.subset(test_idx)
        held = (te.images, te.keypoints2d, te.visible)
        summary = _TRAINERS[args.method](args, (tr.images, tr.keypoints2d, tr.visible), held)
    summary = {"method": args.method, **summary, "seconds": time.perf_counter() - start}
    atomic_write_json(args.out / "metrics.json", summary)
    return summary


def _fit_config(config: Any, args: Train) -> Any:
    changes = {"seed": args.seed, "threads": args.threads, "progress": not args.json, "tensorboard": args.tensorboard,
               "wandb": args.wandb}
    if args.steps is not None:
        changes["steps"] = args.steps
    return dataclasses.replace(config, fit=dataclasses.replace(config.fit, **changes))


def _train_cpm(args: Train, data: tuple, held: tuple) -> dict[str, Any]:
    from bodies.cpm import CPMConfig, train_cpm

    config = _fit_config(CPMConfig(), args)
    result = train_cpm(*data, config=config, run_dir=args.out, held_out=held, resume=args.resume)
    return {"pck_stage": list(result.stage_pck), "pck": result.stage_pck[-1], "train_images": len(data[0]),
            "held_out_images": len(held[0])}


def _train_deeppose(args: Train, data: tuple, held: tuple) -> dict[str, Any]:
    from bodies.deeppose import DeepPoseConfig, train_deeppose

    config = _fit_config(DeepPoseConfig(), args)
    result = train_deeppose(*data, config=config, run_dir=args.out, held_out=held)
    return {"pck_stage": list(result.stage_pck), "pck": result.stage_pck[-1], "train_images": len(data[0]),
            "held_out_images": len(held[0])}


def _train_pictorial(args: Train, data: tuple, held: tuple) -> dict[str, Any]:
    from bodies.appearance2d import PictorialConfig, PictorialStructures
    from bodies.metrics import pck

    args.out.mkdir(parents=True, exist_ok=True)
    model = PictorialStructures(PictorialConfig(seed=args.seed)).fit(*data)
    predicted = model.predict(held[0])
    np.savez(args.out / "predictions.npz", keypoints2d=predicted)
    return {"pck": pck(predicted, held[1], held[2], 0.2, "torso").overall, "train_images": len(data[0]),
            "held_out_images": len(held[0])}


_TRAINERS = {"cpm": _train_cpm, "deeppose": _train_deeppose, "pictorial": _train_pictorial}


def _train_lgd(args: Train) -> dict[str, Any]:
    from bodies.fitting import keypoint_problems
    from bodies.lgd import LGDConfig, train_lgd
    from bodies.model import BodyModel

    problems = None if args.data is None else keypoint_problems(load_renders(args.data, images=False))
    config = _fit_config(LGDConfig(size=128 if problems is None else problems.size), args)
    _, result = train_lgd(BodyModel.from_file(), config, args.out, resume=args.resume, held_out=problems,
                          progress=not args.json)
    return {"steps": result.steps, "final_loss": result.final_loss, **result.evaluation}


def fit(args: Fit) -> dict[str, Any]:
    from bodies.fitting import AdamConfig, fit_adam, fit_errors, keypoint_problems
    from bodies.model import BodyModel
    from generative.training import set_threads

    set_threads(args.threads)
    if args.method == "lgd" and args.lgd is None:
        raise ValueError("fit lgd needs --lgd RUN (a run folder of `python -m bodies train lgd`)")
    problems = keypoint_problems(load_renders(args.data, images=False), args.count)
    model = BodyModel.from_file()
    if args.method == "lgd":
        from bodies.lgd import LGDConfig, LGDNet, fit_lgd
        from envs.io.config import loads
        from generative.training import load_modules

        config = loads(LGDConfig, (args.lgd / "config.json").read_text(), where=str(args.lgd / "config.json"))
        net = LGDNet(config.steps, config.hidden)
        load_modules(args.lgd, {"net": net})
        out = fit_lgd(net, model, problems.x, problems.visible)
    else:
        out = fit_adam(model, problems.x, problems.visible, AdamConfig(steps=args.steps))
    samples = len(problems.x)
    decreasing = (out.losses[1:] <= out.losses[:-1]).all(0).float().mean() if args.method == "lgd" else None
    # `data` lets `python -m bodies view RUN` find the images the run fitted.
    summary = {"method": args.method, "data": str(args.data.resolve()), "samples": samples, **fit_errors(model, out.theta, problems),
               "seconds_per_sample": out.seconds / samples,
               "loss_per_step": [float(v) for v in out.losses.mean(1)] if args.method == "lgd" else None,
               "decreasing_every_step": None if decreasing is None else float(decreasing)}
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / "fits.npz", theta=out.theta.numpy(), losses=out.losses.numpy())
    atomic_write_json(args.out / "metrics.json", summary)
    return summary


COMMANDS: dict[str, type] = {"render": Render, "train": Train, "fit": Fit, "export-smpl": Export}
