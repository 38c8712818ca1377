"""``python -m vision3d compare``: every reconstruction method of notes §12 on one scene, in one table.

Each method of :data:`vision3d.commands.METHODS` is fitted by :func:`vision3d.commands.fit` into its own
run folder ``OUT/<method>/`` (a normal run: config.json, metrics.json, mesh or test renders, videos), and
the rows of ``OUT/comparison.md`` and ``OUT/comparison.json`` are read back from those ``metrics.json``:

* input -- what the method learns from (``Method.inputs``);
* geometry -- Chamfer-L1, volumetric IoU and normal consistency of the marching-cubes mesh against the
  dataset's ``mesh.ply`` (null for Gaussians, which have no implicit surface, and for a field without one);
* appearance -- PSNR and SSIM of the held-out test views (NeRF and Gaussians: ``appearance``; DVR: the
  PSNR of its own secant-method renders, ``dvr.psnr``, and no SSIM); null for the methods that render no image;
* fit seconds -- training time measured by ``fit`` (loading and training, not the evaluation);
* model size -- the values the model stores (network weights and buffers from ``checkpoint.pt``'s modules,
  or the Gaussians' attributes in ``point_cloud.ply``) and their bytes as float32.

``OUT/comparison.png`` shows one held-out test view: the dataset's image and ground-truth mesh, each
mesh method's mesh, and NeRF's and Gaussians' own renders, side by side with the key number in each title.

By default NeRF runs the CPU fast path (``fit nerf --preset ngp``, :func:`vision3d.nerf.cpu_preset`: hash encoding
and an occupancy grid); ``--nerf-preset paper`` runs the paper's MLP with hierarchical sampling (``fit nerf``'s default).
``--steps gaussians=N`` scales the Gaussians' densification and SH schedule with the budget (:func:`with_steps`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from envs.io.checkpoint import load_checkpoint
from envs.io.figures import image_grid, save_figure
from envs.io.files import atomic_write_json, atomic_write_text
from envs.io.run import holds_run
from vision3d.commands import FIT_COMMANDS, METHODS, NeRFPreset, check_fit_args, fit, nerf_config
from vision3d.splat_ply import read_splat_ply

COLUMNS = ("method", "input", "Chamfer-L1", "IoU", "normal consistency", "test PSNR (dB)", "test SSIM", "steps",
           "fit (s)", "parameters", "model size")
"""The columns of comparison.md (comparison.json holds the same numbers unrounded)."""
LEGEND = ("Chamfer-L1, IoU and normal consistency: the marching-cubes mesh against the dataset's mesh.ply. Test "
          "PSNR/SSIM: held-out views (DVR: its own renders, PSNR only). Fit: training seconds. Model size: the "
          "model's stored values as float32. —: not defined for the method (or no surface was found).")


@dataclass
class Compare:
    """Fit every method (occupancy, DeepSDF, IGR, DVR, NeRF, Gaussians) to one dataset and tabulate geometry,
    appearance, fit time and model size (OUT/comparison.md, OUT/comparison.json, OUT/comparison.png)."""

    data: Path
    """One dataset folder written by ``render`` (``--shading phong`` gives NeRF and Gaussians highlights to learn)."""
    out: Path
    """Folder of the comparison: one run folder per method (OUT/<method>/) and the table and picture."""
    methods: tuple[str, ...] = tuple(METHODS)
    """The methods to compare, in the table's order."""
    steps: tuple[str, ...] = ()
    """Per-method step budgets as METHOD=STEPS, e.g. ``--steps nerf=600 gaussians=1500``; others keep their own.
    Gaussians' densification and SH schedule scale with their budget."""
    nerf_preset: NeRFPreset = "ngp"
    """NeRF's settings, as ``fit nerf --preset``: ``ngp`` (hash encoding, occupancy grid: the CPU fast path),
    ``nerf`` (a small MLP) or ``paper`` (the paper's network with hierarchical sampling)."""
    resolution: int = 128
    """Marching-cubes grid resolution per axis."""
    seed: int | None = None
    """Seed of every fit; default: each method's own (0)."""
    threads: int = 1
    """Torch CPU threads of every fit."""
    video: bool = True
    """Write each run's turntable video(s)."""
    progress: bool = True
    """Show each fit's progress bar."""
    json: bool = False
    """Print comparison.json."""


class Row(NamedTuple):
    """One method's line of the comparison (None: not defined for the method, or no surface)."""

    method: str
    input: str
    chamfer_l1: float | None
    iou: float | None
    normal_consistency: float | None
    psnr: float | None  # dB, held-out test views
    ssim: float | None
    steps: int
    fit_seconds: float
    parameters: int  # values stored by the model
    model_bytes: int  # parameters as float32
    model_file: str  # the saved model, relative to the run folder
    model_file_bytes: int
    run: str  # the method's run folder


def parse_steps(pairs: Sequence[str], methods: Sequence[str]) -> dict[str, int]:
    """``["nerf=600", ...]`` -> ``{"nerf": 600}``; a malformed pair or a method not compared is a ``ValueError``."""
    steps: dict[str, int] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in methods:
            raise ValueError(f"--steps: {pair!r} names no compared method (expected METHOD=STEPS with METHOD one of "
                             f"{', '.join(methods)})")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"--steps: {pair!r} needs a positive whole number of steps after '='")
        steps[name] = int(value)
    return steps


def default_config(method: str, nerf_preset: NeRFPreset = "ngp") -> Any:
    """The config a method is compared with: its own defaults, NeRF's those of ``fit nerf --preset nerf_preset``."""
    return nerf_config(nerf_preset) if method == "nerf" else METHODS[method].config()


SCHEDULES: dict[str, tuple[str, ...]] = {
    "gaussians": ("densify_from", "densify_until", "sh_interval", "opacity_reset_interval"),
}
"""Config fields that count steps of a schedule laid out for the method's default budget; a comparison with
another budget scales them with it (Gaussians trained for a third of their steps still densify and raise
their SH degree at the same fractions of the run)."""


def with_steps(method: str, config: Any, steps: int) -> Any:
    """``config`` trained for ``steps`` steps, its schedule (:data:`SCHEDULES`) scaled by ``steps / fit.steps``."""
    ratio = steps / config.fit.steps
    scaled = {name: max(1, round(getattr(config, name) * ratio)) for name in SCHEDULES.get(method, ())}
    return dataclasses.replace(config, fit=dataclasses.replace(config.fit, steps=steps), **scaled)


def _with_fit(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, fit=dataclasses.replace(config.fit, **changes))


def plan(args: Compare, configs: Mapping[str, Any] | None = None,
         datasets: Mapping[str, Sequence[Path]] | None = None) -> dict[str, Any]:
    """One ``fit`` command per method, every argument checked before anything trains.

    ``configs`` replaces a method's config (the demo's reduced budgets); ``datasets`` lets a method that fits
    several datasets (DeepSDF, occupancy) take more folders, of which ``args.data`` must be one: its row
    then holds the metrics of that shape."""
    configs, datasets = dict(configs or {}), dict(datasets or {})
    if not args.methods:
        raise ValueError("--methods: name at least one method")
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown method {unknown[0]!r} (choose from {', '.join(METHODS)})")
    if len(set(args.methods)) != len(args.methods):
        raise ValueError(f"--methods: each method once, got {' '.join(args.methods)}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out: {args.out} is a file, not a folder")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    steps = parse_steps(args.steps, args.methods)
    commands = {}
    for method in args.methods:
        data = tuple(datasets.get(method, (args.data,)))
        if args.data not in data:
            raise ValueError(f"datasets[{method!r}] must include --data {args.data}, got {[str(p) for p in data]}")
        run = args.out / method
        if holds_run(run):
            raise ValueError(f"--out: {run} already holds a run; choose another --out")
        config = configs.get(method) or default_config(method, args.nerf_preset)
        if method in steps:
            config = with_steps(method, config, steps[method])
        config = _with_fit(config, progress=args.progress, threads=args.threads)
        preset = {"preset": args.nerf_preset} if method == "nerf" else {}  # recorded in config.json, as fit's
        command = FIT_COMMANDS[method](data=data, out=run, config=config, seed=args.seed, threads=args.threads,
                                       resolution=args.resolution, video=args.video, **preset)
        check_fit_args(command)
        commands[method] = command
    return commands


def model_size(run: Path, method: str) -> tuple[int, str, int]:
    """(values stored by the model, its file relative to ``run``, that file's bytes)."""
    if method == "gaussians":
        arrays = read_splat_ply(run / "point_cloud.ply")
        return sum(int(np.asarray(a).size) for a in arrays), "point_cloud.ply", (run / "point_cloud.ply").stat().st_size
    state = load_checkpoint(run / "checkpoint.pt")
    values = sum(int(t.numel()) for module in state["modules"].values() for t in module.values()
                 if hasattr(t, "numel") and t.is_floating_point())
    return values, "checkpoint.pt", (run / "checkpoint.pt").stat().st_size


def make_row(method: str, metrics: dict[str, Any], run: Path, scene: str) -> Row:
    """A row from a run's ``metrics.json`` (``scene``: the compared dataset's name, for runs of several shapes)."""
    geometry = metrics.get("shapes", {}).get(scene, metrics)
    appearance = metrics.get("appearance") or {}
    psnr = appearance.get("psnr", (metrics.get("dvr") or {}).get("psnr"))
    config = json.loads((run / "config.json").read_text())["config"]
    parameters, model_file, model_file_bytes = model_size(run, method)
    return Row(method, METHODS[method].inputs, geometry["chamfer_l1"], geometry["iou"], geometry["normal_consistency"],
               psnr, appearance.get("ssim"), int(config["fit"]["steps"]), float(metrics["fit_seconds"]), parameters,
               4 * parameters, model_file, model_file_bytes, str(run))


def _number(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB"


def table_cells(rows: Sequence[Row]) -> list[list[str]]:
    """The rows as the text of comparison.md's cells, in :data:`COLUMNS` order."""
    return [[r.method, r.input, _number(r.chamfer_l1, 4), _number(r.iou, 3), _number(r.normal_consistency, 3),
             _number(r.psnr, 2), _number(r.ssim, 3), str(r.steps), f"{r.fit_seconds:.1f}", f"{r.parameters:,}",
             _size(r.model_bytes)] for r in rows]


def markdown_table(rows: Sequence[Row], data: Path) -> str:
    """comparison.md: a title line naming the dataset, the table, and what the columns mean."""
    lines = [f"# Reconstruction methods on {data.name}", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_cells(rows)]
    lines += ["", LEGEND, ""]
    return "\n".join(lines)


def _mesh_path(run: Path, scene: str) -> Path:
    return run / "shapes" / scene / "mesh.ply" if (run / "shapes").is_dir() else run / "mesh.ply"


def comparison_picture(data: Path, rows: Sequence[Row], path: Path, view: int = 0) -> Path:
    """One held-out test view: the dataset's image and mesh, each mesh method's mesh, and the image methods'
    own renders (the left half of their ``test_renders/<view>.png``), with the key number in each title."""
    import imageio.v3 as iio

    from vision3d.dataset import load_blender, load_mesh
    from vision3d.render import MeshRenderer, composite

    test = load_blender(data, "test")
    c2w, intrinsics = test.poses[view], test.intrinsics

    def mesh_view(mesh_path: Path) -> np.ndarray:  # [H, W, 3] in [0, 1]
        with MeshRenderer(load_mesh(mesh_path), intrinsics) as renderer:
            return composite(renderer.render(c2w)[0]) / 255.0

    blank = np.ones((intrinsics.height, intrinsics.width, 3))
    images, titles = [test.rgb[view]], ["ground truth\n(test image)"]
    if (data / "mesh.ply").exists():
        images.append(mesh_view(data / "mesh.ply"))
        titles.append("ground truth\n(mesh)")
    for row in rows:
        run = Path(row.run)
        if METHODS[row.method].images is not None:
            pair = iio.imread(run / "test_renders" / f"{view}.png")
            images.append(pair[:, : pair.shape[1] // 2] / 255.0)
            titles.append(f"{row.method}\nPSNR {_number(row.psnr, 2)} dB")
        else:
            mesh = _mesh_path(run, data.name)
            images.append(mesh_view(mesh) if mesh.exists() else blank)
            titles.append(f"{row.method}\nChamfer-L1 {_number(row.chamfer_l1, 4)}" if mesh.exists()
                          else f"{row.method}\nno surface")
    save_figure(image_grid(images, titles, len(images), cell=2.6, fontsize=11), path, dpi=100)
    return path


def run_compare(args: Compare, configs: Mapping[str, Any] | None = None,
                datasets: Mapping[str, Sequence[Path]] | None = None,
                say: Callable[[str], None] = lambda _: None) -> list[Row]:
    """Fit each method (:func:`plan` checks everything first), then write comparison.md, .json and .png."""
    commands = plan(args, configs, datasets)
    rows = []
    for method, command in commands.items():
        say(f"compare: fitting {method} ({command.config.fit.steps} steps)")
        metrics = fit(command, progress=say)
        rows.append(make_row(method, metrics, command.out, args.data.name))
    atomic_write_json(args.out / "comparison.json", {"data": str(args.data), "columns": list(Row._fields),
                                                     "rows": [r._asdict() for r in rows]})
    atomic_write_text(args.out / "comparison.md", markdown_table(rows, args.data))
    say("compare: picture of a held-out view")
    comparison_picture(args.data, rows, args.out / "comparison.png")
    return rows
