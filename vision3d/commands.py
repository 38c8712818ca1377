"""What ``python -m vision3d render | fit | eval`` do. The command line is generated from dataclasses:
``fit``'s subcommands come from :data:`METHODS`, the one registry of reconstruction methods.

``fit`` is the same for every method after training: marching cubes of each fitted shape's signed
distance (``extraction``), the metrics of ``metrics.evaluate_mesh`` against the dataset's ground-truth
``mesh.ply``, and a turntable video. One shape writes ``RUN/mesh.ply``, ``RUN/orbit.mp4`` and
``RUN/metrics.json``; several shapes (DeepSDF, or an occupancy network over several datasets) write
``RUN/shapes/<name>/`` for each and ``RUN/metrics.json`` holds every shape plus the mean. The run
folder also holds ``config.json`` (this command, resolved), which ``--resume`` reads back.

A folder without ``mesh.ply`` (a user's own NeRF-synthetic scene) still fits with the methods that learn
from its images (DVR, NeRF); its geometry metrics are then null.

Methods that render images (NeRF; ``Method.images``) are also scored on the test views
(:func:`vision3d.appearance.evaluate_views`: ``appearance`` in ``metrics.json`` with PSNR, SSIM and frames per
second, ``RUN/test_renders/<i>.png``), and their ``orbit.mp4`` is a turntable of their own novel views with
``orbit_depth.mp4`` beside it (:func:`vision3d.appearance.orbit_videos`) instead of one of the mesh. Each method names the files it needs
(``Method.needs``), and ``check_fit_args`` refuses a folder without them before training.

``fit nerf --preset ngp`` (or ``nerf``) starts from :func:`vision3d.nerf.cpu_preset` instead of the paper's
network; ``python -m vision3d`` parses such a command line again with :func:`fit_command_with_preset`, so the
``--config.*`` options given still change the preset. ``Method.inputs`` names what each method learns from
(the ``input`` column of ``python -m vision3d compare``, :mod:`vision3d.compare`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
import tyro

from envs.io.cli import config_command, subcommands
from envs.io.files import atomic_write_json
from envs.io.run import RunFolder
from generative.training import command_args, distributed, resolve_device, set_threads
from vision3d.appearance import RenderFn, evaluate_views, orbit_videos
from vision3d.camera import Intrinsics
from vision3d.dataset import BlenderDataset, ExportConfig, export_dataset, load_blender, load_mesh
from vision3d.deepsdf import DeepSDFConfig, fit_deepsdf
from vision3d.dvr import DVRConfig, evaluate_dvr, fit_dvr
from vision3d.extraction import extract_mesh, save_mesh
from vision3d.fields import FittedShape, Reconstruction
from vision3d.gaussians import Gaussians
from vision3d.igr import IGRConfig, fit_igr
from vision3d.metrics import MeshMetrics, evaluate_mesh
from vision3d.nerf import NeRFConfig, cpu_preset, fit_nerf, render_image
from vision3d.occupancy import OccupancyConfig, fit_occupancy
from vision3d.render import orbit_video
from vision3d.shapes import SHAPES, load_shape
from vision3d.splat_training import SplatConfig, fit_gaussians
from vision3d.splatting import render as render_gaussians

METRIC_KEYS = ("iou", "chamfer_l1", "normal_consistency", "fscore")
RESOLUTION_RANGE = (8, 512)
"""Marching-cubes grids from 8^3 to 512^3 (512^3 needs about 2 GB; 2000^3 would need 30 GiB)."""
RESUMABLE = ("steps", "threads", "resume", "json", "video", "resolution", "config.fit.progress",
             "config.fit.threads", "config.fit.device")
"""Options that a resumed run takes from the command line; every other one comes from its config.json."""


@dataclass
class Render:
    """Render a shape into a NeRF Blender-layout dataset with depth maps, point cloud and SDF samples."""

    out: Path
    """Dataset folder to write (transforms_*.json, PNGs, depth, mesh.ply, points.ply, samples.npz)."""
    shape: str = "torus"
    """A shape name (sphere, torus, box, capsule, torus_knot, wire_knot, chair, mug) or a mesh file (OBJ, PLY,
    STL, GLB)."""
    views: int = 100
    """Training views; validation and test views come on top (a tenth each, at least 5)."""
    size: int = 128
    """Image width and height in pixels."""
    seed: int = 0
    """Seed of the camera directions and the point samples."""
    shading: Literal["lambert", "phong"] = "lambert"
    """lambert: one colour per surface point in every view; phong adds view-dependent Blinn-Phong highlights."""
    json: bool = False
    """Print one JSON object with what was written."""


@dataclass
class FitArgs:
    """Options shared by every ``fit`` method."""

    method: ClassVar[str] = ""

    data: tuple[Path, ...]
    """Dataset folder(s) written by ``render`` (DeepSDF and occupancy take several, one per shape); for DVR and
    NeRF, any NeRF Blender-layout folder (without mesh.ply there are no geometry metrics)."""
    out: Path
    """Run folder: config.json, mesh.ply, metrics.json, orbit.mp4, metrics.csv and checkpoint.pt (NeRF adds
    test_renders/ and orbit_depth.mp4)."""
    steps: int | None = None
    """Optimisation steps; default: the method's own (``--config.fit.steps``)."""
    seed: int | None = None
    """Seed; default: the method's own (0)."""
    threads: int | None = None
    """Torch CPU threads; default: the method's own (1, the fastest on a busy 2-core machine)."""
    resolution: int = 128
    """Marching-cubes grid resolution per axis (8 to 512)."""
    resume: bool = False
    """Continue the run in ``out`` from its checkpoint.pt, with the options of its config.json."""
    video: bool = True
    """Write a turntable video of each reconstruction."""
    json: bool = False
    """Print metrics.json."""


class Images(NamedTuple):
    """How a method that renders images is scored: its render function and the test views it is scored on."""

    render: RenderFn
    views: BlenderDataset  # the test split, composited on the method's background, at its resolution


class Method(NamedTuple):
    """One reconstruction method: its config, its fitting function and what the command line says of it."""

    config: type
    fit: Callable[[list[Path], RunFolder, Any, bool], Reconstruction]
    summary: str
    several: bool  # several datasets, one code per shape
    needs: tuple[str, ...] | Callable[[Any], tuple[str, ...]]  # the files a dataset folder must hold (or, given
    # the method's config, which files)
    inputs: str  # what the method learns from, in words (the comparison table's "input" column)
    evaluate: Callable[[Reconstruction, list[Path]], dict[str, Any]] | None = None  # extra metrics
    images: Callable[[Reconstruction, Path], Images] | None = None  # methods that render images (one dataset)


def _single(data: Sequence[Path], method: str) -> Path:
    if len(data) != 1:
        raise ValueError(f"--data: {method} fits one dataset, got {len(data)} folders")
    return data[0]


class FittedSplats(NamedTuple):
    """The model of a ``fit gaussians`` run: the final Gaussians and the config they render with."""

    gaussians: Gaussians
    config: SplatConfig


class SplatView(NamedTuple):
    """One rendered view of Gaussians, as :mod:`vision3d.appearance` takes it."""

    rgb: np.ndarray  # [H, W, 3] float32 in [0, 1], on the background
    depth: np.ndarray  # [H, W] float32 sum_i d_i alpha_i T_i (0 where nothing was drawn)


def _fit_gaussians(data: Sequence[Path], run: RunFolder, config: SplatConfig, resume: bool) -> Reconstruction:
    """Gaussians have no implicit surface to extract: no shapes (geometry metrics null), the splats are the model."""
    fitted = fit_gaussians(_single(data, "gaussians"), run, config, resume)
    return Reconstruction([], FittedSplats(fitted.gaussians, config))  # type: ignore[arg-type]


def _gaussian_images(reconstruction: Reconstruction, data: Path) -> Images:
    gaussians, config = reconstruction.model  # type: ignore[misc]
    background = torch.tensor(config.background, dtype=gaussians.means.dtype, device=gaussians.means.device)
    views = load_blender(data, "test", background=config.background, size=config.size)

    @torch.no_grad()
    def render_view(pose: np.ndarray, intrinsics: Intrinsics) -> SplatView:
        out = render_gaussians(gaussians, pose, intrinsics, background, config.sh_degree, config.tile,
                               dilation=config.dilation)  # as in training: the footprint the Gaussians were fitted with
        return SplatView(out.image.float().cpu().numpy(), out.depth.float().cpu().numpy())

    return Images(render_view, views)


def _nerf_images(reconstruction: Reconstruction, data: Path) -> Images:
    model = reconstruction.model
    views = load_blender(data, "test", background=model.config.background, size=model.config.size)
    return Images(lambda pose, intrinsics: render_image(model, pose, intrinsics), views)


METHODS: dict[str, Method] = {
    "occupancy": Method(
        OccupancyConfig, fit_occupancy, "Occupancy network (notes §12.1): binary cross-entropy on labelled points "
        "of samples.npz; one code per dataset.", several=True, needs=("samples.npz",),
        inputs="labelled points (samples.npz)"),
    "deepsdf": Method(
        DeepSDFConfig, fit_deepsdf, "DeepSDF auto-decoder (notes §12.1): one code per dataset, clamped L1 on the "
        "signed distances of samples.npz.", several=True, needs=("samples.npz",),
        inputs="SDF samples (samples.npz)"),
    "igr": Method(
        IGRConfig, lambda data, run, config, resume: fit_igr(_single(data, "igr"), run, config, resume),
        "IGR (notes §12.2): a signed distance from points.ply alone, with the vanish and Eikonal terms.",
        several=False, needs=("points.ply",), inputs="point cloud (points.ply)"),
    "dvr": Method(
        DVRConfig, lambda data, run, config, resume: fit_dvr(_single(data, "dvr"), run, config, resume),
        "DVR (notes §12.3): shape and texture from posed images and masks only, through the secant method.",
        several=False, needs=("transforms_train.json", "transforms_test.json"), inputs="images + masks",
        evaluate=lambda rec, data: {"dvr": evaluate_dvr(rec.model, data[0])._asdict()}),
    "nerf": Method(
        NeRFConfig, lambda data, run, config, resume: fit_nerf(_single(data, "nerf"), run, config, resume),
        "NeRF (notes §12.4): a radiance field from posed images by volume rendering, hierarchical sampling; the "
        "mesh is the level set sigma = --config.surface-density.",
        several=False, needs=("transforms_train.json", "transforms_test.json"), inputs="images",
        evaluate=lambda rec, data: {"density_threshold": rec.model.config.surface_density},
        images=_nerf_images),
    "gaussians": Method(
        SplatConfig, _fit_gaussians,
        "3D Gaussian splatting (notes §12.5): Gaussians from points.ply (or random), projected and composited by "
        "the tiled rasteriser, densified and pruned every 100 steps; writes point_cloud.ply.",
        several=False, needs=lambda config: ("transforms_train.json", "transforms_test.json",
                                             *(("points.ply",) if config.init == "points" else ())),
        inputs="images + points.ply",
        evaluate=lambda rec, data: {"n_gaussians": len(rec.model.gaussians)}, images=_gaussian_images),
}


NeRFPreset = Literal["paper", "nerf", "ngp"]
NERF_PRESET_FIELD = ("preset", Annotated[NeRFPreset, tyro.conf.arg(
    help="Settings to start from: the paper's network (the --config defaults shown here) or vision3d.nerf.cpu_preset "
         "'nerf' (a small MLP) or 'ngp' (hash encoding and occupancy grid, the CPU fast path); --config.* options "
         "given change the preset.")], dataclasses.field(default="paper"))

FIT_COMMANDS: dict[str, type[FitArgs]] = {
    name: config_command(name, FitArgs, method.config, method.summary, __name__,
                         fields=[NERF_PRESET_FIELD] if name == "nerf" else [], method=name)
    for name, method in METHODS.items()
}
FitMethod = subcommands(FIT_COMMANDS)
"""One subcommand per method of :data:`METHODS`."""


@dataclass
class FitCommand:
    """Fit a reconstruction method to rendered datasets, extract its mesh and score it against the ground truth
    (when the dataset has one: mesh.ply)."""

    method: Annotated[FitMethod, tyro.conf.arg(name="")]


def nerf_config(preset: NeRFPreset) -> NeRFConfig:
    """The NeRF config a preset starts from (``paper``: :class:`NeRFConfig`'s defaults)."""
    return NeRFConfig() if preset == "paper" else cpu_preset(preset)


def fit_command_with_preset(preset: NeRFPreset) -> type[FitCommand]:
    """:class:`FitCommand` whose ``fit nerf`` starts from ``nerf_config(preset)``. ``python -m vision3d`` parses a
    command line that names a preset again with it, so every ``--config.*`` option given changes the preset
    (``--help`` shows the paper's defaults: it answers before the preset is known)."""
    base = FIT_COMMANDS["nerf"]
    config = ("config", Annotated[NeRFConfig, tyro.conf.arg(help="nerf: hyperparameters.")],
              dataclasses.field(default_factory=lambda: nerf_config(preset)))
    nerf = dataclasses.make_dataclass(base.__name__, [config], bases=(base,), namespace={"__module__": __name__})
    nerf.__doc__ = base.__doc__
    method = ("method", Annotated[subcommands({**FIT_COMMANDS, "nerf": nerf}), tyro.conf.arg(name="")])
    command = dataclasses.make_dataclass("FitCommand", [method], bases=(FitCommand,), namespace={"__module__": __name__})
    command.__doc__ = FitCommand.__doc__
    return command


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
    config = ExportConfig(views=args.views, size=args.size, seed=args.seed, shading=args.shading)
    out = export_dataset(mesh, args.out, config=config)
    name = args.shape if args.shape in SHAPES else Path(args.shape).name
    return {"out": str(out), "shape": name, "views": args.views, "size": args.size, "shading": args.shading,
            "files": sorted(p.name for p in out.iterdir()), "seconds": round(time.perf_counter() - start, 2)}


def check_fit_args(args: FitArgs) -> None:
    """Everything that would fail late, checked before any training starts."""
    lo, hi = RESOLUTION_RANGE
    if not lo <= args.resolution <= hi:
        raise ValueError(f"--resolution must be in [{lo}, {hi}] (a {args.resolution}^3 grid), got {args.resolution}")
    if not METHODS[args.method].several and len(args.data) != 1:
        raise ValueError(f"--data: {args.method} fits one dataset, got {len(args.data)} folders")
    for folder in args.data:
        if not folder.is_dir():
            raise ValueError(f"--data: {folder} does not exist (write datasets with `python -m vision3d render`)")
        needs = METHODS[args.method].needs
        for name in needs(args.config) if callable(needs) else needs:  # type: ignore[attr-defined]
            if not (folder / name).exists():
                raise ValueError(f"--data: {folder} has no {name}, which fit {args.method} needs "
                                 "(write datasets with `python -m vision3d render`)")
        if (folder / "mesh.ply").exists():  # the reference of the metrics: a broken file fails now, not after training
            load_mesh(folder / "mesh.ply")
    names = [folder.name for folder in args.data]
    if len(set(names)) != len(names):
        raise ValueError(f"--data: the dataset folders must have different names, got {names}")


def reconstruct(
    shape: FittedShape, reference: Path | None, folder: Path, resolution: int, video: bool, seed: int = 0
) -> dict[str, float | None]:
    """Marching cubes of ``shape`` into ``folder/mesh.ply``, its metrics against the mesh file ``reference``
    (every one None when there is none: a dataset without ground-truth geometry), a video. A field with no
    surface at all (e.g. a radiance field whose density never reaches the threshold) keeps its run: the
    geometry metrics are None and stderr says why."""
    try:
        mesh = extract_mesh(shape.sdf, resolution=resolution)
    except ValueError as err:
        if "no surface" not in str(err):
            raise
        print(f"note: {shape.name}: {err}; no mesh.ply, geometry metrics are null", file=sys.stderr)
        return MeshMetrics.absent().to_dict()
    save_mesh(mesh, folder / "mesh.ply")
    if video:
        orbit_video(mesh, folder / "orbit.mp4")
    if reference is None or not reference.exists():
        return MeshMetrics.absent().to_dict()
    return evaluate_mesh(mesh, load_mesh(reference), seed=seed).to_dict()


def fit(args: FitArgs, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Fit, extract, evaluate; write ``metrics.json`` and return its contents."""
    start = time.perf_counter()
    args = command_args(args, RESUMABLE)
    check_fit_args(args)
    method = METHODS[args.method]
    config = args.config  # type: ignore[attr-defined]
    set_threads(config.fit.threads)
    resolve_device(config.fit.device)
    main = distributed().main
    with RunFolder(args.out, config=args, resume=args.resume, writer=main) as run:
        reconstruction = method.fit(list(args.data), run, config, args.resume)
        if not main:  # the other processes of a torchrun launch only help to train
            return {}
        fit_seconds = time.perf_counter() - start
        images = None if method.images is None else method.images(reconstruction, args.data[0])
        references = {folder.name: folder for folder in args.data}
        per_shape: dict[str, dict[str, float | None]] = {}
        for shape in reconstruction.shapes:
            folder = args.out if len(reconstruction.shapes) == 1 else args.out / "shapes" / shape.name
            progress(f"marching cubes and metrics: {shape.name}")
            per_shape[shape.name] = reconstruct(shape, references[shape.name] / "mesh.ply", folder, args.resolution,
                                                args.video and images is None)
        summary: dict[str, Any] = {"method": args.method, "data": [str(p) for p in args.data]}
        if not per_shape:  # no implicit surface (Gaussians)
            summary.update(MeshMetrics.absent().to_dict())
        elif len(per_shape) == 1:
            summary.update(next(iter(per_shape.values())))
        else:
            summary.update({key: _mean([m[key] for m in per_shape.values()]) for key in METRIC_KEYS})
            chamfers = [m["chamfer_l1"] for m in per_shape.values()]
            summary["worst_chamfer_l1"] = None if None in chamfers else max(chamfers)
            summary["shapes"] = per_shape
        if method.evaluate is not None:
            summary.update(method.evaluate(reconstruction, list(args.data)))
        if images is not None:
            progress("test views")
            summary["appearance"] = evaluate_views(images.render, images.views, args.out).to_dict()
            if args.video:
                progress("orbit videos")
                orbit_videos(images.render, images.views.intrinsics, args.out, radius=camera_radius(images.views))
        summary.update({"resolution": args.resolution, "fit_seconds": round(fit_seconds, 1),
                        "seconds": round(time.perf_counter() - start, 1)})
        atomic_write_json(args.out / "metrics.json", summary)
    return summary


def camera_radius(views: BlenderDataset) -> float:
    """Median distance of the views' cameras from the origin (the orbit videos' radius)."""
    return float(np.median(np.linalg.norm(views.poses[:, :3, 3], axis=1)))


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)  # type: ignore[arg-type]


def evaluate(args: Eval) -> dict[str, Any]:
    metrics = evaluate_mesh(load_mesh(args.mesh), load_mesh(args.reference), n_points=args.points, seed=args.seed)
    return {"mesh": str(args.mesh), "reference": str(args.reference), **metrics.to_dict()}
