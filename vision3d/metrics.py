"""Mesh reconstruction metrics: volumetric IoU, Chamfer-L1, normal consistency and F-score.

Notes §12; the definitions are those of Occupancy Networks (Mescheder et al. 2019, §4) and
Convolutional Occupancy Networks (Peng et al. 2020), with the F-score of Tatarchenko et al. 2019
("What do single-view 3D reconstruction networks learn?"):

* accuracy ``= mean_{p in P} min_{q in Q} ||p - q||`` (prediction ``P`` to reference ``Q``) and
  completeness the same from ``Q`` to ``P``; **Chamfer-L1** ``= (accuracy + completeness) / 2``
  with Euclidean (not squared) distances.
* **normal consistency** ``= (mean_P |<n_p, n_nn(p)>| + mean_Q |<n_q, n_nn(q)>|) / 2``: the absolute
  cosine between a point's normal and its nearest neighbour's normal, so orientation does not count.
* **F-score** at threshold ``d``: the harmonic mean of precision (fraction of ``P`` within ``d`` of
  ``Q``) and recall (fraction of ``Q`` within ``d`` of ``P``).
* **volumetric IoU** ``= |occ_P and occ_Q| / |occ_P or occ_Q|`` over points drawn uniformly in a box.

and, for rendered images (DVR, NeRF, Gaussian splatting), the **silhouette IoU** of masks and the
**PSNR** ``-10 log10(MSE)`` of colours in ``[0, 1]``.

Point sets are surface samples drawn by area (``groundtruth.surface_samples``), nearest neighbours
come from scipy's ``cKDTree``, and occupancy from ``groundtruth.GroundTruth`` (open3d ray parity).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from vision3d.groundtruth import GroundTruth, surface_samples


def _check_cloud(points: np.ndarray, name: str) -> np.ndarray:  # [N, 3] float64
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name}: expected shape [N, 3], got {points.shape}")
    if len(points) == 0:
        raise ValueError(f"{name}: expected at least one point, got an empty set")
    return points


def _check_normals(normals: np.ndarray, points: np.ndarray, name: str) -> np.ndarray:  # [N, 3] unit
    normals = np.asarray(normals, dtype=np.float64)
    if normals.shape != points.shape:
        raise ValueError(f"{name}: expected shape {points.shape} (one normal per point), got {normals.shape}")
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    if np.any(length == 0):
        raise ValueError(f"{name}: contains zero-length normals")
    return normals / length


class Matching(NamedTuple):
    """Nearest neighbours both ways between point sets ``a`` [N, 3] and ``b`` [M, 3]."""

    dist_ab: np.ndarray  # [N] distance from each a to its nearest b
    index_ab: np.ndarray  # [N] index into b of that neighbour
    dist_ba: np.ndarray  # [M]
    index_ba: np.ndarray  # [M] index into a


def match(points_a: np.ndarray, points_b: np.ndarray) -> Matching:
    """Nearest neighbours from ``a`` [N, 3] to ``b`` [M, 3] and back, with k-d trees."""
    a = _check_cloud(points_a, "points_a")
    b = _check_cloud(points_b, "points_b")
    dist_ab, index_ab = cKDTree(b).query(a, workers=-1)
    dist_ba, index_ba = cKDTree(a).query(b, workers=-1)
    return Matching(dist_ab, index_ab, dist_ba, index_ba)


def _chamfer(m: Matching) -> float:
    return 0.5 * (float(m.dist_ab.mean()) + float(m.dist_ba.mean()))


def _normal_consistency(m: Matching, normals_a: np.ndarray, normals_b: np.ndarray) -> float:
    cos_ab = np.abs(np.sum(normals_a * normals_b[m.index_ab], axis=1))
    cos_ba = np.abs(np.sum(normals_b * normals_a[m.index_ba], axis=1))
    return 0.5 * (float(cos_ab.mean()) + float(cos_ba.mean()))


def _fscore(m: Matching, threshold: float) -> float:
    precision = float(np.mean(m.dist_ab < threshold))
    recall = float(np.mean(m.dist_ba < threshold))
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


def chamfer_l1(
    points_a: np.ndarray,  # [N, 3]
    points_b: np.ndarray,  # [M, 3]
) -> float:
    """Chamfer-L1: ``0.5 * (mean_a min_b ||a - b|| + mean_b min_a ||a - b||)`` (Euclidean, not squared)."""
    return _chamfer(match(points_a, points_b))


def normal_consistency(
    points_a: np.ndarray,  # [N, 3]
    normals_a: np.ndarray,  # [N, 3]
    points_b: np.ndarray,  # [M, 3]
    normals_b: np.ndarray,  # [M, 3]
) -> float:
    """``0.5 * (mean_a |<n_a, n_b(nn(a))>| + mean_b |<n_b, n_a(nn(b))>|)`` in [0, 1]; normals are
    normalised first, and a flipped normal counts as consistent (the absolute value)."""
    a = _check_cloud(points_a, "points_a")
    b = _check_cloud(points_b, "points_b")
    na = _check_normals(normals_a, a, "normals_a")
    nb = _check_normals(normals_b, b, "normals_b")
    return _normal_consistency(match(a, b), na, nb)


def fscore(
    points_a: np.ndarray,  # [N, 3], the prediction
    points_b: np.ndarray,  # [M, 3], the reference
    threshold: float,
) -> float:
    """F-score: harmonic mean of precision (fraction of ``a`` closer than ``threshold`` to ``b``) and
    recall (fraction of ``b`` closer than ``threshold`` to ``a``); 0 when both are 0."""
    if not threshold > 0:
        raise ValueError(f"threshold: expected a positive distance, got {threshold}")
    return _fscore(match(points_a, points_b), threshold)


def volumetric_iou(
    occupancy_a: np.ndarray,  # [N] bool
    occupancy_b: np.ndarray,  # [N] bool
) -> float:
    """``|a and b| / |a or b|`` of two occupancy labellings of the same points."""
    a = np.asarray(occupancy_a)
    b = np.asarray(occupancy_b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(
            f"occupancy_a, occupancy_b: expected two [N] arrays of the same length, got {a.shape} and {b.shape}"
        )
    if a.dtype != np.bool_ or b.dtype != np.bool_:
        raise ValueError(f"occupancy_a, occupancy_b: expected bool arrays, got {a.dtype} and {b.dtype}")
    union = int(np.count_nonzero(a | b))
    if union == 0:
        raise ValueError("occupancy_a, occupancy_b: both are empty, the IoU is undefined")
    return int(np.count_nonzero(a & b)) / union


@dataclass(frozen=True)
class MeshMetrics:
    """Reconstruction quality of a predicted mesh against a reference mesh; every field is None when there
    is no reference (:meth:`absent`: a dataset of images without ground-truth geometry)."""

    iou: float | None
    """Volumetric IoU; None when either mesh is not watertight (inside/outside is then undefined)."""
    chamfer_l1: float | None
    """Chamfer-L1 distance between surface samples, in scene units (lower is better)."""
    normal_consistency: float | None
    """Mean absolute cosine between normals of nearest neighbours, in [0, 1] (higher is better)."""
    fscore: float | None
    """F-score at ``fscore_threshold``, in [0, 1] (higher is better)."""
    fscore_threshold: float | None
    """The F-score's distance threshold: 1% of the reference's bounding-box diagonal."""

    @classmethod
    def absent(cls) -> MeshMetrics:
        """No reference mesh, so no geometry metrics: every field None (null in metrics.json)."""
        return cls(iou=None, chamfer_l1=None, normal_consistency=None, fscore=None, fscore_threshold=None)

    def to_dict(self) -> dict[str, float | None]:
        """Plain numbers for ``json.dump``."""
        return asdict(self)


def _check_mesh(mesh: trimesh.Trimesh, name: str) -> None:
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"{name}: expected a trimesh.Trimesh, got {type(mesh).__name__}")
    if len(mesh.faces) == 0 or mesh.area <= 0:
        raise ValueError(f"{name}: expected a mesh with faces of positive area, got an empty mesh")


def evaluate_mesh(
    pred: trimesh.Trimesh,
    reference: trimesh.Trimesh,
    n_points: int = 100_000,
    seed: int = 0,
) -> MeshMetrics:
    """All four metrics of ``pred`` against ``reference``, following Occupancy Networks' evaluation.

    Chamfer-L1, normal consistency and F-score use ``n_points`` area-weighted surface samples of each
    mesh (with face normals); the F-score threshold is 1% of the reference's bounding-box diagonal.
    The IoU uses ``n_points`` points drawn uniformly in the box bounding both meshes: any box that
    contains both solids gives an unbiased estimate of the true IoU (points outside both count for
    neither), and the tightest one has the least variance. ``iou`` is None when ``pred`` or
    ``reference`` is not watertight, because inside and outside are then undefined; marching cubes
    of a field whose surface closes inside the grid is watertight.
    """
    _check_mesh(pred, "pred")
    _check_mesh(reference, "reference")
    if n_points < 1:
        raise ValueError(f"n_points: expected a positive number, got {n_points}")
    seed_surface, seed_box = (int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=2))
    # The same seed for both meshes: a mesh compared with itself gets identical samples, hence a
    # Chamfer distance of exactly 0 rather than the spacing of two independent point sets.
    points_pred, normals_pred = (a.astype(np.float64) for a in surface_samples(pred, n_points, seed_surface))
    points_ref, normals_ref = (a.astype(np.float64) for a in surface_samples(reference, n_points, seed_surface))
    m = match(points_pred, points_ref)
    lo, hi = reference.bounds
    threshold = 0.01 * float(np.linalg.norm(hi - lo))

    iou = None
    if pred.is_watertight and reference.is_watertight:
        box_lo = np.minimum(pred.bounds[0], reference.bounds[0])
        box_hi = np.maximum(pred.bounds[1], reference.bounds[1])
        uniform = np.random.default_rng(seed_box).uniform(box_lo, box_hi, size=(n_points, 3))
        iou = volumetric_iou(GroundTruth(pred).occupancy(uniform), GroundTruth(reference).occupancy(uniform))

    return MeshMetrics(
        iou=iou,
        chamfer_l1=_chamfer(m),
        normal_consistency=_normal_consistency(m, normals_pred, normals_ref),
        fscore=_fscore(m, threshold),
        fscore_threshold=threshold,
    )


def silhouette_iou(pred_masks: np.ndarray, gt_masks: np.ndarray) -> float:  # both [N, H, W] bool
    """Intersection over union of two sets of silhouettes, pooled over all pixels of all views (1 if both empty)."""
    pred_masks, gt_masks = np.asarray(pred_masks, dtype=bool), np.asarray(gt_masks, dtype=bool)
    if pred_masks.shape != gt_masks.shape:
        raise ValueError(
            f"pred_masks and gt_masks must have the same shape, got {pred_masks.shape} and {gt_masks.shape}"
        )
    union = np.logical_or(pred_masks, gt_masks).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred_masks, gt_masks).sum() / union)


def psnr(pred: np.ndarray, target: np.ndarray) -> float:  # both [..., 3] in [0, 1]
    """Peak signal-to-noise ratio ``-10 log10(MSE)`` of images in ``[0, 1]``."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")
    mse = float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)
