"""``python -m bodies view RUN --data DATA``: a web viewer (viser) of the bodies a ``fit`` run fitted.

For each fitted sample the page shows, in 3D, the body ``M(theta, beta)`` and its 24 joints where the fit's
camera puts them, the image on the camera's frustum behind it (so that from the camera the body covers its
person), the data set's true body (a checkbox), and, in the side panel, the image with the fitted body drawn
over it. A slider picks the sample.

The fit's camera is weak perspective (notes §13.3, :mod:`bodies.fitting`): normalised image coordinates
``x = s Pi(R X) + t``, in pixels ``size x + size / 2``. In 3D it is the pinhole camera of the data set
(focal length ``f`` pixels) with the body's centre ``c`` (of its bounding box, before the rotation ``R``)
at the depth ``Z_0 = f / (s size)`` where one metre spans ``s size`` pixels, moved by ``t / s`` across the view:
``X_cam = R X + (t_x / s, t_y / s, Z_0 - (R c)_z)``. Its perspective image is the weak-perspective one at the
centre, and near it for a body much thinner than ``Z_0``; :mod:`bodies.data` places its bodies so, so a fit that
found the true parameters draws the body exactly where the data set's camera saw it. Camera axes are OpenCV's
(x right, y down, z forward); the scene has +z up, as in :mod:`bodies.data` (``CV_TO_WORLD``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import numpy as np
import tyro

if TYPE_CHECKING:
    import viser

    from bodies.data import Renders
    from bodies.model import BodyModel


@dataclass
class View:
    """Serve a web page (viser) showing the bodies of a `fit` run: each fitted mesh and its joints in 3D in front
    of its image, and the image with the fitted body drawn over it; prints the URL and runs until Ctrl-C."""

    run: Annotated[Path, tyro.conf.Positional]
    """Run folder of `python -m bodies fit` (fits.npz)."""
    data: Path | None = None
    """The data set the run fitted (`python -m bodies render`); default: the `data` its metrics.json names."""
    index: int = 0
    """The sample shown first (the page's slider picks another)."""
    port: int = 8080
    """Port to serve on (0: any free port; the URL printed says which)."""
    host: str = "127.0.0.1"
    """Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every network interface)."""
    body_color: tuple[int, int, int] = (235, 110, 40)
    """RGB (0-255) of the fitted body, in 3D and over the image."""
    overlay_alpha: float = 0.6
    """Opacity of the body drawn over the image (0: the image alone, 1: the body opaque)."""


class FittedBody(NamedTuple):
    """One fitted body in the fit's camera frame (OpenCV axes) and its weak-perspective image."""

    vertices: np.ndarray  # [N, 3] camera frame, metres: R V + (t / s, Z_0 - (R c)_z)
    joints: np.ndarray  # [24, 3] camera frame, metres
    uv: np.ndarray  # [N, 2] pixels, origin at the top-left corner: size (s (R V)_xy + t) + size / 2


class BodyContent(NamedTuple):
    """A fit run, loaded and checked."""

    theta: np.ndarray  # [B, 85] the fitted parameters (bodies.fitting.Layout)
    renders: Renders  # the data set (its first B samples were fitted)
    focal: float  # the data set's focal length, pixels


def fitted_body(model: BodyModel, theta: np.ndarray, size: int, focal: float) -> FittedBody:  # theta [85]
    """The mesh and joints of ``theta`` placed by the fit's camera (see the module docstring) and their image."""
    import torch

    from bodies.fitting import FACING, LAYOUT
    from bodies.lbs import batch_rodrigues

    t = torch.as_tensor(np.asarray(theta, dtype=np.float32)).reshape(1, -1)
    with torch.no_grad():
        out = model(t[:, LAYOUT.betas], t[:, LAYOUT.pose])
        R = (FACING.to(t) @ batch_rodrigues(t[:, LAYOUT.rot]))[0].double().numpy()
    rest = out.vertices[0].double().numpy()
    centre = R @ (0.5 * (rest.min(axis=0) + rest.max(axis=0)))
    vertices, joints = rest @ R.T, out.joints[0].double().numpy() @ R.T
    s, offset = float(theta[LAYOUT.scale][0]), np.asarray(theta[LAYOUT.offset], dtype=np.float64)
    if s <= 0:
        raise ValueError(f"theta: the weak-perspective scale s must be positive, got {s}")
    uv = size * (s * vertices[:, :2] + offset) + 0.5 * size
    shift = np.array([*(offset / s), focal / (s * size) - centre[2]])
    return FittedBody(vertices + shift, joints + shift, uv)


def draw_body(
    image: np.ndarray,  # [H, W, 3] uint8
    uv: np.ndarray,  # [N, 2] pixels, pixel (i, j) covering [i, i + 1) x [j, j + 1)
    depth: np.ndarray,  # [N] larger is farther
    points: np.ndarray,  # [N, 3] for the shading: the camera-frame vertices
    faces: np.ndarray,  # [F, 3]
    color: tuple[int, int, int],
    alpha: float,
    supersample: int = 4,
) -> np.ndarray:  # [H, W, 3] uint8
    """``image`` with the mesh drawn over it at opacity ``alpha``: its faces filled far to near (the painter's
    algorithm), each in ``color`` shaded by ``0.35 + 0.65 |n_z|`` (``n`` the face's unit normal). Faces are filled
    on a grid ``supersample`` times finer and averaged back, so a pixel is covered in proportion to its area
    inside the body (edges are antialiased and a thin limb is not widened by whole pixels)."""
    from PIL import Image, ImageDraw

    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got {list(image.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    k, (H, W) = supersample, image.shape[:2]
    faces = np.asarray(faces, dtype=np.int64)
    a, b, c = (points[faces[:, i]] for i in range(3))
    normals = np.cross(b - a, c - a)
    shade = 0.35 + 0.65 * np.abs(normals[:, 2]) / np.maximum(np.linalg.norm(normals, axis=1), 1e-12)
    layer, mask = Image.new("RGB", (k * W, k * H)), Image.new("L", (k * W, k * H))
    paint, cover = ImageDraw.Draw(layer), ImageDraw.Draw(mask)
    fine = k * np.asarray(uv, dtype=np.float64) - 0.5  # PIL puts fine pixel j's centre at j, ours is at (j + 0.5) / k
    for f in np.argsort(-depth[faces].mean(axis=1), kind="stable"):
        corners = [tuple(p) for p in fine[faces[f]].tolist()]
        paint.polygon(corners, fill=tuple(round(shade[f] * v) for v in color))
        cover.polygon(corners, fill=255)

    def pooled(array: np.ndarray) -> np.ndarray:  # [kH, kW, C] -> [H, W, C], the mean of each k x k block
        return array.reshape(H, k, W, k, -1).mean(axis=(1, 3))

    covered = pooled(np.asarray(mask, dtype=np.float64)[..., None] / 255.0)  # [H, W, 1] in [0, 1]
    painted = pooled(np.asarray(layer, dtype=np.float64))  # black where uncovered: already weighted by coverage
    out = (1.0 - alpha * covered) * image + alpha * painted
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def fit_dataset(run: Path, data: Path | None) -> Path:
    """The data set of a fit run: ``data`` if given, else the ``data`` entry of its metrics.json."""
    if data is not None:
        return data
    try:
        named = json.loads((run / "metrics.json").read_text()).get("data")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        named = None
    if isinstance(named, str):
        return Path(named)
    raise ValueError(f"view: {run}/metrics.json names no data set; pass --data DATA (the folder `fit` read)")


def load_content(args: View) -> BodyContent:
    """Read and check a fit run and its data set; a one-line ``ValueError`` otherwise."""
    from bodies.data import load_renders
    from bodies.fitting import LAYOUT
    from envs.io.arrays import read_npz

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535 (0: any free port), got {args.port}")
    if not 0.0 <= args.overlay_alpha <= 1.0:
        raise ValueError(f"--overlay-alpha must be in [0, 1], got {args.overlay_alpha}")
    if not all(0 <= c <= 255 for c in args.body_color):
        raise ValueError(f"--body-color must be three integers in 0..255, got {args.body_color}")
    fits = args.run / "fits.npz"
    if not fits.is_file():
        raise ValueError(f"view: {args.run} holds no fits.npz (expected a run folder of `python -m bodies fit`)")
    theta = read_npz(fits, ["theta"]).get("theta")
    if theta is None or theta.ndim != 2 or theta.shape[1] != LAYOUT.size or len(theta) == 0:
        raise ValueError(f"{fits}: expected theta [B, {LAYOUT.size}], got "
                         f"{None if theta is None else list(theta.shape)}")
    renders = load_renders(fit_dataset(args.run, args.data))
    if len(renders.images) < len(theta):
        raise ValueError(f"--data holds {len(renders.images)} samples, fewer than the {len(theta)} the run fitted")
    if not 0 <= args.index < len(theta):
        raise ValueError(f"--index must be in 0..{len(theta) - 1} (the run fitted {len(theta)}), got {args.index}")
    return BodyContent(theta.astype(np.float64), renders, float(renders.meta["intrinsics"]["fx"]))


def true_body(model: BodyModel, renders: Renders, i: int) -> np.ndarray:  # -> [N, 3] camera frame
    """The data set's body ``i`` where its camera saw it: ``R V + T``."""
    import torch

    with torch.no_grad():
        out = model(torch.as_tensor(renders.betas[i:i + 1], dtype=torch.float32),
                    torch.as_tensor(renders.body_pose[i:i + 1], dtype=torch.float32))
    return out.vertices[0].double().numpy() @ renders.R[i].T.astype(np.float64) + renders.T[i]


@dataclass
class BodyScene:
    """What :func:`build_scene` added to a server, and the sample it shows."""

    content: BodyContent
    handles: dict[str, Any]  # "body", "joints", "bones", "truth", "camera": scene handles; "image": the GUI image
    sample: Any  # the GUI slider picking the sample
    show_truth: Any  # the GUI checkbox showing the data set's body
    overlay: np.ndarray  # [H, W, 3] uint8 the image shown, with the fitted body drawn over it
    body: FittedBody | None = None


def build_scene(server: viser.ViserServer, content: BodyContent, args: View, model: BodyModel | None = None) -> BodyScene:
    """Add sample ``args.index`` of ``content`` and the GUI (sample slider, ground-truth checkbox) to ``server``."""
    import viser.transforms as tf

    from bodies.data import CV_TO_WORLD
    from bodies.model import BodyModel
    from bodies.skeleton import PARENTS

    model = model or BodyModel.from_file()
    faces = model.faces.numpy()
    renders, size = content.renders, int(content.renders.meta["size"])
    fov = 2.0 * np.arctan(0.5 * size / content.focal)
    rotation = tf.SO3.from_matrix(CV_TO_WORLD).wxyz  # the camera's OpenCV axes in the +z-up world
    bones = [(j, p) for j, p in enumerate(PARENTS) if p >= 0]
    server.scene.set_up_direction("+z")
    sample = server.gui.add_slider("sample", 0, len(content.theta) - 1, 1, args.index)
    show_truth = server.gui.add_checkbox("ground truth", initial_value=False)
    scene = BodyScene(content, {}, sample, show_truth, np.zeros((size, size, 3), np.uint8))

    def world(points: np.ndarray) -> np.ndarray:  # [..., 3] camera frame -> world
        return points @ CV_TO_WORLD.T

    def show(i: int) -> None:
        body = fitted_body(model, content.theta[i], size, content.focal)
        overlay = draw_body(renders.images[i], body.uv, body.vertices[:, 2], body.vertices, faces, args.body_color,
                            args.overlay_alpha)
        depth = float(body.vertices[:, 2].mean())
        h = scene.handles
        h["body"] = server.scene.add_mesh_simple("/body", world(body.vertices), faces, color=args.body_color,
                                                 side="double")
        h["joints"] = server.scene.add_point_cloud("/joints", world(body.joints), (20, 20, 20), point_size=0.04)
        h["bones"] = server.scene.add_line_segments(
            "/bones", world(np.stack([body.joints[[j for j, _ in bones]], body.joints[[p for _, p in bones]]], 1)),
            (20, 20, 20), thickness=0.012)
        h["truth"] = server.scene.add_mesh_simple("/truth", world(true_body(model, renders, i)), faces,
                                                  color=(120, 200, 120), opacity=0.5, visible=show_truth.value)
        h["camera"] = server.scene.add_camera_frustum("/camera", fov, 1.0, scale=1.4 * depth, thickness=0.01,
                                                      image=renders.images[i], wxyz=rotation, position=(0, 0, 0))
        if "image" in h:
            h["image"].image = overlay
        else:
            h["image"] = server.gui.add_image(overlay, label="fitted body over the image")
        scene.overlay, scene.body = overlay, body

    lock = threading.Lock()  # slider moves from several browsers: one scene update at a time

    def on_sample() -> None:
        with lock:
            show(int(sample.value))

    def on_truth() -> None:
        scene.handles["truth"].visible = show_truth.value

    sample.on_update(lambda _: on_sample())
    show_truth.on_update(lambda _: on_truth())
    show(args.index)
    vertices = scene.body.vertices  # type: ignore[union-attr]
    centre, height = vertices.mean(axis=0), float(np.ptp(vertices, axis=0).max())
    view = np.array([0.5, -0.35, -0.8])  # from the right, above, nearer the camera: the body and its image behind
    server.initial_camera.position = world(centre + 1.6 * height * view / np.linalg.norm(view))
    server.initial_camera.look_at = world(centre)
    return scene


def serve(args: View, stop: threading.Event | None = None, say: Callable[[str], None] | None = None) -> int:
    """Load the run, serve it, print ``viewer at http://HOST:PORT`` and block until Ctrl-C (or ``stop``)."""
    from vision3d.viewer import serve_scene

    content = load_content(args)  # every bad input fails here, before a port is taken
    return serve_scene(args.host, args.port, lambda server: build_scene(server, content, args), stop, say)
