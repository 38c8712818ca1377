"""``python -m vision3d view RUN|DATA``: a web viewer (viser) of a dataset or of a ``fit`` run.

The page shows the dataset's cameras as frustums carrying their images and, switchable from a ``layer``
dropdown, what the folder holds: the run's mesh (``RUN/mesh.ply``, or one per shape under ``RUN/shapes/``),
the dataset's ground-truth ``mesh.ply``, the Gaussians of ``fit gaussians`` (``RUN/point_cloud.ply``, drawn by
viser's splat renderer in the browser) and the radiance field of ``fit nerf`` (rendered here, at low
resolution, from the browser's camera each time it moves, and shown as the page's background).

Conventions: the scene is vision3d's world (+z up, :mod:`vision3d.camera`); viser's cameras and frustums use
OpenCV axes (+z forward, +y down), ours OpenGL (-z forward, +y up), so a pose turns by ``diag(1, -1, -1)``
on the way in and out (:func:`frustum_rotation`, :func:`browser_c2w`).

Loading (:func:`load_content`) reads and checks every file before the server starts, so a bad folder ends
with one line; :func:`build_scene` then adds it all to a server and returns the handles (the tests call it);
:func:`serve` prints ``viewer at http://HOST:PORT`` and serves until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, NamedTuple, TypeVar

import numpy as np
import tyro

from vision3d.camera import Intrinsics

if TYPE_CHECKING:
    import trimesh
    import viser

    from vision3d.dataset import BlenderDataset
    from vision3d.nerf import NeRFModel
    from vision3d.splat_ply import SplatArrays

Layer = Literal["mesh", "ground-truth", "gaussians", "nerf"]
GROUND_TRUTH = "ground-truth"
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
"""Right-multiplying a camera's rotation by this turns OpenGL camera axes into OpenCV ones (and back)."""
DEFAULT_MESH_COLOR = (140, 170, 210)


@dataclass
class View:
    """Serve a web page (viser) showing a dataset or a fit run: cameras with their images, the mesh, the
    Gaussians or NeRF renders from the browser's camera; prints the URL and runs until Ctrl-C."""

    path: Annotated[Path, tyro.conf.Positional]
    """A run folder of `fit` (its config.json names the dataset) or a dataset folder (transforms_*.json)."""
    port: int = 8080
    """Port to serve on (0: any free port; the URL printed says which)."""
    host: str = "127.0.0.1"
    """Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every network interface)."""
    data: Path | None = None
    """The dataset of a run folder; default: the one its config.json names (give it when the data moved)."""
    split: Literal["train", "val", "test"] = "train"
    """The split whose cameras are drawn."""
    max_cameras: int = 100
    """Draw at most the split's first MAX_CAMERAS cameras."""
    image_size: int = 64
    """Width and height of the images drawn in the frustums (pixels)."""
    layer: Layer | None = None
    """The layer shown first; default: the run's own result (gaussians, nerf, mesh), else the ground truth."""
    mesh_color: tuple[int, int, int] | None = None
    """RGB (0-255) of every mesh; default: a mesh file's vertex colours where it has them, else light blue."""
    nerf_resolution: int = 64
    """Height in pixels of the NeRF renders at the browser's camera (the width follows the window's aspect)."""


class SceneContent(NamedTuple):
    """What a viewer shows, loaded and checked: the dataset, its cameras and the layers the folder holds."""

    data: Path  # the dataset folder
    cameras: BlenderDataset  # the split's first max_cameras views at image_size
    meshes: dict[str, trimesh.Trimesh]  # layer name -> mesh ("mesh", "mesh <shape>", "ground-truth")
    splats: SplatArrays | None  # the Gaussians of a `fit gaussians` run
    nerf: NeRFModel | None  # the radiance field of a `fit nerf` run


@dataclass
class ViewerScene:
    """What :func:`build_scene` added to a server."""

    content: SceneContent
    frustums: list[Any]  # viser CameraFrustumHandle, one per camera
    layers: dict[str, list[Any]]  # layer name -> its scene handles (the NeRF layer has none: it is a background)
    layer: Any  # the GUI dropdown choosing the layer
    show_cameras: Any  # the GUI checkbox showing the frustums


# --- poses: OpenGL (ours) <-> OpenCV (viser) ------------------------------------------------------------


def frustum_rotation(c2w: np.ndarray) -> np.ndarray:  # [4, 4] OpenGL camera-to-world -> [4] wxyz
    """The quaternion ``(w, x, y, z)`` of a viser frustum (OpenCV axes) drawn at the camera ``c2w``."""
    import viser.transforms as tf

    return tf.SO3.from_matrix(np.asarray(c2w, dtype=np.float64)[:3, :3] @ OPENGL_TO_OPENCV).wxyz


def browser_c2w(wxyz: np.ndarray, position: np.ndarray) -> np.ndarray:  # [4], [3] -> [4, 4]
    """Our camera-to-world pose (OpenGL axes) of a browser camera given as viser gives it (OpenCV axes)."""
    import viser.transforms as tf

    c2w = np.eye(4)
    c2w[:3, :3] = tf.SO3(np.asarray(wxyz, dtype=np.float64)).as_matrix() @ OPENGL_TO_OPENCV
    c2w[:3, 3] = position
    return c2w


def browser_intrinsics(fov: float, aspect: float, height: int) -> Intrinsics:
    """A pinhole camera ``height`` pixels high with the browser's vertical field of view and aspect (w / h)."""
    if not (0.0 < fov < math.pi and aspect > 0 and height > 0):
        raise ValueError(f"browser camera: expected 0 < fov < pi, aspect > 0, height > 0; got {fov}, {aspect}, "
                         f"{height}")
    width = max(1, round(height * aspect))
    focal = 0.5 * height / math.tan(0.5 * fov)
    return Intrinsics(width, height, focal, focal, 0.5 * width, 0.5 * height)


def frustum_shape(intrinsics: Intrinsics) -> tuple[float, float]:
    """Vertical field of view (radians) and aspect (width / height of the image plane) of a camera."""
    fov = 2.0 * math.atan(0.5 * intrinsics.height / intrinsics.fy)
    aspect = (intrinsics.width / intrinsics.fx) / (intrinsics.height / intrinsics.fy)
    return fov, aspect


class BrowserCamera(NamedTuple):
    """A browser's camera as viser reports it: rotation and position of OpenCV axes, vertical fov, aspect."""

    wxyz: np.ndarray  # [4]
    position: np.ndarray  # [3]
    fov: float
    aspect: float


@dataclass
class NeRFLayer:
    """Renders a radiance field at a browser's camera, ``height`` pixels high."""

    model: NeRFModel
    height: int

    def render(self, camera: BrowserCamera) -> np.ndarray:  # -> [height, W, 3] uint8
        """One view of the field from ``camera`` on the config's background (:func:`vision3d.nerf.render_image`)."""
        from vision3d.nerf import render_image

        intrinsics = browser_intrinsics(camera.fov, camera.aspect, self.height)
        rgb = render_image(self.model, browser_c2w(camera.wxyz, camera.position), intrinsics).rgb
        return np.round(255 * np.clip(rgb, 0.0, 1.0)).astype(np.uint8)


T = TypeVar("T")
_EMPTY = object()


class LatestOnly(Generic[T]):
    """Runs ``work`` on the newest item submitted: an item submitted while one is being worked on replaces any
    item still waiting, so a slow render never queues behind a stream of camera moves. Thread-safe; the work is
    done in a submitting thread, one item at a time."""

    def __init__(self, work: Callable[[T], None]) -> None:
        self._work = work
        self._pending: Any = _EMPTY
        self._lock = threading.Lock()  # guards _pending
        self._busy = threading.Lock()  # held by the thread doing the work

    def submit(self, item: T) -> None:
        with self._lock:
            self._pending = item
        while self._busy.acquire(blocking=False):
            try:
                while True:
                    with self._lock:
                        item, self._pending = self._pending, _EMPTY
                    if item is _EMPTY:
                        break
                    self._work(item)
            finally:
                self._busy.release()
            with self._lock:  # an item that came between the last check and the release is ours to do
                if self._pending is _EMPTY:
                    return


# --- loading ------------------------------------------------------------------------------------------


def check_view_args(args: View) -> None:
    """The options that need no file, checked first."""
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535 (0: any free port), got {args.port}")
    for name in ("max_cameras", "image_size", "nerf_resolution"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.mesh_color is not None and not all(0 <= c <= 255 for c in args.mesh_color):
        raise ValueError(f"--mesh-color must be three integers in 0..255, got {args.mesh_color}")


def run_dataset(run: Path, data: Path | None) -> Path:
    """The dataset a run folder was fitted to: ``data`` if given, else the first of its config.json's ``data``."""
    if data is not None:
        return data
    config_path = run / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config_path}: cannot read the run's config ({type(exc).__name__}); pass --data") from None
    named = config.get("data") if isinstance(config, dict) else None
    named = named[0] if isinstance(named, list) and named else named
    folder = Path(named) if isinstance(named, str) else None
    if folder is None:
        raise ValueError(f"{config_path} names no dataset (no 'data' entry); pass --data DATA")
    if not folder.is_dir():
        raise ValueError(f"{config_path} names the dataset {folder}, which does not exist here; pass --data DATA")
    return folder


def run_meshes(run: Path) -> dict[str, Path]:
    """The meshes a run folder holds: ``mesh`` (one shape) or ``mesh <name>`` for each of ``shapes/<name>/``."""
    meshes = {"mesh": run / "mesh.ply"} if (run / "mesh.ply").is_file() else {}
    shapes = run / "shapes"
    if shapes.is_dir():
        meshes.update({f"mesh {folder.name}": folder / "mesh.ply" for folder in sorted(shapes.iterdir())
                       if (folder / "mesh.ply").is_file()})
    return meshes


def load_content(args: View) -> SceneContent:
    """Read and check what ``args.path`` (a run or dataset folder) shows; a one-line ``ValueError`` otherwise."""
    from vision3d.dataset import load_blender, load_mesh

    check_view_args(args)
    path = args.path
    if not path.is_dir():
        raise ValueError(f"view: {path} is not a folder (expected a run folder of `fit` or a dataset folder)")
    is_run = (path / "config.json").is_file()
    if not is_run and not any(path.glob("transforms_*.json")):
        raise ValueError(f"view: {path} holds neither a run (config.json) nor a dataset (transforms_*.json)")
    data = run_dataset(path, args.data) if is_run else path
    if not (data / f"transforms_{args.split}.json").is_file():
        raise ValueError(f"view: {data} has no transforms_{args.split}.json (a Blender-layout dataset has one per "
                         "split; --split chooses)")
    cameras = load_blender(data, args.split, size=args.image_size, max_views=args.max_cameras)
    mesh_files = run_meshes(path) if is_run else {}
    if (data / "mesh.ply").is_file():
        mesh_files[GROUND_TRUTH] = data / "mesh.ply"
    meshes = {name: load_mesh(file) for name, file in mesh_files.items()}
    splats = nerf = None
    if is_run and (path / "point_cloud.ply").is_file():
        from vision3d.splat_ply import read_splat_ply

        splats = read_splat_ply(path / "point_cloud.ply")
    if is_run and (path / "nerf_config.json").is_file():
        from vision3d.nerf import load_nerf

        nerf = load_nerf(path).eval()
    if args.layer is not None and args.layer not in layer_names(meshes, splats, nerf):
        raise ValueError(f"--layer {args.layer}: {path} has only {', '.join(layer_names(meshes, splats, nerf))}")
    return SceneContent(data, cameras, meshes, splats, nerf)


def layer_names(meshes: dict[str, Any], splats: Any, nerf: Any) -> list[str]:
    """The layers in the order the dropdown lists them: the run's results first, the ground truth last."""
    names = [*(["gaussians"] if splats is not None else []), *(["nerf"] if nerf is not None else []),
             *(name for name in meshes if name != GROUND_TRUTH)]
    return names + ([GROUND_TRUTH] if GROUND_TRUTH in meshes else [])


def first_layer(names: list[str], wanted: str | None) -> str:
    """The layer shown first: ``wanted`` (``mesh`` also picks the first of several shapes), else the first."""
    if wanted is None:
        return names[0]
    return next(name for name in names if name == wanted or name.startswith(f"{wanted} "))


# --- the scene ----------------------------------------------------------------------------------------


def splat_inputs(splats: SplatArrays) -> dict[str, np.ndarray]:
    """viser's ``add_gaussian_splats`` arguments: centres, covariances ``R S S^T R^T``, the view-independent
    (degree-0) colour ``0.5 + SH_C0 f_dc`` clipped to [0, 1], opacities ``sigmoid(logit)`` as ``[N, 1]``."""
    import torch

    from vision3d.gaussians import covariance_3d, sh0_to_rgb

    covariances = covariance_3d(torch.from_numpy(splats.log_scales).double(),
                                torch.from_numpy(splats.quaternions).double()).numpy()
    rgbs = np.clip(sh0_to_rgb(torch.from_numpy(splats.sh[:, 0, :])).numpy(), 0.0, 1.0)
    opacities = 1.0 / (1.0 + np.exp(-splats.opacity_logits.astype(np.float64)))
    return {"centers": splats.means, "covariances": covariances.astype(np.float32),
            "rgbs": rgbs.astype(np.float32), "opacities": opacities[:, None].astype(np.float32)}


def add_mesh(server: viser.ViserServer, name: str, mesh: trimesh.Trimesh, color: tuple[int, int, int] | None) -> Any:
    """A mesh in one colour (``color``, or light blue without vertex colours), else with its vertex colours."""
    has_colors = getattr(mesh.visual, "kind", None) == "vertex"
    if color is not None or not has_colors:
        return server.scene.add_mesh_simple(f"/{name.replace(' ', '_')}", np.asarray(mesh.vertices),
                                            np.asarray(mesh.faces), color=color or DEFAULT_MESH_COLOR,
                                            side="double")
    return server.scene.add_mesh_trimesh(f"/{name.replace(' ', '_')}", mesh)


def build_scene(server: viser.ViserServer, content: SceneContent, args: View) -> ViewerScene:
    """Add the cameras, every layer and the GUI (layer dropdown, camera checkbox) of ``content`` to ``server``."""
    cams = content.cameras
    radius = float(np.median(np.linalg.norm(cams.poses[:, :3, 3], axis=1)))
    server.scene.set_up_direction("+z")
    server.initial_camera.position = radius * np.array([0.75, -0.75, 0.45])
    server.initial_camera.look_at = (0.0, 0.0, 0.0)
    fov, aspect = frustum_shape(cams.intrinsics)
    frustums = [
        server.scene.add_camera_frustum(
            f"/cameras/{i}", fov, aspect, scale=0.08 * radius, thickness=0.004 * radius, color=(60, 60, 60),
            image=np.round(255 * rgb).astype(np.uint8), wxyz=frustum_rotation(pose), position=pose[:3, 3])
        for i, (rgb, pose) in enumerate(zip(cams.rgb, cams.poses))
    ]
    layers: dict[str, list[Any]] = {name: [add_mesh(server, name, mesh, args.mesh_color)]
                                    for name, mesh in content.meshes.items()}
    if content.splats is not None:
        layers["gaussians"] = [server.scene.add_gaussian_splats("/gaussians", **splat_inputs(content.splats))]
    if content.nerf is not None:
        layers["nerf"] = []
    names = layer_names(content.meshes, content.splats, content.nerf)
    choice = server.gui.add_dropdown("layer", names, initial_value=first_layer(names, args.layer))
    show_cameras = server.gui.add_checkbox("cameras", initial_value=True)
    scene = ViewerScene(content, frustums, layers, choice, show_cameras)
    nerf = None if content.nerf is None else NeRFLayer(content.nerf, args.nerf_resolution)
    renderers: dict[int, LatestOnly[BrowserCamera]] = {}

    def show_layer() -> None:
        for name, handles in layers.items():
            for handle in handles:
                handle.visible = name == choice.value
        for client in server.get_clients().values():
            if choice.value == "nerf":
                request_nerf(client)
            else:
                client.scene.set_background_image(None)

    def request_nerf(client: Any) -> None:
        if nerf is None or choice.value != "nerf" or client.client_id not in renderers:
            return
        try:
            camera = client.camera
            view = BrowserCamera(np.array(camera.wxyz), np.array(camera.position), float(camera.fov),
                                 float(camera.aspect))
        except AssertionError:  # viser asserts that the browser has sent its camera; its first message will ask
            return
        renderers[client.client_id].submit(view)

    def on_connect(client: Any) -> None:
        def draw(camera: BrowserCamera) -> None:
            image = nerf.render(camera)  # type: ignore[union-attr]
            if choice.value == "nerf":  # the layer may have changed while rendering
                client.scene.set_background_image(image, format="jpeg")

        renderers[client.client_id] = LatestOnly(draw)
        client.camera.on_update(lambda camera: request_nerf(camera.client))

    def toggle_cameras() -> None:
        for frustum in frustums:
            frustum.visible = show_cameras.value

    choice.on_update(lambda _: show_layer())
    show_cameras.on_update(lambda _: toggle_cameras())
    if nerf is not None:
        server.on_client_connect(on_connect)
        server.on_client_disconnect(lambda client: renderers.pop(client.client_id, None))
    show_layer()
    return scene


def serve(args: View, stop: threading.Event | None = None, say: Callable[[str], None] | None = None) -> int:
    """Load ``args.path``, serve it, print ``viewer at http://HOST:PORT`` and block until Ctrl-C (or ``stop``);
    then stop the server and return 0."""
    content = load_content(args)  # every bad input fails here, before a port is taken
    return serve_scene(args.host, args.port, lambda server: build_scene(server, content, args), stop, say)


def serve_scene(host: str, port: int, build: Callable[[viser.ViserServer], object],
                stop: threading.Event | None = None, say: Callable[[str], None] | None = None) -> int:
    """Start a viser server on ``host:port`` (port 0: any free one), ``build`` its scene, ``say`` (default: print)
    ``viewer at http://HOST:PORT``, block until Ctrl-C or ``stop``, stop the server and return 0. The viewers
    of vision3d and bodies share it."""
    import viser

    with contextlib.redirect_stdout(sys.stderr):  # viser's banner and goodbye: stdout holds our one line
        server = viser.ViserServer(host=host, port=port, verbose=False)
    say = say or (lambda text: print(text, flush=True))
    try:
        build(server)
        say(f"viewer at http://{host}:{server.get_port()}")
        wait_until_interrupted(stop)
    finally:
        with contextlib.redirect_stdout(sys.stderr):
            server.stop()
    return 0


def wait_until_interrupted(stop: threading.Event | None = None) -> None:
    """Block until ``stop`` is set or Ctrl-C (``KeyboardInterrupt``, caught here) arrives."""
    stop = stop or threading.Event()
    try:
        while not stop.wait(0.25):
            pass
    except KeyboardInterrupt:
        pass
