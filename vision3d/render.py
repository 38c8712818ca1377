"""Rendering meshes: pyrender rasterisation (RGBA + depth) and open3d ray casting (depth, normals, mask).

The images are what notes §12.3 (DVR, Niemeyer et al., 2020) learns from. DVR's texture field
``t_theta(p)`` gives each surface point one colour, whatever the viewing direction, so the renders
here are exactly view-independent: Lambertian shading by directional lights FIXED IN THE WORLD
frame plus a strong ambient term (no side is black) is computed once per vertex,
``c = albedo * min(1, ambient + sum_k I_k max(0, n . l_k))``, baked into the vertex colours and
rasterised unlit (pyrender's ``FLAT`` mode), so a surface point has the same colour in every view.

NeRF (§12.4) and Gaussian splatting (§12.5) also take the viewing direction; ``Specular`` adds
view-dependent Blinn-Phong highlights of the same lights, ``k_s I_k max(0, n . h_k)^shininess`` with
``h_k`` halfway between ``l_k`` and the direction to the camera. It is shaded per pixel, not per vertex:
open3d casts the pixel's ray, the hit's barycentric coordinates interpolate the vertex normals (Phong
interpolation), and the term is added to the rasterised Lambert colour. A per-vertex highlight would be
smeared over whole triangles and would depend on the tessellation; the diffuse part is left exactly as
it is without highlights.

Depth is the distance along the camera's viewing axis (z-buffer depth, not ray length), 0 on the
background, in both renderers; intrinsics map exactly onto pyrender's ``IntrinsicsCamera`` (pixel
centres at ``+0.5``, see :mod:`vision3d.camera`).

Headless OpenGL: OSMesa on the CPU by default; set ``PYOPENGL_PLATFORM=egl`` to render on a GPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import open3d as o3d
import trimesh

from envs.io.video import write_video
from vision3d.camera import Intrinsics, pixel_rays, sphere_poses
from vision3d.groundtruth import raycasting_scene
from vision3d.shapes import NEUTRAL_GREY, vertex_colors

#: NeRF's Blender scenes use this horizontal field of view (radians).
BLENDER_CAMERA_ANGLE_X = 0.6911112070083618


@dataclass(frozen=True)
class Lighting:
    """Directional lights fixed in the world frame plus an ambient term (Lambertian shading)."""

    ambient: float = 0.45
    """Light reaching every surface point, whatever its normal; keeps shadowed sides visible."""
    directions: tuple[tuple[float, float, float], ...] = ((0.4, -0.6, 1.0), (-1.0, 0.7, 0.3), (0.3, 0.5, -1.0))
    """World-space directions TOWARDS each light (normalised internally); z is up."""
    intensities: tuple[float, ...] = (0.5, 0.25, 0.12)
    """Intensity of each directional light."""


def lambert_shade(
    albedo: np.ndarray,  # [N, 3] in [0, 1]
    normals: np.ndarray,  # [N, 3] unit
    lighting: Lighting = Lighting(),
) -> np.ndarray:  # [N, 3] in [0, 1]
    """Lambertian radiance ``albedo * min(1, ambient + sum_k I_k max(0, n . l_k))``."""
    albedo, normals = np.asarray(albedo, dtype=np.float64), np.asarray(normals, dtype=np.float64)
    if albedo.shape != normals.shape or albedo.ndim != 2 or albedo.shape[1] != 3:
        raise ValueError(f"albedo and normals must both be [N, 3]; got {albedo.shape} and {normals.shape}")
    if len(lighting.directions) != len(lighting.intensities):
        raise ValueError("lighting needs one intensity per direction")
    irradiance = np.full(len(normals), lighting.ambient)
    for direction, intensity in zip(lighting.directions, lighting.intensities):
        l_k = np.asarray(direction, dtype=np.float64)
        l_k = l_k / np.linalg.norm(l_k)
        irradiance += intensity * np.maximum(0.0, normals @ l_k)
    return albedo * np.minimum(1.0, irradiance)[:, None]


@dataclass(frozen=True)
class Specular:
    """Blinn-Phong highlights of the :class:`Lighting` lights (white, view-dependent)."""

    k_s: float = 0.8
    """Specular reflectance: a highlight facing light ``k`` adds ``k_s * I_k`` to every channel."""
    shininess: float = 32.0
    """Exponent of ``n . h``: larger values give smaller, sharper highlights."""

    def __post_init__(self) -> None:
        if not (self.k_s >= 0.0 and self.shininess > 0.0):
            raise ValueError(f"specular needs k_s >= 0 and shininess > 0, got k_s={self.k_s}, "
                             f"shininess={self.shininess}")


def blinn_phong_specular(
    normals: np.ndarray,  # [N, 3] unit
    view_dirs: np.ndarray,  # [N, 3] unit, from the surface point towards the camera
    lighting: Lighting = Lighting(),
    specular: Specular = Specular(),
) -> np.ndarray:  # [N] >= 0
    """``k_s sum_k I_k [n . l_k > 0] max(0, n . h_k)^shininess`` with ``h_k = (l_k + v) / |l_k + v|``
    (Blinn 1977); a light behind the surface gives no highlight."""
    normals, view_dirs = np.asarray(normals, dtype=np.float64), np.asarray(view_dirs, dtype=np.float64)
    if normals.shape != view_dirs.shape or normals.ndim != 2 or normals.shape[1] != 3:
        raise ValueError(f"normals and view_dirs must both be [N, 3]; got {normals.shape} and {view_dirs.shape}")
    if len(lighting.directions) != len(lighting.intensities):
        raise ValueError("lighting needs one intensity per direction")
    out = np.zeros(len(normals))
    for direction, intensity in zip(lighting.directions, lighting.intensities):
        l_k = np.asarray(direction, dtype=np.float64)
        l_k = l_k / np.linalg.norm(l_k)
        h_k = l_k + view_dirs
        h_k /= np.maximum(np.linalg.norm(h_k, axis=1, keepdims=True), 1e-12)
        lit = normals @ l_k > 0.0
        out += np.where(lit, intensity * np.maximum(0.0, np.sum(normals * h_k, axis=1)) ** specular.shininess, 0.0)
    return specular.k_s * out


def vertex_albedo(mesh: trimesh.Trimesh) -> np.ndarray:  # [V, 3] in [0, 1]
    """Per-vertex colours of ``mesh`` (texture and face colours converted), neutral grey when it has none."""
    colors = vertex_colors(mesh)
    if colors is None:
        return np.tile(np.asarray(NEUTRAL_GREY), (len(mesh.vertices), 1))
    return colors[:, :3].astype(np.float64) / 255.0


def framing_radius(mesh: trimesh.Trimesh, camera_angle_x: float, margin: float = 0.1) -> float:
    """Camera distance from the origin at which the whole mesh fits a square image with ``margin`` to spare.

    The mesh's bounding sphere about the origin (radius ``rho``) must subtend a half-angle whose
    tangent is ``tan(camera_angle_x / 2) / (1 + margin)``: ``radius = rho / sin(that angle)``.
    """
    if not 0.0 < camera_angle_x < math.pi:
        raise ValueError(f"camera_angle_x must be in (0, pi), got {camera_angle_x}")
    rho = float(np.max(np.linalg.norm(mesh.vertices, axis=1)))
    half = math.atan(math.tan(0.5 * camera_angle_x) / (1.0 + margin))
    return rho / math.sin(half)


class RenderedViews(NamedTuple):
    """pyrender output for ``N`` views."""

    rgba: np.ndarray  # [N, H, W, 4] uint8, alpha 0 on the background
    depth: np.ndarray  # [N, H, W] float32, depth along the viewing axis, 0 on the background


class RaycastResult(NamedTuple):
    """open3d ray casting output for ``N`` views."""

    depth: np.ndarray  # [N, H, W] float32, depth along the viewing axis, 0 on the background
    normals: np.ndarray  # [N, H, W, 3] float32, world-space face normals, 0 on the background
    mask: np.ndarray  # [N, H, W] bool, True where a ray hits the mesh


def _pyrender():
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    import pyrender

    return pyrender


class MeshRenderer:
    """One pyrender scene and ``OffscreenRenderer`` reused for many views of a mesh (``set_mesh`` swaps the mesh).

    >>> with MeshRenderer(mesh, intrinsics) as r:  # doctest: +SKIP
    ...     rgba, depth = r.render(c2w)
    """

    def __init__(
        self,
        mesh: trimesh.Trimesh,
        intrinsics: Intrinsics,
        lighting: Lighting = Lighting(),
        specular: Specular | None = None,
    ) -> None:
        pyrender = _pyrender()
        self.intrinsics = intrinsics
        self.lighting, self.specular = lighting, specular
        self.scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[1.0, 1.0, 1.0])
        self.mesh_node = None
        self.set_mesh(mesh)
        self.camera = pyrender.IntrinsicsCamera(
            fx=intrinsics.fx, fy=intrinsics.fy, cx=intrinsics.cx, cy=intrinsics.cy, znear=0.01, zfar=100.0
        )
        self.camera_node = self.scene.add(self.camera, pose=np.eye(4))
        self.renderer = pyrender.OffscreenRenderer(intrinsics.width, intrinsics.height)
        self.flags = pyrender.RenderFlags.RGBA | pyrender.RenderFlags.FLAT | pyrender.RenderFlags.SKIP_CULL_FACES

    def set_mesh(self, mesh: trimesh.Trimesh) -> None:
        """Show ``mesh`` instead of the current one (the OpenGL context and camera are kept: a posed body per frame)."""
        pyrender = _pyrender()
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            raise ValueError(f"mesh must be a trimesh.Trimesh with faces, got {type(mesh).__name__}")
        lighting, specular = self.lighting, self.specular
        normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
        if specular is not None:  # the per-pixel pass needs the triangles and their corner normals
            self.raycasting = raycasting_scene(mesh)
            self.corner_normals = normals[np.asarray(mesh.faces)]  # [F, 3, 3]
        radiance = lambert_shade(vertex_albedo(mesh), normals, lighting)
        color_0 = np.concatenate([radiance, np.ones((len(radiance), 1))], axis=1).astype(np.float32)
        material = pyrender.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0], alphaMode="OPAQUE")
        primitive = pyrender.Primitive(
            positions=np.asarray(mesh.vertices, dtype=np.float32),
            normals=normals.astype(np.float32),
            indices=np.asarray(mesh.faces, dtype=np.uint32),
            color_0=color_0,
            material=material,
        )
        if self.mesh_node is not None:
            self.scene.remove_node(self.mesh_node)
        self.mesh_node = self.scene.add(pyrender.Mesh([primitive]))
        self.center = 0.5 * (mesh.bounds[0] + mesh.bounds[1])
        self.extent = float(np.max(np.linalg.norm(mesh.vertices - self.center, axis=1)))

    def render(self, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # c2w [4, 4]
        """RGBA ``[H, W, 4]`` uint8 and depth ``[H, W]`` float32 of one view."""
        c2w = np.asarray(c2w, dtype=np.float64)
        if c2w.shape != (4, 4):
            raise ValueError(f"c2w must be [4, 4], got {c2w.shape}")
        # Tight clipping planes around the mesh's bounding sphere keep the depth buffer precise.
        distance = float(np.linalg.norm(c2w[:3, 3] - self.center))
        self.camera.znear = max(1e-3, distance - self.extent - 0.05)
        self.camera.zfar = distance + self.extent + 0.05
        self.scene.set_pose(self.camera_node, c2w)
        color, depth = self.renderer.render(self.scene, flags=self.flags)
        rgba = rgba_from_buffers(np.asarray(color), np.asarray(depth, dtype=np.float32))
        if self.specular is not None:
            rgba = self._add_highlights(rgba, c2w)
        return rgba, np.array(depth, np.float32)

    def _add_highlights(self, rgba: np.ndarray, c2w: np.ndarray) -> np.ndarray:  # [H, W, 4] uint8
        """The Blinn-Phong term of every pixel whose centre's ray hits the mesh, added to its colour."""
        origins, directions = pixel_rays(self.intrinsics, c2w)
        hit = _cast(self.raycasting, origins, directions)
        mask = np.isfinite(hit["t_hit"]) & (rgba[..., 3] > 0)
        uv = hit["primitive_uvs"][mask].astype(np.float64)  # weights of the triangle's corners 1 and 2
        weights = np.concatenate([1.0 - uv.sum(axis=1, keepdims=True), uv], axis=1)  # [M, 3]
        normals = np.einsum("mc,mcd->md", weights, self.corner_normals[hit["primitive_ids"][mask]])
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        view_dirs = -directions[mask].astype(np.float64)
        view_dirs /= np.linalg.norm(view_dirs, axis=1, keepdims=True)
        highlight = blinn_phong_specular(normals, view_dirs, self.lighting, self.specular)
        out = rgba.copy()
        out[..., :3][mask] = np.clip(np.round(rgba[..., :3][mask] + 255.0 * highlight[:, None]), 0, 255)
        return out

    def close(self) -> None:
        """Release the OpenGL context."""
        self.renderer.delete()

    def __enter__(self) -> MeshRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rgba_from_buffers(
    color: np.ndarray,  # [H, W, 3] or [H, W, 4] uint8
    depth: np.ndarray,  # [H, W], 0 on the background
) -> np.ndarray:  # [H, W, 4] uint8, straight (not premultiplied) alpha
    """Straight-alpha RGBA from what pyrender returns on either headless platform.

    * EGL renders into a multisampled framebuffer and returns RGBA: cleared to ``(0, 0, 0, 0)``,
      silhouette pixels are resolved to *premultiplied* ``(a c, a)``, so colour is divided by alpha.
    * OSMesa has no framebuffer objects in pyrender; it reads the window buffer as RGB only
      (``RenderFlags.RGBA`` is ignored) without antialiasing, so alpha is the depth-buffer coverage.
    """
    if color.ndim != 3 or color.shape[2] not in (3, 4) or color.shape[:2] != depth.shape:
        raise ValueError(f"color must be [H, W, 3|4] matching depth {depth.shape}, got {color.shape}")
    if color.shape[2] == 4:
        rgba = color.astype(np.float64)
        alpha = rgba[..., 3:] / 255.0
        rgba[..., :3] = np.where(alpha > 0, rgba[..., :3] / np.maximum(alpha, 1e-12), 0.0)
        return np.clip(np.round(rgba), 0, 255).astype(np.uint8)
    covered = depth > 0
    rgb = np.where(covered[..., None], color, 0).astype(np.uint8)
    return np.concatenate([rgb, (255 * covered[..., None]).astype(np.uint8)], axis=-1)


def _check_poses(poses: np.ndarray) -> np.ndarray:
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim == 2:
        poses = poses[None]
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must be [N, 4, 4] camera-to-world matrices, got {poses.shape}")
    return poses


def render_views(
    mesh: trimesh.Trimesh,
    poses: np.ndarray,  # [N, 4, 4] c2w
    intrinsics: Intrinsics,
    lighting: Lighting = Lighting(),
    specular: Specular | None = None,
) -> RenderedViews:
    """Rasterise ``mesh`` from every pose with pyrender (one renderer for all views); with ``specular``,
    Blinn-Phong highlights are added per pixel."""
    poses = _check_poses(poses)
    with MeshRenderer(mesh, intrinsics, lighting, specular) as renderer:
        views = [renderer.render(c2w) for c2w in poses]
    return RenderedViews(np.stack([v[0] for v in views]), np.stack([v[1] for v in views]))


def raycast(
    mesh: trimesh.Trimesh,
    poses: np.ndarray,  # [N, 4, 4] c2w
    intrinsics: Intrinsics,
) -> RaycastResult:
    """Depth, normals and mask by casting one ray per pixel centre with open3d (no OpenGL needed)."""
    poses = _check_poses(poses)
    scene = raycasting_scene(mesh)
    depths, normals, masks = [], [], []
    for c2w in poses:
        # Directions have camera-space z = -1, so the hit parameter t is the depth along the axis.
        hit = _cast(scene, *pixel_rays(intrinsics, c2w))
        t_hit = hit["t_hit"]
        mask = np.isfinite(t_hit)
        depths.append(np.where(mask, t_hit, 0.0).astype(np.float32))
        normals.append(np.where(mask[..., None], hit["primitive_normals"], 0.0).astype(np.float32))
        masks.append(mask)
    return RaycastResult(np.stack(depths), np.stack(normals), np.stack(masks))


def _cast(
    scene: o3d.t.geometry.RaycastingScene,
    origins: np.ndarray,  # [H, W, 3]
    directions: np.ndarray,  # [H, W, 3]
) -> dict[str, np.ndarray]:
    """open3d's ``cast_rays`` as NumPy arrays [H, W, ...]: t_hit (inf on a miss), primitive_ids, primitive_uvs,
    primitive_normals."""
    hit = scene.cast_rays(o3d.core.Tensor(np.concatenate([origins, directions], axis=-1)))
    return {key: hit[key].numpy() for key in ("t_hit", "primitive_ids", "primitive_uvs", "primitive_normals")}


def composite(rgba: np.ndarray, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Alpha-composite uint8 RGBA ``[..., 4]`` over a background colour; returns uint8 RGB ``[..., 3]``."""
    rgba = np.asarray(rgba, dtype=np.float64) / 255.0
    alpha = rgba[..., 3:]
    rgb = rgba[..., :3] * alpha + np.asarray(background) * (1.0 - alpha)
    return np.round(255.0 * rgb).astype(np.uint8)


def orbit_frames(
    mesh: trimesh.Trimesh,
    frames: int = 72,
    size: int = 256,
    elevation: float = 25.0,
    camera_angle_x: float = BLENDER_CAMERA_ANGLE_X,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> Iterator[np.ndarray]:  # [size, size, 3] uint8 each
    """The frames of one full turn around ``mesh`` at ``elevation`` degrees (grey where it has no colours)."""
    if frames <= 0 or size <= 0:
        raise ValueError(f"frames and size must be positive, got {frames}, {size}")
    intrinsics = Intrinsics.from_fov(size, size, camera_angle_x)
    poses = sphere_poses(frames, radius=framing_radius(mesh, camera_angle_x), mode="turntable", elevation=elevation)
    with MeshRenderer(mesh, intrinsics) as renderer:
        for c2w in poses:
            yield composite(renderer.render(c2w)[0], background)


def orbit_video(
    mesh: trimesh.Trimesh,
    path: str | Path,
    frames: int = 72,
    size: int = 256,
    fps: int = 24,
    elevation: float = 25.0,
    camera_angle_x: float = BLENDER_CAMERA_ANGLE_X,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> Path:
    """Write a turntable MP4 of ``mesh`` (one full turn at ``elevation`` degrees) atomically to ``path``.

    Meshes without colours (e.g. marching-cubes reconstructions) are shown in neutral grey.
    """
    if frames <= 0 or size <= 0 or fps <= 0:
        raise ValueError(f"frames, size and fps must be positive, got {frames}, {size}, {fps}")
    write_video(orbit_frames(mesh, frames, size, elevation, camera_angle_x, background), path, fps=fps)
    return Path(path)
