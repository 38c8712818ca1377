"""What ``python -m vision3d render | fit | eval`` do. The argument dataclasses generate the command line.

``fit`` is the same for every method after training: marching cubes of each fitted shape's signed
distance (``extraction``), the metrics of ``metrics.evaluate_mesh`` against the dataset's ground-truth
``mesh.ply``, and a turntable video. One shape writes ``RUN/mesh.ply``, ``RUN/orbit.mp4`` and
``RUN/metrics.json``; several shapes (DeepSDF, or an occupancy network over several datasets) write
``RUN/shapes/<name>/`` for each and ``RUN/metrics.json`` holds every shape plus the mean.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import tyro

from envs.io import atomic_write_text
from vision3d.dataset import ExportConfig, export_dataset, load_mesh
from vision3d.deepsdf import DeepSDFConfig, fit_deepsdf
from vision3d.dvr import DVRConfig, evaluate_dvr, fit_dvr
from vision3d.extraction import extract_mesh, save_mesh
from vision3d.igr import IGRConfig, fit_igr
from vision3d.metrics import evaluate_mesh
from vision3d.occupancy import OccupancyConfig, fit_occupancy
from vision3d.render import orbit_video
from vision3d.shapes import SHAPES, load_shape
from vision3d.training import FittedShape

METRIC_KEYS = ("iou", "chamfer_l1", "normal_consistency", "fscore")


@dataclass
class Render:
    """Render a shape into a NeRF Blender-layout dataset with depth maps, point cloud and SDF samples."""

    out: Path
    """Dataset folder to write (transforms_*.json, PNGs, depth, mesh.ply, points.ply, samples.npz)."""
    shape: str = "torus"
    """A shape name (sphere, torus, box, capsule, torus_knot, chair, mug) or a mesh file (OBJ, PLY, STL, GLB)."""
    views: int = 100
    """Training views; validation and test views come on top (a tenth each, at least 5)."""
    size: int = 128
    """Image width and height in pixels."""
    seed: int = 0
    """Seed of the camera directions and the point samples."""
    json: bool = False
    """Print one JSON object with what was written."""


@dataclass
class FitArgs:
    """Options shared by every ``fit`` method."""

    data: tuple[Path, ...]
    """Dataset folder(s) written by ``render`` (DeepSDF and occupancy take several, one per shape)."""
    out: Path
    """Run folder: mesh.ply, metrics.json, orbit.mp4, metrics.csv and checkpoint.pt."""
    steps: int | None = None
    """Optimisation steps; default: the method's own."""
    seed: int | None = None
    """Seed; default: the method's own (0)."""
    resolution: int = 128
    """Marching-cubes grid resolution per axis."""
    resume: bool = False
    """Continue from ``out/checkpoint.pt``."""
    video: bool = True
    """Write a turntable video of each reconstruction."""
    json: bool = False
    """Print metrics.json."""


@dataclass
class FitOccupancy(FitArgs):
    """Occupancy network (notes §12.1): binary cross-entropy on labelled points of samples.npz."""

    config: OccupancyConfig = field(default_factory=OccupancyConfig)
    """Network and training hyperparameters."""


@dataclass
class FitDeepSDF(FitArgs):
    """DeepSDF auto-decoder (notes §12.1): one code per dataset, clamped L1 on samples.npz."""

    config: DeepSDFConfig = field(default_factory=DeepSDFConfig)
    """Network and training hyperparameters."""


@dataclass
class FitIGR(FitArgs):
    """IGR (notes §12.2): from points.ply alone, with the vanish and Eikonal terms."""

    config: IGRConfig = field(default_factory=IGRConfig)
    """Network and training hyperparameters."""


@dataclass
class FitDVR(FitArgs):
    """DVR (notes §12.3): from posed images and masks only, through the secant method."""

    config: DVRConfig = field(default_factory=DVRConfig)
    """Network, ray marching and training hyperparameters."""


Fit = (
    Annotated[FitOccupancy, tyro.conf.subcommand("occupancy")]
    | Annotated[FitDeepSDF, tyro.conf.subcommand("deepsdf")]
    | Annotated[FitIGR, tyro.conf.subcommand("igr")]
    | Annotated[FitDVR, tyro.conf.subcommand("dvr")]
)


@dataclass
class Eval:
    """Compare a mesh with a reference mesh: volumetric IoU, Chamfer-L1, normal consistency, F-score."""

    mesh: Path
    """The reconstruction (any format trimesh reads)."""
    reference: Path
    """The ground truth, e.g. a dataset's mesh.ply."""
    points: int = 100_000
    """Surface and volume samples per mesh."""
    seed: int = 0
    """Seed of the samples."""
    json: bool = False
    """Print one JSON object."""


def render(args: Render) -> dict[str, Any]:
    start = time.perf_counter()
    mesh = load_shape(args.shape)
    config = ExportConfig(views=args.views, size=args.size, seed=args.seed)
    out = export_dataset(mesh, args.out, config=config)
    name = args.shape if args.shape in SHAPES else Path(args.shape).name
    return {"out": str(out), "shape": name, "views": args.views, "size": args.size,
            "files": sorted(p.name for p in out.iterdir()), "seconds": round(time.perf_counter() - start, 2)}


def _with_overrides(config: Any, steps: int | None, seed: int | None) -> Any:
    """``config`` with the command line's ``--steps`` and ``--seed`` applied to its ``fit`` settings."""
    changes = {k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None}
    return dataclasses.replace(config, fit=dataclasses.replace(config.fit, **changes)) if changes else config


def _single(data: Sequence[Path], method: str) -> Path:
    if len(data) != 1:
        raise ValueError(f"--data: {method} fits one dataset, got {len(data)} folders")
    return data[0]


def fit_shapes(args: FitArgs) -> tuple[list[FittedShape], dict[str, Any]]:
    """Run the method of ``args``; return its shapes and any method-specific results."""
    config = _with_overrides(args.config, args.steps, args.seed)  # type: ignore[attr-defined]
    if isinstance(args, FitOccupancy):
        return fit_occupancy(list(args.data), args.out, config, resume=args.resume), {}
    if isinstance(args, FitDeepSDF):
        return fit_deepsdf(list(args.data), args.out, config, resume=args.resume), {}
    if isinstance(args, FitIGR):
        return fit_igr(_single(args.data, "igr"), args.out, config, resume=args.resume), {}
    if isinstance(args, FitDVR):
        data = _single(args.data, "dvr")
        shapes = fit_dvr(data, args.out, config, resume=args.resume)
        return shapes, {"dvr": evaluate_dvr(args.out, data)._asdict()}
    raise TypeError(f"unknown fit arguments {type(args).__name__}")


def reconstruct(
    shape: FittedShape, reference: Path, folder: Path, resolution: int, video: bool, seed: int = 0
) -> dict[str, float | None]:
    """Marching cubes of ``shape`` into ``folder/mesh.ply``, its metrics against ``reference``, a video."""
    mesh = extract_mesh(shape.sdf, resolution=resolution)
    save_mesh(mesh, folder / "mesh.ply")
    if video:
        orbit_video(mesh, folder / "orbit.mp4")
    return evaluate_mesh(mesh, load_mesh(reference), seed=seed).to_dict()


def fit(args: FitArgs, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Fit, extract, evaluate; write ``metrics.json`` and return its contents."""
    start = time.perf_counter()
    for folder in args.data:
        if not (folder / "mesh.ply").exists():
            raise ValueError(f"--data: {folder} has no mesh.ply (write datasets with `python -m vision3d render`)")
    names = [folder.name for folder in args.data]
    if len(set(names)) != len(names):
        raise ValueError(f"--data: the dataset folders must have different names, got {names}")
    shapes, extra = fit_shapes(args)
    fit_seconds = time.perf_counter() - start
    references = dict(zip(names, args.data))
    per_shape: dict[str, dict[str, float | None]] = {}
    for shape in shapes:
        folder = args.out if len(shapes) == 1 else args.out / "shapes" / shape.name
        progress(f"marching cubes and metrics: {shape.name}")
        per_shape[shape.name] = reconstruct(shape, references[shape.name] / "mesh.ply", folder, args.resolution,
                                            args.video)
    summary: dict[str, Any] = {"method": _method_name(args), "data": [str(p) for p in args.data]}
    if len(shapes) == 1:
        summary.update(next(iter(per_shape.values())))
    else:
        summary.update({key: _mean([m[key] for m in per_shape.values()]) for key in METRIC_KEYS})
        summary["worst_chamfer_l1"] = max(m["chamfer_l1"] for m in per_shape.values())
        summary["shapes"] = per_shape
    summary.update(extra)
    summary.update({"resolution": args.resolution, "fit_seconds": round(fit_seconds, 1),
                    "seconds": round(time.perf_counter() - start, 1)})
    atomic_write_text(args.out / "metrics.json", json.dumps(summary, indent=1))
    return summary


def _method_name(args: FitArgs) -> str:
    return {FitOccupancy: "occupancy", FitDeepSDF: "deepsdf", FitIGR: "igr", FitDVR: "dvr"}[type(args)]


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)  # type: ignore[arg-type]


def evaluate(args: Eval) -> dict[str, Any]:
    metrics = evaluate_mesh(load_mesh(args.mesh), load_mesh(args.reference), n_points=args.points, seed=args.seed)
    return {"mesh": str(args.mesh), "reference": str(args.reference), **metrics.to_dict()}
