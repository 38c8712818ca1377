"""Ground truth from a watertight mesh: signed distance, occupancy, closest points and samples.

Notes §12.1 ("Training with watertight meshes"): an occupancy network (Mescheder et al., 2019) is
trained on points labelled inside/outside, DeepSDF (Park et al., 2019) on signed distances to the
mesh; §12.2 (IGR, Gropp et al., 2020) needs surface points with normals. Everything here is
computed with open3d's ``RaycastingScene`` (Embree): the unsigned distance is exact for the mesh,
the sign comes from counting ray crossings (a majority vote over ``nsamples`` rays), which is only
meaningful when the mesh is watertight. Signed distance is **negative inside**.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import open3d as o3d
import trimesh

from vision3d import SCENE_BOUND


class Samples(NamedTuple):
    """Labelled points for implicit-surface training (notes §12.1)."""

    points: np.ndarray  # [N, 3] float32
    occupancy: np.ndarray  # [N] bool, True inside
    sdf: np.ndarray  # [N] float32, negative inside


class ClosestPoints(NamedTuple):
    """The nearest surface point to each query point, its triangle and that triangle's normal."""

    points: np.ndarray  # [N, 3] float32
    face_ids: np.ndarray  # [N] int64
    normals: np.ndarray  # [N, 3] float32, unit, outward for a consistently wound mesh


def raycasting_scene(mesh: trimesh.Trimesh) -> o3d.t.geometry.RaycastingScene:
    """An open3d ``RaycastingScene`` holding the triangles of ``mesh`` (float32, as Embree needs)."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(mesh.faces, dtype=np.uint32)),
    )
    return scene


def _query(points: np.ndarray, name: str = "points") -> o3d.core.Tensor:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape [N, 3], got {points.shape}")
    return o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))


class GroundTruth:
    """Distance queries against one triangle mesh through an open3d ``RaycastingScene``.

    ``nsamples`` rays (odd) vote on inside/outside; more rays protect against a ray grazing an edge.
    Unsigned distances and closest points work for any mesh; occupancy and signed distance require
    a watertight one and raise ``ValueError`` otherwise.
    """

    def __init__(self, mesh: trimesh.Trimesh, nsamples: int = 3) -> None:
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            raise ValueError(f"mesh must be a trimesh.Trimesh with faces, got {type(mesh).__name__}")
        if nsamples < 1 or nsamples % 2 == 0:
            raise ValueError(f"nsamples must be a positive odd number of rays, got {nsamples}")
        self.mesh = mesh
        self.nsamples = nsamples
        self.watertight = bool(mesh.is_watertight)
        self.scene = raycasting_scene(mesh)

    def _require_watertight(self, what: str) -> None:
        if not self.watertight:
            raise ValueError(
                f"{what} needs a watertight mesh (inside and outside must be defined), but this mesh has "
                f"holes or non-manifold edges; repair it (e.g. trimesh.repair.fill_holes) or use unsigned distance"
            )

    def distance(self, points: np.ndarray) -> np.ndarray:  # points [N, 3] -> [N]
        """Unsigned distance to the mesh surface."""
        return self.scene.compute_distance(_query(points)).numpy()

    def signed_distance(self, points: np.ndarray) -> np.ndarray:  # points [N, 3] -> [N]
        """Signed distance to the surface, negative inside (float32)."""
        query = _query(points)
        self._require_watertight("signed distance")
        return self.scene.compute_signed_distance(query, nsamples=self.nsamples).numpy()

    def occupancy(self, points: np.ndarray) -> np.ndarray:  # points [N, 3] -> [N] bool
        """True where a point lies inside the mesh."""
        query = _query(points)
        self._require_watertight("occupancy")
        return self.scene.compute_occupancy(query, nsamples=self.nsamples).numpy() > 0.5

    def closest(self, points: np.ndarray) -> ClosestPoints:  # points [N, 3]
        """Closest surface points with their triangle ids and face normals."""
        result = self.scene.compute_closest_points(_query(points))
        return ClosestPoints(
            points=result["points"].numpy(),
            face_ids=result["primitive_ids"].numpy().astype(np.int64),
            normals=result["primitive_normals"].numpy(),
        )


def surface_samples(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform by area on the surface ``[n, 3]`` and their face normals ``[n, 3]`` (float32)."""
    if n <= 0:
        raise ValueError(f"n must be a positive number of surface samples, got {n}")
    points, face_index = trimesh.sample.sample_surface(mesh, n, seed=seed)
    normals = mesh.face_normals[face_index]
    return points.astype(np.float32), normals.astype(np.float32)


def uniform_points(n: int, rng: np.random.Generator, bound: float = SCENE_BOUND) -> np.ndarray:  # [n, 3]
    """``n`` points uniform in the scene box ``[-bound, bound]^3``."""
    return rng.uniform(-bound, bound, size=(n, 3))


def near_surface_points(
    surface: np.ndarray,  # [M, 3]
    sigmas: tuple[float, ...],
    rng: np.random.Generator,
    bound: float = SCENE_BOUND,
) -> np.ndarray:  # [M, 3]
    """Surface points moved by isotropic Gaussian noise; the ``M`` points are split evenly over ``sigmas``.

    The result is clipped to the scene box so every sample lies where the networks are queried.
    """
    if not sigmas or any(s <= 0 for s in sigmas):
        raise ValueError(f"sigmas must be positive noise scales, got {sigmas}")
    groups = np.array_split(np.arange(len(surface)), len(sigmas))
    scale = np.empty(len(surface))
    for sigma, idx in zip(sigmas, groups):
        scale[idx] = sigma
    noisy = surface + rng.normal(size=surface.shape) * scale[:, None]
    return np.clip(noisy, -bound, bound)


def sample_points(
    mesh: trimesh.Trimesh,
    n_uniform: int = 100_000,
    n_surface: int = 100_000,
    sigmas: tuple[float, ...] = (0.005, 0.05),
    seed: int = 0,
    ground_truth: GroundTruth | None = None,
) -> Samples:
    """Uniform points in the scene box plus near-surface points, with occupancy and signed distance.

    The near-surface half follows DeepSDF/Occupancy Networks practice: surface samples perturbed by a
    small ``sigma`` (the thin band the zero level set is fitted from) and a larger one. Occupancy is
    the sign of the signed distance of the same query, so the two labels never disagree.
    """
    if n_uniform < 0 or n_surface < 0 or n_uniform + n_surface == 0:
        raise ValueError(f"need a positive number of samples, got n_uniform={n_uniform}, n_surface={n_surface}")
    gt = ground_truth if ground_truth is not None else GroundTruth(mesh)
    gt._require_watertight("sample_points (occupancy and signed distance)")
    rng = np.random.default_rng(seed)
    parts = [uniform_points(n_uniform, rng)]
    if n_surface > 0:
        surface, _ = surface_samples(mesh, n_surface, seed=int(rng.integers(2**31)))
        parts.append(near_surface_points(surface.astype(np.float64), sigmas, rng))
    points = np.concatenate(parts).astype(np.float32)
    sdf = gt.signed_distance(points).astype(np.float32)
    return Samples(points=points, occupancy=sdf < 0.0, sdf=sdf)
