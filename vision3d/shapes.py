"""Procedural test objects and user meshes, normalised into ``[-0.5, 0.5]^3`` and vertex-coloured.

Notes chapter 12 trains implicit surfaces on watertight meshes (§12.1), point clouds (§12.2) and
images (§12.3). Every one of these needs a ground-truth object; this module makes them:

* primitives: ``sphere``, ``torus``, ``box``, ``capsule``, ``torus_knot`` (a tube swept along a
  (2, 3) torus knot) and ``wire_knot`` (the same knot as a thin wire: a scene for radiance fields,
  §12.4-12.5, whose thin structure coarse ray sampling misses);
* composite objects built from primitives and united into one watertight mesh with manifold3d
  boolean operations (through ``trimesh.boolean``): ``chair`` and ``mug``;
* ``spotted``: a sphere under random coloured spots, the texture structure from motion needs (COLMAP,
  ``python -m vision3d process-data``).

Every shape carries per-vertex albedo colours from a procedural pattern (stripes, checks, colour per
part), so rendered images have texture for the DVR texture field to learn (Niemeyer et al., 2020).
Meshes are subdivided finely enough (edges of a few hundredths) that the colour varies over faces.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

#: Major and minor radius of the ``torus`` shape, already in normalised units (R + r = 0.5).
TORUS_R = 0.35
TORUS_r = 0.15

#: Albedo given to meshes without colours (user meshes, marching-cubes reconstructions).
NEUTRAL_GREY = (0.7, 0.7, 0.7)

#: Longest edge after subdivision: fine enough for colour patterns of a few centimetres.
_MAX_EDGE = 0.035

Color = tuple[float, float, float]


def normalize_mesh(mesh: trimesh.Trimesh, extent: float = 1.0) -> trimesh.Trimesh:
    """A copy of ``mesh`` with its bounding box centred at the origin and its longest side ``extent``.

    With the default ``extent=1.0`` the result fits ``[-0.5, 0.5]^3``; colours are kept.
    """
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"mesh must be a trimesh.Trimesh, got {type(mesh).__name__}")
    if len(mesh.faces) == 0:
        raise ValueError("mesh has no faces")
    if not 0.0 < extent:
        raise ValueError(f"extent must be positive, got {extent}")
    out = mesh.copy()
    lo, hi = out.bounds
    longest = float(np.max(hi - lo))
    if longest <= 0.0:
        raise ValueError("mesh is degenerate: its bounding box has zero size")
    out.apply_translation(-0.5 * (lo + hi))
    out.apply_scale(extent / longest)
    return out


# --- colour patterns: pure functions of vertex positions -----------------------------------------


def checker(points: np.ndarray, cell: float) -> np.ndarray:  # points [N, 3] -> [N] in {0, 1}
    """3D checkerboard parity of each point for cubes of side ``cell``."""
    idx = np.floor(np.asarray(points) / cell).astype(np.int64)
    return (idx.sum(axis=1) % 2).astype(np.int64)


def stripes(coordinate: np.ndarray, period: float) -> np.ndarray:  # [N] -> [N] in {0, 1}
    """Alternating bands of width ``period / 2`` along one coordinate."""
    return (np.floor(2.0 * np.asarray(coordinate) / period) % 2).astype(np.int64)


def _mix(index: np.ndarray, palette: list[Color]) -> np.ndarray:  # [N] -> [N, 4] uint8
    colors = np.asarray(palette, dtype=np.float64)[index]
    rgba = np.concatenate([colors, np.ones((len(colors), 1))], axis=1)
    return np.round(255.0 * rgba).astype(np.uint8)


def _shade(index: np.ndarray, palette: list[Color], brightness: np.ndarray) -> np.ndarray:
    rgba = _mix(index, palette).astype(np.float64)
    rgba[:, :3] *= np.clip(brightness, 0.0, 1.0)[:, None]
    return np.round(rgba).astype(np.uint8)


def _colored(mesh: trimesh.Trimesh, colors: np.ndarray) -> trimesh.Trimesh:
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=colors)
    return mesh


def _fine(mesh: trimesh.Trimesh, max_edge: float = _MAX_EDGE) -> trimesh.Trimesh:
    """Subdivide long edges (keeps the mesh watertight) so vertex colours can vary over the surface."""
    vertices, faces = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=max_edge)
    return trimesh.Trimesh(vertices, faces, process=True)


def _polyline(points: list[tuple[float, float]], step: float) -> np.ndarray:  # -> [M, 2]
    """The polyline through ``points`` with extra points so that no segment is longer than ``step``."""
    pts = np.asarray(points, dtype=np.float64)
    out = []
    for a, b in itertools.pairwise(pts):
        n = max(1, math.ceil(np.linalg.norm(b - a) / step))
        out.append(a + (b - a) * (np.arange(n) / n)[:, None])
    out.append(pts[-1:])
    return np.concatenate(out)


def lathe(profile: np.ndarray, sections: int) -> trimesh.Trimesh:  # profile [M, 2] of (radius, z)
    """Surface of revolution about the z axis of a profile that starts and ends on the axis (watertight).

    Revolving a finely sampled profile gives near-square faces, unlike a cylinder whose side is made
    of long slivers.
    """
    mesh = trimesh.creation.revolve(profile, sections=sections)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def _union(parts: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    return trimesh.boolean.union(parts, engine="manifold")


# --- primitives ---------------------------------------------------------------------------------


def sphere() -> trimesh.Trimesh:
    """A sphere of radius 0.5 coloured like a beach ball: eight sectors in longitude, a white cap."""
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
    v = mesh.vertices
    sector = (np.floor((np.arctan2(v[:, 1], v[:, 0]) + np.pi) / (np.pi / 4)) % 4).astype(np.int64)
    index = np.where(v[:, 2] > 0.4, 4, sector)
    palette = [(0.90, 0.20, 0.15), (0.95, 0.80, 0.20), (0.15, 0.45, 0.85), (0.20, 0.70, 0.35), (0.95, 0.95, 0.95)]
    return _colored(mesh, _mix(index, palette))


def torus() -> trimesh.Trimesh:
    """A torus with ``TORUS_R``, ``TORUS_r`` around the z axis; twelve stripes around the ring."""
    # Section counts divisible by 4 put vertices on the x and y axes, so the bounding box is exact.
    mesh = trimesh.creation.torus(TORUS_R, TORUS_r, major_sections=96, minor_sections=48)
    v = mesh.vertices
    ring = stripes(np.arctan2(v[:, 1], v[:, 0]) + np.pi, 2 * np.pi / 6)
    top = (v[:, 2] > 0.0).astype(np.int64)
    brightness = 0.75 + 0.25 * top
    return _colored(mesh, _shade(ring, [(0.85, 0.45, 0.10), (0.25, 0.55, 0.80)], brightness))


def box() -> trimesh.Trimesh:
    """A 1.0 x 0.7 x 0.5 box with a 3D checkerboard of two colours."""
    mesh = _fine(trimesh.creation.box(extents=(1.0, 0.7, 0.5)))
    parity = checker(mesh.vertices + 1e-3, 0.2)  # shift so no vertex sits exactly on a cell wall
    return _colored(mesh, _mix(parity, [(0.80, 0.25, 0.25), (0.95, 0.90, 0.75)]))


def capsule() -> trimesh.Trimesh:
    """A capsule along z (radius 0.2, hemisphere centres 0.6 apart) with horizontal bands."""
    arc = np.linspace(0.0, np.pi / 2, 16)
    bottom = [(0.2 * math.sin(a), -0.3 - 0.2 * math.cos(a)) for a in arc]
    top = [(0.2 * math.cos(a), 0.3 + 0.2 * math.sin(a)) for a in arc]
    mesh = lathe(_polyline(bottom + top, _MAX_EDGE), sections=48)
    band = stripes(mesh.vertices[:, 2] + 10.0, 0.2)
    return _colored(mesh, _mix(band, [(0.30, 0.65, 0.45), (0.95, 0.85, 0.55)]))


def torus_knot_curve(t: np.ndarray, p: int = 2, q: int = 3, R: float = 1.0, r: float = 0.45) -> np.ndarray:
    """Points ``[N, 3]`` of the (p, q) torus knot at parameters ``t`` ``[N]`` in ``[0, 2 pi)``."""
    radial = R + r * np.cos(q * t)
    return np.stack([radial * np.cos(p * t), radial * np.sin(p * t), r * np.sin(q * t)], axis=1)


def tube_mesh(
    curve: Callable[[np.ndarray], np.ndarray],
    radius: float,
    n_along: int,
    n_around: int,
) -> tuple[trimesh.Trimesh, np.ndarray]:
    """A closed tube of ``radius`` swept along a closed curve; returns the mesh and each vertex's ``t``.

    The cross-section frame uses the horizontal normal ``T x z``, well defined while the tangent is
    never vertical (true for torus knots with ``R > r``). Both directions wrap, so the mesh is a
    watertight torus-like surface.
    """
    t = 2 * np.pi * np.arange(n_along) / n_along
    centre = curve(t)  # [A, 3]
    eps = 1e-4
    tangent = curve(t + eps) - curve(t - eps)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.cross(tangent, [0.0, 0.0, 1.0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    binormal = np.cross(tangent, normal)
    phi = 2 * np.pi * np.arange(n_around) / n_around
    ring = np.cos(phi)[None, :, None] * normal[:, None] + np.sin(phi)[None, :, None] * binormal[:, None]
    vertices = (centre[:, None] + radius * ring).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_along), np.arange(n_around), indexing="ij")
    a = i * n_around + j
    b = ((i + 1) % n_along) * n_around + j
    c = ((i + 1) % n_along) * n_around + (j + 1) % n_around
    d = i * n_around + (j + 1) % n_around
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    if mesh.volume < 0:
        mesh.invert()
    return mesh, np.repeat(t, n_around)


def torus_knot() -> trimesh.Trimesh:
    """A tube around the (2, 3) torus knot (a trefoil), coloured by a hue ramp along the curve."""
    mesh, t = tube_mesh(torus_knot_curve, radius=0.22, n_along=480, n_around=24)
    hue = t / (2 * np.pi)
    rgb = 0.5 + 0.4 * np.cos(2 * np.pi * (hue[:, None] + np.array([0.0, 1 / 3, 2 / 3])[None, :]))
    colors = np.round(255 * np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1)).astype(np.uint8)
    return _colored(mesh, colors)


#: Tube radius of ``wire_knot`` before normalisation: the knot's diameter in the image is a few pixels
#: at 128 x 128, a thin structure that a sparse set of views or a coarse sampling along rays misses.
WIRE_RADIUS = 0.05


def wire_knot() -> trimesh.Trimesh:
    """The trefoil of ``torus_knot`` as a thin wire (a tube of radius ``WIRE_RADIUS`` before normalisation,
    about 0.017 after), in alternating bands along the curve."""
    mesh, t = tube_mesh(torus_knot_curve, radius=WIRE_RADIUS, n_along=720, n_around=12)
    band = stripes(t, 2 * np.pi / 24)
    return _colored(mesh, _mix(band, [(0.80, 0.65, 0.20), (0.20, 0.35, 0.60)]))


# --- composite objects ----------------------------------------------------------------------------

_SEAT_Z = (0.0, 0.07)  # bottom and top of the chair seat
_BACK_Y = 0.20  # the backrest's front face


def chair() -> trimesh.Trimesh:
    """A chair: seat, four legs and a backrest united into one watertight mesh, coloured per part."""
    seat = trimesh.creation.box((0.5, 0.5, 0.07))
    seat.apply_translation((0.0, 0.0, 0.035))
    parts = [seat]
    for sx in (-1, 1):
        for sy in (-1, 1):
            leg = trimesh.creation.box((0.06, 0.06, 0.47))
            leg.apply_translation((sx * 0.21, sy * 0.21, -0.225))  # 0.01 into the seat
            parts.append(leg)
    back = trimesh.creation.box((0.5, 0.06, 0.5))
    back.apply_translation((0.0, _BACK_Y + 0.03, 0.07 + 0.24))  # 0.01 into the seat
    parts.append(back)
    mesh = _fine(_union(parts))
    v = mesh.vertices
    part = np.where(
        v[:, 2] < _SEAT_Z[0] - 1e-6, 1, np.where((v[:, 1] > _BACK_Y - 1e-6) & (v[:, 2] > _SEAT_Z[1] + 1e-6), 2, 0)
    )
    # Wood-like grain: bands across the seat and the backrest, plain dark legs.
    grain = stripes(v[:, 0] + 10.0, 0.1)
    index = np.where(part == 0, grain, np.where(part == 1, 2, 3 + grain))
    palette = [(0.75, 0.55, 0.30), (0.62, 0.42, 0.22), (0.25, 0.20, 0.18), (0.70, 0.20, 0.20), (0.85, 0.35, 0.30)]
    return _colored(normalize_mesh(mesh), _mix(index, palette))


def mug() -> trimesh.Trimesh:
    """A mug: an open cylindrical cup (a revolved profile) with a ring handle united onto its side."""
    # Outer wall, rim, inner wall and a 0.07 thick floor, as one profile revolved about z.
    profile = [(0.0, -0.4), (0.35, -0.4), (0.35, 0.4), (0.29, 0.4), (0.29, -0.33), (0.0, -0.33)]
    body = lathe(_polyline(profile, _MAX_EDGE), sections=72)
    handle = trimesh.creation.torus(0.2, 0.05, major_sections=64, minor_sections=24)
    handle.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, (1.0, 0.0, 0.0)))
    handle.apply_translation((0.38, 0.0, 0.0))
    # The handle must not poke into the cavity: cut it off inside the wall (0.29 < r < 0.35), away
    # from the inner surface, so that the union has no coincident faces.
    core = trimesh.creation.cylinder(radius=0.32, height=1.0, sections=72)
    handle = trimesh.boolean.difference([handle, core], engine="manifold")
    mesh = _fine(_union([body, handle]))
    v = mesh.vertices
    radial = np.linalg.norm(v[:, :2], axis=1)
    inside = (radial < 0.29 + 1e-4) & (v[:, 2] > -0.33 - 1e-4)
    on_handle = radial > 0.35 + 1e-4
    band = stripes(v[:, 2] + 10.0, 0.16)
    index = np.where(inside, 2, np.where(on_handle, 3, band))
    palette = [(0.15, 0.35, 0.70), (0.90, 0.90, 0.85), (0.95, 0.92, 0.80), (0.80, 0.30, 0.15)]
    return _colored(normalize_mesh(mesh), _mix(index, palette))


# --- texture for structure from motion --------------------------------------------------------------


def spot_pattern(
    points: np.ndarray,  # [N, 3]
    n: int,
    radii: tuple[float, float] = (0.01, 0.05),
    seed: int = 0,
) -> np.ndarray:  # [N, 3] in [0, 1]
    """Colours of ``n`` round spots on a light grey ground: centres at random ``points``, radii log-uniform in
    ``radii``, random colours (a third of them darkened), smaller spots painted over larger ones, each with a
    soft rim (the outer 30% of its radius blends into what is below).

    Blobs of many sizes are what SIFT's difference-of-Gaussians detector finds, and random ones do not repeat;
    the stripes and checks of the other shapes give edges and one repeated corner, which COLMAP cannot match.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or not 0 < n <= len(points):
        raise ValueError(f"points must be [N, 3] with N >= n > 0, got {points.shape} and n={n}")
    rng = np.random.default_rng(seed)
    centres = points[rng.choice(len(points), n, replace=False)]
    radius = np.exp(rng.uniform(math.log(radii[0]), math.log(radii[1]), n))
    colour = rng.uniform(0.0, 1.0, (n, 3)) * np.where(rng.uniform(size=n) < 1 / 3, 0.25, 1.0)[:, None]
    out = np.full((len(points), 3), 0.6)
    tree = cKDTree(points)
    for k in np.argsort(-radius):
        inside = np.asarray(tree.query_ball_point(centres[k], radius[k]), dtype=np.int64)
        distance = np.linalg.norm(points[inside] - centres[k], axis=1)
        weight = np.clip((radius[k] - distance) / (0.3 * radius[k]), 0.0, 1.0)[:, None]
        out[inside] = (1.0 - weight) * out[inside] + weight * colour[k]
    return out


def spotted() -> trimesh.Trimesh:
    """A sphere of radius 0.5 under 2000 random coloured spots (:func:`spot_pattern`): a scene that structure from
    motion can register (``python -m vision3d process-data``, :mod:`vision3d.colmap`)."""
    mesh = trimesh.creation.icosphere(subdivisions=6, radius=0.5)  # edges of about 0.017: spots stay round
    rgb = spot_pattern(mesh.vertices, 2000)
    return _colored(mesh, np.round(255.0 * np.concatenate([rgb, np.ones((len(rgb), 1))], axis=1)).astype(np.uint8))


SHAPES: dict[str, Callable[[], trimesh.Trimesh]] = {
    "sphere": sphere,
    "torus": torus,
    "box": box,
    "capsule": capsule,
    "torus_knot": torus_knot,
    "wire_knot": wire_knot,
    "chair": chair,
    "mug": mug,
    "spotted": spotted,
}


def load_shape(name_or_path: str | Path) -> trimesh.Trimesh:
    """A named procedural shape or a mesh file (OBJ, PLY, STL, GLB, ...), normalised into [-0.5, 0.5]^3.

    A file with several meshes (a GLB scene) is merged into one mesh with its node transforms;
    texture-mapped meshes get their texture sampled into vertex colours, and meshes without colours
    get a uniform light grey, so every returned mesh has per-vertex colours.
    ``mesh.metadata["name"]`` records the shape name or the file stem.
    """
    key = str(name_or_path)
    if key in SHAPES:
        mesh = normalize_mesh(SHAPES[key]())
        mesh.metadata["name"] = key
        return mesh
    path = Path(key)
    known = ", ".join(SHAPES)
    if not path.is_file():
        raise ValueError(f"{key!r} is neither a known shape ({known}) nor an existing mesh file")
    try:
        loaded = trimesh.load(path, process=True)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise ValueError(f"could not read a mesh from {path}: {exc}. Known shape names: {known}") from exc
    mesh = _merge(loaded, path)
    mesh = normalize_mesh(mesh)
    mesh.metadata["name"] = path.stem
    return mesh


def _merge(loaded: trimesh.Trimesh | trimesh.Scene, path: Path) -> trimesh.Trimesh:
    if isinstance(loaded, trimesh.Scene):
        meshes = [g for g in loaded.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
    elif isinstance(loaded, trimesh.Trimesh):
        meshes = [loaded]
    else:
        meshes = []
    meshes = [m for m in meshes if len(m.faces) > 0]
    if not meshes:
        raise ValueError(
            f"{path} contains no triangle mesh (point clouds and paths are not supported); "
            f"known shape names: {', '.join(SHAPES)}"
        )
    for m in meshes:
        _to_vertex_colors(m)
    mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
    mesh.merge_vertices()
    return mesh


def vertex_colors(mesh: trimesh.Trimesh) -> np.ndarray | None:  # -> [V, 4] uint8
    """Per-vertex RGBA of ``mesh``: vertex colours as stored, face colours spread to vertices, textures
    sampled at the vertex UVs; ``None`` when the mesh has no colour (or an unusable texture)."""
    kind = mesh.visual.kind
    colors = None
    if kind == "texture":
        try:
            colors = mesh.visual.to_color().vertex_colors
        except (AttributeError, IndexError, TypeError, ValueError):  # no image or no UVs
            colors = None
    elif kind in ("vertex", "face"):
        colors = mesh.visual.vertex_colors
    if colors is None or len(colors) != len(mesh.vertices):
        return None
    return np.asarray(colors, dtype=np.uint8)


def _to_vertex_colors(mesh: trimesh.Trimesh) -> None:
    """Replace texture or face colours by per-vertex colours; uncoloured meshes become neutral grey."""
    colors = vertex_colors(mesh)
    if colors is None:
        grey = np.round(255 * np.array([*NEUTRAL_GREY, 1.0])).astype(np.uint8)
        colors = np.tile(grey, (len(mesh.vertices), 1))
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=colors)
