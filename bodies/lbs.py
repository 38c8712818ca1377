"""Linear blend skinning and the SMPL body function, notes §13.2 (Loper et al., SMPL, 2015).

Small pure functions, batched over a leading ``B``, named after the paper:

* :func:`batch_rodrigues` — axis-angle ``theta_k`` to rotation matrices (Rodrigues' formula);
* :func:`blend_shapes` — ``B_S(beta) = sum_n beta_n S_n``;
* :func:`pose_features` — ``R(theta) - R(theta*)``: the 207 values of the 23 non-root joints' rotations
  minus the rest pose's (identity) rotations, the inputs of the pose blend shapes ``B_P``;
* :func:`vertices2joints` — the joint regressor ``J(beta) = J_regressor (T + B_S(beta))``;
* :func:`batch_rigid_transform` — the global transforms ``G_k(theta, J)`` along the kinematic tree;
* :func:`skin` — ``t'_i = (sum_k w_ki G_k) t_i`` of linear blend skinning (``t_i`` is vertex ``i``; the notes call it
  a joint location);
* :func:`lbs` — all of it: ``T_P = T + B_S(beta) + B_P(theta)``, then skinning.

The notes' ``G_k(theta, J)`` maps a rest-pose point to the posed one; as in SMPL, that is the global
transform along the chain with the rest joint removed, ``G_k = G'_k [I, -J_k; 0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from bodies.skeleton import depth_levels

__all__ = [
    "KinematicTree",
    "batch_rigid_transform",
    "batch_rodrigues",
    "blend_shapes",
    "kinematic_tree",
    "lbs",
    "pose_features",
    "skin",
    "vertices2joints",
]


def batch_rodrigues(rot_vecs: Float[Tensor, "*B 3"]) -> Float[Tensor, "*B 3 3"]:
    """Rotation matrices of axis-angle vectors ``theta`` by Rodrigues' formula, written without the unit axis:
    ``R = I + (sin a / a) K + ((1 - cos a) / a^2) K^2`` with ``a = |theta|`` and ``K`` the cross-product matrix
    of ``theta``. Both factors are evaluated stably (``1 - cos a = 2 sin^2(a / 2)``; Taylor series near 0), so
    ``R`` and its gradient are exact at and around the zero rotation (where fitting starts)."""
    if rot_vecs.shape[-1] != 3:
        raise ValueError(f"rot_vecs must be [..., 3] axis-angle vectors, got {tuple(rot_vecs.shape)}")
    a2 = (rot_vecs * rot_vecs).sum(-1)[..., None, None]  # [*B, 1, 1]
    small = a2 < 1e-8
    half = 0.5 * torch.sqrt(torch.where(small, torch.ones_like(a2), a2))
    sinc = torch.where(small, 1.0 - a2 / 6.0, torch.sin(2.0 * half) / (2.0 * half))  # sin(a) / a
    cosc = torch.where(small, 0.5 - a2 / 24.0, 0.5 * (torch.sin(half) / half) ** 2)  # (1 - cos a) / a^2
    x, y, z = rot_vecs.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)
    return eye + sinc * K + cosc * (K @ K)


def blend_shapes(betas: Float[Tensor, "B S"], shapedirs: Float[Tensor, "N 3 S"]) -> Float[Tensor, "B N 3"]:
    """The shape blend shapes ``B_S(beta) = sum_n beta_n S_n`` (displacements of the template's vertices)."""
    return torch.einsum("bs,nks->bnk", betas, shapedirs)


def vertices2joints(J_regressor: Float[Tensor, "J N"], vertices: Float[Tensor, "B N 3"]) -> Float[Tensor, "B J 3"]:
    """Joint locations regressed from the vertices: ``J = J_regressor V``."""
    return torch.einsum("jn,bnk->bjk", J_regressor, vertices)


def pose_features(rot_mats: Float[Tensor, "B J 3 3"]) -> Float[Tensor, "B P"]:
    """``R(theta) - R(theta*)`` of notes §13.2: each non-root joint's rotation minus the rest pose's identity,
    flattened row by row (``P = 9 (J - 1)``; 207 for SMPL). The root is left out: turning the whole body
    changes no muscle."""
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).flatten(1)


class KinematicTree(NamedTuple):
    """A tree prepared for chaining transforms by pointer jumping (``kinematic_tree``)."""

    jumps: tuple[Tensor, ...]  # per round, [J + 1]: the node 2^r steps up (the sentinel J above the root)
    parents: Tensor  # [J]: each joint's parent, the sentinel J for the root


def kinematic_tree(parents: Tensor | Sequence[int]) -> KinematicTree:
    """The jump tables of :func:`batch_rigid_transform` for a tree rooted at joint 0 (``parents[0]``, any value, is
    read as the root's)."""
    parents = np.asarray(parents.tolist() if isinstance(parents, Tensor) else parents, dtype=np.int64).copy()
    parents[0] = -1
    depth = len(depth_levels(parents))  # the longest path has ``depth`` joints
    J = len(parents)
    jump = np.append(np.where(parents < 0, J, parents), J)  # [J + 1]; the sentinel is its own parent
    jumps = []
    for _ in range(max(1, math.ceil(math.log2(depth)))):
        jumps.append(torch.from_numpy(jump.copy()))
        jump = jump[jump]
    return KinematicTree(tuple(jumps), torch.from_numpy(np.where(parents < 0, J, parents)))


def batch_rigid_transform(
    rot_mats: Float[Tensor, "B J 3 3"],
    joints: Float[Tensor, "B J 3"],
    parents: Tensor | Sequence[int],
    tree: KinematicTree | None = None,
) -> tuple[Float[Tensor, "B J 3"], Float[Tensor, "B J 4 4"]]:
    """The posed joints and ``G_k(theta, J)``: joint ``k``'s rigid transform about its parent's frame,
    ``[R_k, J_k - J_parent(k)]``, chained from the root, with the rest joint removed (so ``G_k`` applies to
    rest-pose points).

    The chain ``G_k = L_root ... L_parent(k) L_k`` is composed by pointer jumping: after round ``r`` each joint
    holds the product of its ``2^r`` nearest links, so SMPL's 9-joint-deep tree takes 4 rounds of one batched
    product each instead of 23 products in turn (``tree`` caches the jump tables of :func:`kinematic_tree`)."""
    B, J = joints.shape[:2]
    if rot_mats.shape != (B, J, 3, 3):
        raise ValueError(f"rot_mats must be [B, J, 3, 3] = {[B, J, 3, 3]} for joints {list(joints.shape)}, "
                         f"got {list(rot_mats.shape)}")
    tree = kinematic_tree(parents) if tree is None else tree
    padded = torch.cat([joints, joints.new_zeros(B, 1, 3)], dim=1)  # the sentinel sits at the origin
    rel_joints = joints - padded.index_select(1, tree.parents)  # the root keeps its position
    bottom = joints.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(B, J + 1, 1, 4)
    top = torch.cat([rot_mats, rel_joints[..., None]], dim=-1)  # [B, J, 3, 4]
    eye = torch.eye(3, 4, dtype=top.dtype, device=top.device).expand(B, 1, 3, 4)
    chain = torch.cat([torch.cat([top, eye], dim=1), bottom], dim=2)  # [B, J + 1, 4, 4]; the sentinel's is I
    for jump in tree.jumps:
        chain = chain.index_select(1, jump) @ chain
    chain = chain[:, :J]
    posed_joints = chain[:, :, :3, 3]
    rest_removed = posed_joints - (chain[:, :, :3, :3] @ joints[..., None])[..., 0]
    A = torch.cat([chain[:, :, :, :3], torch.cat([rest_removed, joints.new_zeros(B, J, 1)], dim=-1)[..., None]],
                  dim=-1)
    return posed_joints, A


def skin(
    vertices: Float[Tensor, "B N 3"], weights: Float[Tensor, "N J"], A: Float[Tensor, "B J 4 4"]
) -> Float[Tensor, "B N 3"]:
    """Linear blend skinning: ``t'_i = (sum_k w_ki G_k) t_i`` (only the top 3 rows of each ``G_k`` are needed)."""
    B, J = A.shape[:2]
    T = torch.einsum("nj,bjk->bnk", weights, A[:, :, :3, :].reshape(B, J, 12)).unflatten(-1, (3, 4))  # [B, N, 3, 4]
    return (T[..., :3] @ vertices[..., None])[..., 0] + T[..., 3]


def lbs(
    betas: Float[Tensor, "B S"],
    pose: Float[Tensor, "B P"],
    v_template: Float[Tensor, "N 3"],
    shapedirs: Float[Tensor, "N 3 S"],
    posedirs: Float[Tensor, "N 3 207"],
    J_regressor: Float[Tensor, "J N"],
    parents: Tensor | Sequence[int],
    weights: Float[Tensor, "N J"],
    pose2rot: bool = True,
) -> tuple[Float[Tensor, "B N 3"], Float[Tensor, "B J 3"]]:
    """The SMPL body ``M(beta, theta)`` of notes §13.2, written step by step (the reference; ``BodyModel`` fuses it).

    ``pose`` is ``[B, 3 J]`` axis-angle (root first), or ``[B, J, 3, 3]`` rotation matrices with ``pose2rot=False``.
    Returns the posed vertices and the posed joints ``G_k``'s translations (the joints SMPL reports).
    """
    B = betas.shape[0]
    J = J_regressor.shape[0]
    v_shaped = v_template + blend_shapes(betas, shapedirs)  # T + B_S(beta)
    joints = vertices2joints(J_regressor, v_shaped)  # J(beta)
    rot_mats = batch_rodrigues(pose.reshape(B, J, 3)) if pose2rot else pose.reshape(B, J, 3, 3)
    v_posed = v_shaped + torch.einsum("bp,nkp->bnk", pose_features(rot_mats), posedirs)  # + B_P(theta)
    posed_joints, A = batch_rigid_transform(rot_mats, joints, parents)
    return skin(v_posed, weights, A), posed_joints
