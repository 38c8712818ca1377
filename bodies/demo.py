"""``make demo``'s §13 section (``OUT/bodies/``): the shipped body model in several shapes and poses, convolutional
pose machines' belief maps stage by stage, pictorial structures' MAP skeletons, and learned gradient descent
fitting a body step by step beside Adam at equal time, with the table of their errors.

Budgets are reduced so the section takes a few minutes on two cores (the captions say so); ``--full`` trains
the budgets of issue 10 (4400 renders, CPM's default steps, LGD 1500 steps, Adam 1000 steps).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from matplotlib.figure import Figure

from bodies.data import RenderConfig, load_renders, render_dataset
from bodies.fitting import AdamConfig, fit_adam, fit_errors, keypoint_problems, project
from bodies.lgd import LGDConfig, fit_lgd, train_lgd, unroll
from bodies.metrics import pck
from bodies.model import BodyModel
from bodies.prior import sample_poses
from bodies.skeleton import KEYPOINT_PARENTS
from envs.io.figures import PALETTE, figure_image, image_grid, save_figure
from envs.io.page import Item, command_line, write_index, write_section
from envs.io.video import side_by_side, write_video
from generative.training import FitConfig, set_threads

#: SMPL's body frame (+y up, facing +z) into vision3d's world (+z up): the body then faces -y.
BODY_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass
class Demo:
    """The §13 section of the demo page: body model, 2D pose and fitting, trained live on rendered bodies."""

    out: Path = Path("outputs/demo")
    """Folder of the demo page; the section goes into OUT/bodies."""
    images: int = 800
    """Rendered training images (10% held out)."""
    cpm_steps: int = 400
    """Convolutional pose machine steps."""
    lgd_steps: int = 300
    """Learned gradient descent training steps."""
    adam_steps: int = 300
    """Adam steps per body of the optimisation baseline."""
    fit_samples: int = 100
    """Held-out bodies that LGD and Adam fit."""
    threads: int = 1
    """Torch CPU threads."""
    full: bool = False
    """Train the issue's full budgets."""


def _rendered(folder: Path, config: RenderConfig) -> Path:
    """``folder`` holding ``config``'s renders: those already there when they are the same count, size and seed
    (a re-run reuses them), otherwise rendered afresh."""
    meta = folder / "meta.json"
    if meta.is_file():
        held = json.loads(meta.read_text())
        if [held.get(k) for k in ("count", "size", "seed")] == [config.count, config.size, config.seed]:
            return folder
        shutil.rmtree(folder)
    render_dataset(folder, config)
    return folder


def _body_mesh(model: BodyModel, vertices: np.ndarray) -> trimesh.Trimesh:
    colors = model.vertex_colors if model.vertex_colors is not None else np.full((model.num_vertices, 3), 180)
    return trimesh.Trimesh(vertices @ BODY_TO_WORLD.T, model.faces.numpy(), vertex_colors=colors, process=False)


def _turntables(folder: Path, model: BodyModel) -> list[Item]:
    """Four bodies (shapes from N(0, I), poses from the prior) turning, and the first three shape components."""
    from vision3d.render import orbit_frames

    rng = np.random.default_rng(4)
    betas = torch.as_tensor(rng.standard_normal((4, 10)) * np.array([1.5] + [1.0] * 9), dtype=torch.float32)
    pose = torch.as_tensor(sample_poses(4, rng), dtype=torch.float32)
    pose[0] = 0.0  # the rest pose first
    with torch.no_grad():
        vertices = model(betas, pose).vertices.numpy()
    videos = [list(orbit_frames(_body_mesh(model, v), frames=48, size=192, elevation=10.0)) for v in vertices]
    write_video(side_by_side(*videos), folder / "turntable.mp4", fps=16)
    from vision3d.camera import Intrinsics, look_at
    from vision3d.render import MeshRenderer, composite, framing_radius

    tiles, titles = [], []
    intrinsics = Intrinsics.from_fov(200, 200, 0.7)
    with torch.no_grad():  # one camera for all, so that stature shows
        radius = 1.15 * framing_radius(_body_mesh(model, model().vertices[0].numpy()), 0.7)
    c2w = look_at(np.array([0.0, -radius, 0.0]), up=(0.0, 0.0, 1.0))
    for component in range(3):
        for value in (-2.0, 0.0, 2.0):
            b = torch.zeros(1, 10)
            b[0, component] = value
            with torch.no_grad():
                mesh = _body_mesh(model, model(b).vertices[0].numpy())
            with MeshRenderer(mesh, intrinsics) as renderer:
                tiles.append(composite(renderer.render(c2w)[0]))
            titles.append(f"beta_{component + 1} = {value:+.0f}")
    save_figure(image_grid(tiles, titles, columns=3, cell=2.0, fontsize=9), folder / "shapes.png")
    return [
        {"kind": "video", "file": "turntable.mp4", "wide": True,
         "caption": "The shipped body model (assets/bodies, built procedurally: MIT) in four shapes beta ~ N(0, I) "
                    "and poses from the joint-limit prior, the first at rest: T + B_S(beta) + B_P(theta), skinned."},
        {"kind": "image", "file": "shapes.png",
         "caption": "The first three learned shape components (PCA of 300 registered phenotypes) at -2, 0 and +2 "
                    "standard deviations."},
    ]


def _skeleton(ax, points: np.ndarray, color: str, width: float = 1.5) -> None:
    """Bones and joints in ``color``, outlined in black so that they read on any background of the renders."""
    from matplotlib import patheffects

    outline = [patheffects.Stroke(linewidth=width + 1.5, foreground="black"), patheffects.Normal()]
    for k, p in enumerate(KEYPOINT_PARENTS):
        if p >= 0:
            ax.plot(points[[k, p], 0] - 0.5, points[[k, p], 1] - 0.5, color=color, lw=width, path_effects=outline,
                    solid_capstyle="round")
    ax.scatter(points[:, 0] - 0.5, points[:, 1] - 0.5, s=9, color=color, edgecolors="black", linewidths=0.6, zorder=3)


def _frame(images: np.ndarray, rows: list[tuple[str, np.ndarray, str]], truth: np.ndarray) -> Figure:
    """One picture: each row a method's skeletons over the images, the ground truth's thinner beneath them, in the
    palette's truth colour."""
    fig = Figure(figsize=(1.6 * len(images), 1.7 * len(rows) + 0.1), dpi=100, layout="constrained")
    fig.get_layout_engine().set(h_pad=0.02, w_pad=0.02, hspace=0.02, wspace=0.01)
    for r, (label, points, color) in enumerate(rows):
        for c, image in enumerate(images):
            ax = fig.add_subplot(len(rows), len(images), r * len(images) + c + 1)
            ax.imshow(image)
            _skeleton(ax, truth[c], PALETTE.truth, 1.0)
            _skeleton(ax, points[c], color)
            ax.set_axis_off()
            if c == 0:
                ax.set_title(label, fontsize=10, loc="left", color=color, fontweight="bold")
    return fig


def run_demo(args: Demo) -> Path:
    """Write OUT/bodies/ and rebuild OUT/index.html."""
    start = time.perf_counter()
    command = command_line("python -m bodies demo", args)
    set_threads(args.threads)
    if args.full:
        args = dataclasses.replace(args, images=4400, cpm_steps=2800, lgd_steps=1500, adam_steps=1000, fit_samples=300)
    folder = args.out / "bodies"
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "runs").exists():  # the demo owns its run folders: a re-run starts them afresh
        shutil.rmtree(folder / "runs")
    model = BodyModel.from_file()
    items = _turntables(folder, model)

    renders = load_renders(_rendered(folder / "data", RenderConfig(count=args.images, seed=0)))
    cut = int(0.9 * len(renders.images))
    train, held = renders.subset(np.arange(cut)), renders.subset(np.arange(cut, len(renders.images)))
    items += _pose_2d(folder, args, train, held)

    items += _fitting(folder, args, model, load_renders(_rendered(folder / "fit_data",
                                                                  RenderConfig(count=args.fit_samples, seed=1))))
    budget = "full" if args.full else "reduced"
    write_section(folder, "13", "Parametric human bodies (notes §13)",
                  f"SMPL-format bodies, 2D pose and learned gradient descent, trained live on {args.images} rendered "
                  f"bodies with a {budget} budget (CPM {args.cpm_steps} steps, LGD {args.lgd_steps} steps, Adam "
                  f"{args.adam_steps} steps per body)"
                  + (": `make demo-full` trains the issue's budgets." if not args.full else "."), items,
                  command=command)
    index = write_index(args.out)
    print(json.dumps({"index": str(index), "bodies_seconds": round(time.perf_counter() - start, 1)}))
    return index


def _pose_2d(folder: Path, args: Demo, train, held) -> list[Item]:
    from bodies.appearance2d import PictorialStructures
    from bodies.cpm import CPMConfig, predict, train_cpm

    config = CPMConfig()
    config = dataclasses.replace(config, fit=dataclasses.replace(config.fit, steps=args.cpm_steps, progress=False,
                                                                 eval_every=0, threads=args.threads))
    result = train_cpm(train.images, train.keypoints2d, train.visible, config, folder / "runs" / "cpm",
                       held_out=(held.images, held.keypoints2d, held.visible))
    shown = np.arange(4)
    prediction = predict(result.model, held.images[shown])
    tiles, titles = [], []
    for i in shown:
        tiles.append(held.images[i])
        titles.append("render")
        for t in range(config.stages):
            tiles.append(prediction.heatmaps[t, i, :-1].max(0))
            titles.append(f"stage {t + 1}")
    save_figure(image_grid(tiles, titles, columns=config.stages + 1, cell=1.6, cmap="magma", fontsize=8),
                folder / "cpm_stages.png")
    stage_text = ", ".join(f"stage {t + 1}: {v:.3f}" for t, v in enumerate(result.stage_pck))

    ps = PictorialStructures().fit(train.images, train.keypoints2d, train.visible)
    ps_points = ps.predict(held.images)
    ps_pck = pck(ps_points, held.keypoints2d, held.visible, 0.2, "torso").overall
    heat = predict(result.model, held.images).heatmaps[-1, :, :-1]
    combined = ps.predict_from_heatmaps(np.log(np.clip(heat, 1e-3, None)), image_size=held.images.shape[1])
    combined_pck = pck(combined, held.keypoints2d, held.visible, 0.2, "torso").overall
    picture = _frame(held.images[:8], [("pictorial structures (HOG unaries)", ps_points[:8], PALETTE.reference),
                                       ("pictorial structures on CPM beliefs", combined[:8], PALETTE.learned)],
                     held.keypoints2d[:8])
    save_figure(picture, folder / "pictorial.png", wide=True)
    return [
        {"kind": "image", "file": "cpm_stages.png",
         "caption": f"Convolutional pose machine (§13.1), {config.stages} stages: the belief maps (max over the 14 "
                    f"keypoints) sharpen stage by stage as the receptive field grows. Held-out PCK@0.2: {stage_text}."},
        {"kind": "image", "file": "pictorial.png", "wide": True,
         "caption": f"Pictorial structures (§13.1): exact MAP skeletons by dynamic programming with generalised "
                    f"distance transforms (ground truth in green). Held-out PCK@0.2 with learned HOG part filters "
                    f"(orange): {ps_pck:.3f}; with the CPM's belief maps as unaries (blue: body modelling and feature "
                    f"learning combined): {combined_pck:.3f}."},
    ]


def _fitting(folder: Path, args: Demo, model: BodyModel, test) -> list[Item]:
    config = LGDConfig(fit=FitConfig(steps=args.lgd_steps, lr=1e-3, warmup_steps=min(100, args.lgd_steps // 10),
                                     progress=False, threads=args.threads, checkpoint_every=max(1, args.lgd_steps)))
    net, _ = train_lgd(model, config, folder / "runs" / "lgd", progress=False)
    problems = keypoint_problems(test)
    x, visible, size = problems.x, problems.visible, problems.size
    lgd = fit_lgd(net, model, x, visible)
    adam = fit_adam(model, x, visible, AdamConfig(steps=args.adam_steps))
    per_step = adam.seconds / args.adam_steps
    equal_steps = max(1, round(lgd.seconds / per_step))
    adam_equal = fit_adam(model, x, visible, AdamConfig(steps=equal_steps))

    def row(name: str, out) -> list[str]:
        errors = fit_errors(model, out.theta, problems)
        return [name, f"{errors['pa_mpjpe_mm']:.1f}", f"{errors['mpjpe_mm']:.1f}", f"{errors['error_2d_px']:.2f}",
                f"{1000 * out.seconds / len(x):.2f}"]

    rows = [row(f"learned gradient descent ({config.steps} steps)", lgd),
            row(f"Adam, {args.adam_steps} steps x {AdamConfig().turns} starts", adam),
            row(f"Adam at LGD's time ({equal_steps} steps)", adam_equal)]

    # The video: LGD's iterates over four held-out images, beside Adam's after the same time.
    shown = np.arange(4)
    with torch.no_grad():
        thetas, _ = unroll(net, model, x[shown], visible[shown])
    frames = []
    for n, theta in enumerate(thetas):
        steps = max(0, round(n * (lgd.seconds / len(thetas)) / per_step))
        adam_n = fit_adam(model, x[shown], visible[shown], AdamConfig(steps=steps)) if steps else None
        with torch.no_grad():
            lgd_points = project(model, theta).numpy() * size + size / 2
            adam_theta = adam_n.theta if adam_n is not None else None
            adam_points = (project(model, adam_theta).numpy() * size + size / 2 if adam_theta is not None
                           else np.full_like(lgd_points, np.nan))
        frames.append(figure_image(_frame(test.images[shown], [
            (f"LGD step {n}", lgd_points, PALETTE.learned),
            (f"Adam after the same time ({steps} steps)", adam_points, PALETTE.reference)], test.keypoints2d[shown])))
    write_video(frames, folder / "lgd_fit.mp4", fps=1)
    return [
        {"kind": "video", "file": "lgd_fit.mp4", "wide": True,
         "caption": "Learned gradient descent (§13.3, Algorithm 7) fitting bodies to 2D keypoints from Theta_0 = 0, "
                    "one frame per learned step (blue), beside Adam (SMPLify-style, orange) given the same time; the "
                    "targets are in green."},
        {"kind": "table", "file": "runs/lgd/config.json",
         "columns": ["method", "PA-MPJPE (mm)", "MPJPE (mm)", "2D error (px)", "ms per body"], "rows": rows,
         "caption": f"Fitting {len(x)} held-out rendered bodies from their 2D keypoints only; 3D errors on the 14 "
                    f"keypoints, root-relative, PA after a similarity alignment (LGD trained {args.lgd_steps} steps "
                    f"here; the full budget trains 1500)."},
    ]


