"""Dual-quaternion skinning (DQS): the reference deformer that the procedural body's pose blend shapes learn to
imitate (notes §13.2, "learning pose-dependent deformations").

Linear blend skinning averages the joints' 3x4 matrices, and an average of rotations is not a rotation: at a
bent elbow or a twisted wrist the blended matrix shrinks, and the skin collapses ("candy wrapper"). Kavan et
al. 2008 ("Geometric skinning with approximate dual quaternion blending") average unit dual quaternions
instead and renormalise, so every vertex moves by a rigid transform. The joints' transforms ``G_k`` are the
same as LBS's (:func:`bodies.lbs.batch_rigid_transform`), so DQS and LBS agree wherever a vertex follows a
single joint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bodies.lbs import batch_rigid_transform


def matrix_to_quaternion(R: Tensor) -> Tensor:  # [..., 3, 3] -> [..., 4] as (w, x, y, z), w >= 0
    """Unit quaternion of a rotation matrix. Of the four algebraically equivalent formulas, each entry takes
    the one whose divisor (``4 w``, ``4 x``, ``4 y`` or ``4 z``) is largest, which keeps it accurate."""
    m = R.reshape(*R.shape[:-2], 9).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    candidates = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], -2)  # [..., 4, 4]: row i is 4 q_i q (q_i = w, x, y, z in turn)
    diag = torch.diagonal(candidates, dim1=-2, dim2=-1)  # [..., 4] = 4 q_i^2
    best = diag.argmax(-1, keepdim=True)
    q = torch.take_along_dim(candidates, best[..., None], dim=-2)[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_multiply(p: Tensor, q: Tensor) -> Tensor:  # [..., 4] x [..., 4] -> [..., 4]
    """Hamilton product ``p q`` (``w, x, y, z`` order)."""
    pw, pv = p[..., :1], p[..., 1:]
    qw, qv = q[..., :1], q[..., 1:]
    return torch.cat([pw * qw - (pv * qv).sum(-1, keepdim=True), pw * qv + qw * pv + torch.cross(pv, qv, dim=-1)], -1)


def rigid_to_dual_quaternion(A: Tensor) -> tuple[Tensor, Tensor]:  # [..., 4, 4] -> [..., 4], [..., 4]
    """The unit dual quaternion ``q_r + eps q_d`` of a rigid transform: ``q_r`` its rotation and
    ``q_d = 1/2 (0, t) q_r``."""
    q_r = matrix_to_quaternion(A[..., :3, :3])
    t = torch.cat([torch.zeros_like(A[..., :1, 3]), A[..., :3, 3]], -1)
    return q_r, 0.5 * quaternion_multiply(t, q_r)


def dqs(
    vertices: Tensor,  # [B, N, 3] or [N, 3], rest pose
    weights: Tensor,  # [N, J], rows summing to 1
    rot_mats: Tensor,  # [B, J, 3, 3], each joint's rotation relative to its parent
    joints: Tensor,  # [B, J, 3] or [J, 3], rest joints
    parents: Tensor | Sequence[int],
) -> Tensor:  # [B, N, 3]
    """Dual-quaternion skinning with the joints' ``G_k`` of :func:`bodies.lbs.batch_rigid_transform`.

    Per vertex the joints' dual quaternions are put in the hemisphere of the vertex's heaviest joint (``q`` and
    ``-q`` are the same rotation; blending opposite signs would cancel), averaged with the skinning weights and
    normalised by the real part's norm; the vertex then moves by that single rigid transform.
    """
    if rot_mats.ndim != 4 or rot_mats.shape[-2:] != (3, 3):
        raise ValueError(f"rot_mats: expected [B, J, 3, 3], got {list(rot_mats.shape)}")
    B, J = rot_mats.shape[:2]
    if joints.ndim == 2:
        joints = joints.expand(B, -1, -1)
    if vertices.ndim == 2:
        vertices = vertices.expand(B, -1, -1)
    N = vertices.shape[1]
    if weights.shape != (N, J):
        raise ValueError(f"weights: expected [N, J] = {[N, J]}, got {list(weights.shape)}")
    if joints.shape != (B, J, 3) or vertices.shape != (B, N, 3):
        raise ValueError(f"joints/vertices: expected [B, J, 3] and [B, N, 3] for B={B}, J={J}, N={N}, "
                         f"got {list(joints.shape)} and {list(vertices.shape)}")
    _, A = batch_rigid_transform(rot_mats, joints, parents)
    q_r, q_d = rigid_to_dual_quaternion(A)  # [B, J, 4] each
    pivot = q_r[:, weights.argmax(1)]  # [B, N, 4]: each vertex's heaviest joint
    sign = torch.sign(torch.einsum("bnc,bjc->bnj", pivot, q_r))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    signed = weights * sign  # [B, N, J]
    b_r = torch.einsum("bnj,bjc->bnc", signed, q_r)
    b_d = torch.einsum("bnj,bjc->bnc", signed, q_d)
    norm = b_r.norm(dim=-1, keepdim=True)
    b_r, b_d = b_r / norm, b_d / norm
    w, v = b_r[..., :1], b_r[..., 1:]
    wd, vd = b_d[..., :1], b_d[..., 1:]
    translation = 2.0 * (w * vd - wd * v + torch.cross(v, vd, dim=-1))
    uv = torch.cross(v, vertices, dim=-1)
    rotated = vertices + 2.0 * (w * uv + torch.cross(v, uv, dim=-1))
    return rotated + translation
