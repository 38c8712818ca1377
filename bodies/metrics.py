"""Pose metrics of notes chapter 13: PCK / PCKh for 2D keypoints (§13.1) and MPJPE, PA-MPJPE and the
per-vertex error for 3D joints and meshes (§13.2).

- PCK@0.2 (Johnson & Everingham 2010's LSP protocol as used by Yang & Ramanan 2011): a keypoint is correct
  when it lies within ``0.2`` times the torso diameter (``skeleton.TORSO_PAIR``) of the truth.
- PCKh@0.5 (Andriluka et al. 2014, MPII): the same with ``0.5`` times the head segment (``skeleton.HEAD_PAIR``).
- MPJPE: mean Euclidean distance between predicted and true joints (Ionescu et al. 2014, Human3.6M).
- PA-MPJPE: MPJPE after a per-sample similarity Procrustes alignment (Umeyama 1991) of the prediction to the
  truth; the alignment is restricted to proper rotations (``det R = +1``), so a mirrored skeleton keeps an error.

numpy only: everything takes batched arrays ``[N, K, D]``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from bodies.skeleton import HEAD_PAIR, TORSO_PAIR

__all__ = [
    "PCKResult", "Similarity", "mpjpe", "pa_mpjpe", "pck", "per_vertex_error", "procrustes_align",
    "similarity_transform",
]


class PCKResult(NamedTuple):
    """Fraction of correct keypoints over all visible keypoints, and per keypoint (NaN where none is visible)."""

    overall: float
    per_keypoint: np.ndarray  # [K]


class Similarity(NamedTuple):
    """A similarity transform per sample, ``x -> scale * rotation @ x + translation``."""

    scale: np.ndarray  # [N]
    rotation: np.ndarray  # [N, D, D], det = +1
    translation: np.ndarray  # [N, D]


def _check_pair(pred: np.ndarray, truth: np.ndarray, dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[-1] not in dims:
        raise ValueError(f"pred must be [N, K, {'|'.join(map(str, dims))}], got {pred.shape}")
    if truth.shape != pred.shape:
        raise ValueError(f"truth must have pred's shape {pred.shape}, got {truth.shape}")
    return pred, truth


def pck(
    pred: np.ndarray,  # [N, K, 2]
    truth: np.ndarray,  # [N, K, 2]
    visible: np.ndarray,  # [N, K] bool
    threshold: float = 0.2,
    scale: Literal["torso", "head"] = "torso",
) -> PCKResult:
    """Percentage of correct keypoints (notes §13.1): ``||pred - truth|| <= threshold * s`` counted over visible
    keypoints, with ``s`` per sample the torso diameter ``||truth[l_shoulder] - truth[r_hip]||`` (PCK@0.2, LSP)
    or the head segment ``||truth[head_top] - truth[neck]||`` (PCKh@0.5 with ``threshold=0.5``)."""
    pred, truth = _check_pair(pred, truth, (2,))
    visible = np.asarray(visible, dtype=bool)
    if visible.shape != pred.shape[:2]:
        raise ValueError(f"visible must be [N, K] = {pred.shape[:2]}, got {visible.shape}")
    if scale not in ("torso", "head"):
        raise ValueError(f"scale must be 'torso' or 'head', got {scale!r}")
    a, b = TORSO_PAIR if scale == "torso" else HEAD_PAIR
    if pred.shape[1] <= max(a, b):
        raise ValueError(f"pck needs the 14 keypoints of skeleton.KEYPOINT_NAMES, got K = {pred.shape[1]}")
    s = np.linalg.norm(truth[:, a] - truth[:, b], axis=-1)  # [N]
    correct = (np.linalg.norm(pred - truth, axis=-1) <= threshold * s[:, None]) & visible  # [N, K]
    counts = visible.sum(0)  # [K]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_keypoint = np.where(counts > 0, correct.sum(0) / counts, np.nan)
    overall = float(correct.sum() / visible.sum()) if visible.any() else float("nan")
    return PCKResult(overall, per_keypoint)


def mpjpe(pred: np.ndarray, truth: np.ndarray) -> float:  # [N, J, 3] each
    """Mean per-joint position error (notes §13.2): the mean Euclidean distance over samples and joints."""
    pred, truth = _check_pair(pred, truth, (2, 3))
    return float(np.linalg.norm(pred - truth, axis=-1).mean())


def similarity_transform(pred: np.ndarray, truth: np.ndarray) -> Similarity:  # [N, K, D] each
    """Least-squares similarity taking ``pred`` onto ``truth`` per sample (Umeyama 1991).

    With centred points ``X`` (pred) and ``Y`` (truth) and ``X^T Y = U S V^T``, the rotation is
    ``R = V D U^T`` with ``D = diag(1, .., 1, sign det(V U^T))``: the last sign keeps ``R`` a proper rotation
    (the reflection fix), the scale is ``tr(S D) / ||X||^2`` and the translation ``mean(Y) - s R mean(X)``.
    """
    pred, truth = _check_pair(pred, truth, (2, 3))
    mu_x, mu_y = pred.mean(1), truth.mean(1)  # [N, D]
    x, y = pred - mu_x[:, None], truth - mu_y[:, None]  # [N, K, D]
    u, sv, vt = np.linalg.svd(np.einsum("nki,nkj->nij", x, y))  # X^T Y, [N, D, D]
    v = np.swapaxes(vt, 1, 2)
    d = np.ones_like(sv)  # [N, D]
    d[:, -1] = np.sign(np.linalg.det(v @ np.swapaxes(u, 1, 2)))
    d[d == 0] = 1.0
    rotation = v @ (d[:, :, None] * np.swapaxes(u, 1, 2))  # V D U^T
    norm_x = (x**2).sum((1, 2))  # [N]
    scale = np.where(norm_x > 0, (sv * d).sum(1) / np.where(norm_x > 0, norm_x, 1.0), 1.0)
    translation = mu_y - scale[:, None] * np.einsum("nij,nj->ni", rotation, mu_x)
    return Similarity(scale, rotation, translation)


def procrustes_align(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:  # [N, K, D] -> [N, K, D]
    """``pred`` moved by its best similarity onto ``truth`` (``similarity_transform``), per sample."""
    t = similarity_transform(pred, truth)
    pred = np.asarray(pred, dtype=np.float64)
    return t.scale[:, None, None] * np.einsum("nij,nkj->nki", t.rotation, pred) + t.translation[:, None]


def pa_mpjpe(pred: np.ndarray, truth: np.ndarray) -> float:  # [N, J, 3] each
    """Procrustes-aligned MPJPE (notes §13.2): MPJPE after ``procrustes_align`` (scale, proper rotation, shift)."""
    return mpjpe(procrustes_align(pred, truth), truth)


def per_vertex_error(pred: np.ndarray, truth: np.ndarray) -> float:  # [N, V, 3] each
    """Per-vertex error (PVE, notes §13.2): the mean Euclidean distance between corresponding mesh vertices."""
    pred, truth = _check_pair(pred, truth, (3,))
    return float(np.linalg.norm(pred - truth, axis=-1).mean())
