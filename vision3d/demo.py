"""``make demo``'s 3D sections: every method of notes §12 fitted to one Phong-shaded torus by
:func:`vision3d.compare.run_compare` (one run folder each, one comparison table), then

* §12.1-12.3 (``OUT/vision3d/``): ground truth beside the meshes of occupancy, IGR, DVR and DeepSDF, their
  turntable videos, DVR's renders of held-out views and a walk through DeepSDF's latent space;
* §12.4-12.5 (``OUT/vision3d-radiance/``): NeRF's and Gaussians' renders of held-out views beside the truth,
  their orbit and depth videos, and the comparison table and picture of all six methods.

Each section has a ``section.json`` manifest, and ``OUT/index.html`` is rebuilt from every section there
(``envs.io.page``), so they sit beside the sections of ``python -m generative demo`` and ``python -m agents demo``.
The fits are shorter than the defaults of ``python -m vision3d fit`` so that the demo stays within a few
minutes on two cores; NeRF and Gaussians get budgets of about the same training time, so that the table
compares them at equal wall-clock time. ``--full`` trains every method's own budget.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import trimesh
from tqdm.auto import tqdm

from envs.io.figures import image_grid, save_figure
from envs.io.page import Item, command_line, write_index, write_section
from envs.io.video import side_by_side, write_video
from generative.training import load_modules, set_threads
from vision3d.camera import Intrinsics, sphere_poses
from vision3d.compare import COLUMNS, Compare, Row, run_compare, table_cells, with_steps
from vision3d.dataset import ExportConfig, export_dataset, load_blender, load_mesh
from vision3d.deepsdf import DeepSDFConfig, DeepSDFModel, interpolate
from vision3d.dvr import DVRConfig, load_dvr, render_field
from vision3d.extraction import extract_mesh
from vision3d.fields import AutoDecoder
from vision3d.igr import IGRConfig
from vision3d.nerf import cpu_preset
from vision3d.occupancy import OccupancyConfig
from vision3d.render import MeshRenderer, composite, framing_radius
from vision3d.splat_training import SplatConfig

MESH_METHODS = ("occupancy", "igr", "dvr", "deepsdf")
IMAGE_METHODS = ("nerf", "gaussians")


@dataclass
class Demo:
    """Reconstruct a torus with every method of notes §12, compare them, and interpolate between DeepSDF shapes."""

    out: Path = Path("outputs/demo")
    """Folder of the demo page; the sections go into OUT/vision3d and OUT/vision3d-radiance."""
    shape: str = "torus"
    """The shape every method reconstructs (rendered with Phong highlights)."""
    deepsdf_shapes: tuple[str, ...] = ("torus", "sphere", "box", "mug")
    """The shapes one DeepSDF decoder holds (the first is ``shape``'s row of the table); the interpolation goes
    from the first to the last."""
    occupancy_steps: int = 800
    """Occupancy network steps."""
    igr_steps: int = 800
    """IGR steps."""
    dvr_steps: int = 600
    """DVR steps."""
    deepsdf_steps: int = 1000
    """DeepSDF steps."""
    nerf_steps: int = 500
    """NeRF steps (the CPU fast path, ``cpu_preset("ngp")``)."""
    gaussians_steps: int = 800
    """Gaussian splatting steps (densification and SH schedule scaled to them)."""
    resolution: int = 96
    """Marching-cubes resolution."""
    threads: int = 1
    """Torch CPU threads for the fits (one is the fastest on a busy 2-core machine)."""
    full: bool = False
    """Train every method with its own default budget (``fit``'s steps; NeRF: the ngp preset's) and extract at
    128^3, as the issue's numbers were measured; otherwise the reduced budgets above."""
    progress: bool = True
    """Show progress bars."""


def _view(mesh: trimesh.Trimesh, intrinsics: Intrinsics, c2w: np.ndarray) -> np.ndarray:  # -> [H, W, 3] in [0, 1]
    with MeshRenderer(mesh, intrinsics) as renderer:
        return composite(renderer.render(c2w)[0]) / 255.0


def _grid_picture(path: Path, images: list[np.ndarray], titles: list[str], columns: int, cell: float = 3.0,
                  wide: bool | None = None) -> None:
    """Images in a grid of ``cell``-inch cells, titled at 12 points, for a column of the page or (``wide``) its width."""
    save_figure(image_grid(images, titles, columns, cell=cell, fontsize=12), path, dpi=100, wide=wide)


def _orbit_strip(run: Path, path: Path, min_height: int = 192) -> str:
    """The run's colour and depth turntables side by side in one video at ``path``, each pixel repeated an integer
    number of times (nearest, no blur) until the frames are at least ``min_height`` high; returns what the caption
    says of that (``"64x64 renders, each pixel shown 3x3"``)."""
    import imageio.v2 as imageio

    videos = [imageio.mimread(run / name, format="FFMPEG", memtest=False) for name in ("orbit.mp4", "orbit_depth.mp4")]
    factor = max(1, -(-min_height // videos[0][0].shape[0]))
    enlarged = [[np.repeat(np.repeat(np.asarray(f)[..., :3], factor, 0), factor, 1) for f in v] for v in videos]
    write_video(side_by_side(*enlarged), path, fps=24)
    height, width = videos[0][0].shape[:2]
    return f"{width}x{height} renders" + (f", each pixel shown {factor}x{factor}" if factor > 1 else "")


def _configs(args: Demo) -> dict[str, Any]:
    """Every method's config at the demo's budget (``--full``: each one's own)."""
    configs = {"occupancy": OccupancyConfig(), "deepsdf": DeepSDFConfig(), "igr": IGRConfig(), "dvr": DVRConfig(),
               "nerf": cpu_preset("ngp"), "gaussians": SplatConfig()}
    if not args.full:
        configs = {name: with_steps(name, config, getattr(args, f"{name}_steps")) for name, config in configs.items()}
    return configs


def _load_deepsdf(run: Path, config: DeepSDFConfig, names: list[str]) -> DeepSDFModel:
    """The decoder and codes of a ``fit deepsdf`` run, from its checkpoint."""
    import torch

    decoder = AutoDecoder(config.network, len(names), config.code_std)
    load_modules(run, {"decoder": decoder})
    return DeepSDFModel(decoder.eval(), names, torch.device("cpu"))


def _interpolation(folder: Path, model: Any, names: list[str], resolution: int, frames: int = 7) -> list[Item]:
    """Meshes of the codes between the first and the last shape, as a picture strip and a video."""
    codes = model.decoder.codes.weight.detach()
    a, b = 0, len(names) - 1
    intrinsics = Intrinsics.from_fov(160, 160, 0.69)
    images = []
    alphas = np.linspace(0.0, 1.0, frames)
    for alpha in alphas:
        mesh = extract_mesh(interpolate(model.decoder.field, codes[a], codes[b], float(alpha), model.device),
                            resolution=resolution)
        c2w = sphere_poses(1, radius=framing_radius(mesh, intrinsics.camera_angle_x) * 1.15, mode="turntable",
                           elevation=30.0)[0]
        images.append(_view(mesh, intrinsics, c2w))
    _grid_picture(folder / "deepsdf_interpolation.png", images, [f"alpha = {x:.2f}" for x in alphas], frames,
                  cell=min(3.0, 13.5 / frames), wide=True)
    sequence = images + images[::-1]
    write_video([np.round(255 * np.clip(f, 0, 1)).astype(np.uint8) for f in sequence], folder / "deepsdf_interpolation.mp4",
                fps=4)
    return [
        {"kind": "image", "file": "deepsdf_interpolation.png", "wide": True,
         "caption": f"DeepSDF: decoding (1 - alpha) z_{names[a]} + alpha z_{names[b]}; one decoder holds "
                    f"{len(names)} shapes ({', '.join(names)})."},
        {"kind": "video", "file": "deepsdf_interpolation.mp4", "caption": "The same walk through latent space."},
    ]


def _radiance_section(folder: Path, runs: Path, rows: dict[str, Row], budget: str, args: Demo, command: str) -> Path:
    """§12.4-12.5: NeRF's and Gaussians' held-out views beside the truth, their videos, the table of all methods."""
    folder.mkdir(parents=True, exist_ok=True)
    nerf, splats = rows["nerf"], rows["gaussians"]
    metrics = {m: json.loads((runs / m / "metrics.json").read_text()) for m in IMAGE_METHODS}
    n_views = min(4, metrics["nerf"]["appearance"]["views"])
    pairs = {m: [iio.imread(runs / m / "test_renders" / f"{i}.png") for i in range(n_views)] for m in IMAGE_METHODS}
    truths = [p[:, p.shape[1] // 2:] for p in pairs["nerf"]]
    images, titles = list(truths), [f"test view {i}" for i in range(n_views)]
    for m, label in (("nerf", "NeRF"), ("gaussians", "Gaussians")):
        images += [p[:, : p.shape[1] // 2] for p in pairs[m]]
        titles += [f"{label}: {v['psnr']:.1f} dB" for v in metrics[m]["appearance"]["per_view"][:n_views]]
    _grid_picture(folder / "radiance_test_views.png", images, titles, n_views, cell=min(2.4, 13.5 / n_views), wide=True)
    shown = {m: _orbit_strip(runs / m, folder / f"{m}_orbit.mp4") for m in IMAGE_METHODS}
    for name in ("comparison.png", "comparison.md", "comparison.json"):
        shutil.copyfile(runs / name, folder / name)
    size = metrics["nerf"]["appearance"]["size"]
    timing = (f"NeRF {nerf.steps} steps in {nerf.fit_seconds:.0f} s, Gaussians {splats.steps} steps in "
              f"{splats.fit_seconds:.0f} s")
    items: list[Item] = [
        {"kind": "image", "file": "radiance_test_views.png", "wide": True,
         "caption": f"Held-out test views at {size[1]}x{size[0]}: ground truth (top), NeRF (hash encoding and "
                    f"occupancy grid, the CPU fast path) and 3D Gaussians, with each view's PSNR ({timing})."},
        {"kind": "video", "file": "nerf_orbit.mp4", "caption": (
            f"NeRF: a turntable of novel views by volume rendering (left) and their expected depth (right; "
            f"{shown['nerf']}).")},
        {"kind": "video", "file": "gaussians_orbit.mp4", "caption": (
            f"Gaussians ({metrics['gaussians']['n_gaussians']:,} after densification and pruning): the same turntable, "
            f"rasterised (left), and the alpha-blended depth (right; {shown['gaussians']}).")},
        {"kind": "table", "file": "comparison.md", "columns": list(COLUMNS), "rows": table_cells(list(rows.values())),
         "caption": f"All six methods on the same {args.shape} (python -m vision3d compare). Geometry against the "
                    "ground-truth mesh where a method has a surface; PSNR/SSIM on the held-out views where it "
                    "renders images (DVR: PSNR of its own renders). DeepSDF's row is the "
                    f"{args.shape} code of one decoder fitted to {len({args.shape, *args.deepsdf_shapes})} shapes. "
                    f"Model size: stored values as float32. {budget.capitalize()} budgets"
                    + (" (`make demo-full` trains the full ones)." if budget == "reduced" else ".")},
        {"kind": "image", "file": "comparison.png", "wide": True,
         "caption": "One held-out view: the dataset's image and mesh, each mesh method's marching-cubes mesh, and "
                    "NeRF's and Gaussians' own renders."},
    ]
    ahead, behind = (("Gaussians", "NeRF") if splats.psnr > nerf.psnr else ("NeRF", "Gaussians"))
    return write_section(
        folder, "12.4", "Radiance fields and Gaussian splatting (notes §12.4-12.5)",
        f"A radiance field (NeRF, volume rendering) and 3D Gaussians (rasterised splats) learn the {args.shape} "
        "from its posed images alone, view-dependent highlights included (Phong shading). "
        + (f"Trained live with reduced budgets chosen to take about the same time on one thread ({timing}): "
           if budget == "reduced" else f"Trained live with each method's full budget ({timing}): ")
        + f"on the held-out views NeRF reaches {nerf.psnr:.2f} dB and Gaussians {splats.psnr:.2f} dB, {ahead} "
        f"{abs(splats.psnr - nerf.psnr):.2f} dB ahead of {behind}"
        + (" (`make demo-full` trains each method's full budget)." if budget == "reduced" else "."), items,
        command=command)


def run_demo(args: Demo) -> Path:
    start = time.perf_counter()
    command = command_line("python -m vision3d demo", args)  # both sections come from one run of every method
    folder = args.out / "vision3d"
    data_root, runs = folder / "data", folder / "runs"
    say = tqdm.write if args.progress else (lambda _: None)
    set_threads(args.threads)
    if args.full:
        args = dataclasses.replace(args, resolution=128)
    configs = _configs(args)
    budget = "full" if args.full else "reduced"
    if runs.exists():  # the demo owns its run folders: a re-run starts them afresh
        shutil.rmtree(runs)

    say(f"vision3d demo: rendering the {args.shape} dataset (Phong shading)")
    data = export_dataset(args.shape, data_root / args.shape, config=ExportConfig(views=50, size=128, shading="phong"))
    deepsdf_shapes = list(dict.fromkeys([args.shape, *args.deepsdf_shapes]))
    for name in deepsdf_shapes[1:]:  # DeepSDF needs only the SDF samples and the mesh: few small views
        export_dataset(name, data_root / name, config=ExportConfig(views=4, size=32, val_views=1, test_views=1))

    # Every method on the same scene, one run folder each, and the comparison table (DeepSDF's decoder holds
    # several shapes; its row is the compared shape's).
    compare = Compare(data=data, out=runs, resolution=args.resolution, threads=args.threads, progress=args.progress)
    rows = {row.method: row for row in run_compare(compare, configs=configs, say=say,
                                                   datasets={"deepsdf": [data, *(data_root / n for n in deepsdf_shapes[1:])]})}

    # Ground truth beside every mesh, seen from one held-out camera.
    test = load_blender(data, "test")
    c2w, intrinsics = test.poses[0], test.intrinsics
    meshes = {"occupancy": runs / "occupancy" / "mesh.ply", "igr": runs / "igr" / "mesh.ply",
              "dvr": runs / "dvr" / "mesh.ply", "deepsdf": runs / "deepsdf" / "shapes" / args.shape / "mesh.ply"}
    meshes = {m: p for m, p in meshes.items() if p.exists()}  # a field without a surface has no mesh
    images = [_view(load_mesh(data / "mesh.ply"), intrinsics, c2w)]
    images += [_view(load_mesh(p), intrinsics, c2w) for p in meshes.values()]
    titles = ["ground truth"] + [f"{m}\nChamfer-L1 {rows[m].chamfer_l1:.4f}" for m in meshes]
    _grid_picture(folder / "reconstructions.png", images, titles, len(images), cell=min(3.0, 13.5 / len(images)),
                  wide=True)

    # DVR renders its own surface and texture (the secant method) for held-out cameras.
    dvr_views = load_blender(data, "test", size=64, max_views=4)
    rendering = render_field(load_dvr(runs / "dvr"), dvr_views.intrinsics, dvr_views.poses)
    _grid_picture(folder / "dvr_test_views.png", list(dvr_views.rgb) + list(rendering.rgb),
                  [f"test view {i}" for i in range(4)] + [f"DVR render {i}" for i in range(4)], 4, cell=1.6, wide=False)

    steps = {m: rows[m].steps for m in rows}
    items: list[Item] = [
        {"kind": "image", "file": "reconstructions.png", "wide": True,
         "caption": "A held-out view of the ground truth and of the marching-cubes meshes of each method: occupancy "
                    "network (§12.1, labelled points), IGR (§12.2, points only), DVR (§12.3, 50 images with masks "
                    f"at 64x64), DeepSDF (§12.1, one decoder for {len(deepsdf_shapes)} shapes)."},
        {"kind": "image", "file": "dvr_test_views.png",
         "caption": "DVR on held-out cameras: ground truth (top) and the learned occupancy and texture fields rendered "
                    "by ray marching with the secant method (bottom)."},
    ]
    for method, mesh_path in meshes.items():
        row = rows[method]
        items.append({"kind": "video", "file": str((mesh_path.parent / "orbit.mp4").relative_to(folder)),
                      "caption": f"{method}: IoU {row.iou:.3f}, Chamfer-L1 {row.chamfer_l1:.4f}, normal consistency "
                                 f"{row.normal_consistency:.3f}."})
    deepsdf = _load_deepsdf(runs / "deepsdf", configs["deepsdf"], deepsdf_shapes)
    items += _interpolation(folder, deepsdf, deepsdf_shapes, resolution=64)
    write_section(folder, "12.1", "Neural implicit surfaces (notes §12.1-12.3)",
                  f"Reconstructions of a {args.shape} from labelled points, from an unoriented point cloud and from "
                  "images alone, and a DeepSDF decoder shared by several shapes. Meshes come from marching cubes of "
                  "each network; the numbers compare them with the ground-truth mesh. "
                  f"Trained live with a {budget} budget: occupancy {steps['occupancy']}, IGR {steps['igr']}, "
                  f"DVR {steps['dvr']} and DeepSDF {steps['deepsdf']} steps, marching cubes at {args.resolution}^3"
                  + (" (`make demo-full` trains each method's full budget)." if not args.full else "."), items,
                  command=command)
    _radiance_section(args.out / "vision3d-radiance", runs, rows, budget, args, command)
    index = write_index(args.out)
    summary = {m: {k: getattr(r, k) for k in ("iou", "chamfer_l1", "normal_consistency", "psnr", "ssim",
                                                "fit_seconds", "steps")} for m, r in rows.items()}
    print(json.dumps({"index": str(index), "vision3d": summary, "seconds": round(time.perf_counter() - start, 1)}))
    return index
