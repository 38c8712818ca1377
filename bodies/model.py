"""The SMPL-format body model as a module, notes §13.2: ``M(beta, theta) = W(T + B_S(beta) + B_P(theta), J(beta), theta, w)``.

:class:`BodyModel` computes what :func:`bodies.lbs.lbs` computes, in fewer and larger operations:

* the shape and pose blend shapes are one matrix product, ``[beta, R(theta) - R(theta*)] [S; P]``;
* the joints ``J(beta) = J_regressor (T + B_S(beta))`` are linear in ``beta``, so the regressor is applied to
  ``T`` and ``S`` once, at load time (``J_template``, ``J_shapedirs``), and never to the vertices;
* the kinematic chain is composed one depth of the tree at a time (8 products for SMPL's 23 joints);
* :meth:`BodyModel.joints` is the fitting path: joints and keypoint vertices only, no mesh.

Its call follows smplx's (``betas``, ``body_pose``, ``global_orient``, ``transl``), and it loads the same files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

from bodies.lbs import batch_rigid_transform, batch_rodrigues, kinematic_tree, pose_features, skin
from bodies.model_files import ModelArrays, read_model
from bodies.skeleton import EXTRA_KEYPOINT_NAMES, JOINT_NAMES, KEYPOINT_NAMES

__all__ = ["BodyModel", "BodyOutput", "default_model_path", "keypoints_from"]


def default_model_path() -> Path:
    """The body model that ships with the package (procedural, redistributable; see ``assets/bodies/README``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "bodies" / "procedural_body.npz"


class BodyOutput(NamedTuple):
    """A posed body: its mesh (``None`` from the joints-only path), its 24 joints and its keypoint vertices."""

    vertices: Tensor | None  # [B, N, 3]
    joints: Tensor  # [B, 24, 3]
    extra: Tensor | None  # [B, K, 3], at skeleton.EXTRA_KEYPOINT_NAMES (None when the model has no keypoint ids)


def pose_regions(support: np.ndarray, regions: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Vertices grouped into ``regions`` that share the joints their pose blend shapes read (``support [N, J - 1]``):
    the vertices with one support set start as a group, and the two groups whose union adds the fewest
    (features x vertices) to read are merged until ``regions`` remain. Returns (joints [J - 1] bool, vertex ids)."""
    sets, members = np.unique(support, axis=0, return_inverse=True)
    groups = [(row.astype(bool), np.flatnonzero(members.reshape(-1) == g)) for g, row in enumerate(sets)]
    while len(groups) > regions:
        on = np.array([g[0] for g in groups], dtype=float)
        n = np.array([len(g[1]) for g in groups], dtype=float)
        size = on.sum(1)
        union = size[:, None] + size[None] - on @ on.T
        added = union * (n[:, None] + n[None]) - (size * n)[:, None] - (size * n)[None]
        np.fill_diagonal(added, np.inf)
        i, j = sorted(np.unravel_index(np.argmin(added), added.shape))
        groups[i] = (groups[i][0] | groups[j][0], np.concatenate([groups[i][1], groups[j][1]]))
        del groups[j]
    return groups


def keypoints_from(joints: Float[Tensor, "*B 24 D"], extra: Float[Tensor, "*B K D"]) -> Float[Tensor, "*B 14 D"]:
    """The 14 keypoints of the 2D methods (``skeleton.KEYPOINT_NAMES``) picked from the joints and keypoint vertices."""
    columns = [extra[..., EXTRA_KEYPOINT_NAMES.index(name), :] if name in EXTRA_KEYPOINT_NAMES
               else joints[..., JOINT_NAMES.index(name), :] for name in KEYPOINT_NAMES]
    return torch.stack(columns, dim=-2)


class BodyModel(nn.Module):
    """An SMPL-format body: ``forward(betas, body_pose, global_orient, transl) -> BodyOutput``.

    >>> model = BodyModel.from_file(default_model_path())  # doctest: +SKIP
    >>> out = model(betas=torch.zeros(1, 10))  # the template in its rest pose  # doctest: +SKIP
    """

    def __init__(self, arrays: ModelArrays, num_betas: int = 10, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        S = arrays.shapedirs.shape[2]
        if not 1 <= num_betas <= S:
            raise ValueError(f"num_betas must be in 1..{S} (the model's shape components), got {num_betas}")
        self.num_betas, self.num_joints = num_betas, arrays.J_regressor.shape[0]
        self.num_vertices = arrays.v_template.shape[0]

        def buffer(name: str, value: object, persistent: bool = True) -> None:
            self.register_buffer(name, torch.as_tensor(value, dtype=dtype), persistent=persistent)

        shapedirs = arrays.shapedirs[:, :, :num_betas]
        buffer("v_template", arrays.v_template)  # T [N, 3]
        buffer("J_regressor", arrays.J_regressor)  # [J, N]
        buffer("weights", arrays.weights)  # w [N, J]
        self.register_buffer("parents", torch.as_tensor(arrays.parents))
        self.register_buffer("faces", torch.as_tensor(arrays.faces))
        # S and P are stored once, coordinate-major ([3, N]: all x, then all y, then all z), so that blending and
        # skinning are a few long operations; ``shapedirs``/``posedirs`` are views in SMPL's layout. Derived buffers
        # (the template in that layout, the regressed joints) are not stored.
        N, P = self.num_vertices, arrays.posedirs.shape[2]
        buffer("template_cm", arrays.v_template.T.reshape(1, -1), persistent=False)  # [1, 3N]
        buffer("shapedirs_cm", shapedirs.transpose(2, 1, 0).reshape(num_betas, -1))  # [S, 3N]
        posedirs_cm = arrays.posedirs.transpose(2, 1, 0).reshape(P, -1)  # [207, 3N]
        buffer("posedirs_cm", posedirs_cm)
        buffer("weights_t", arrays.weights.T, persistent=False)  # [J, N]
        buffer("J_template", arrays.J_regressor @ arrays.v_template, persistent=False)  # [J, 3]
        buffer("J_shapedirs", (arrays.J_regressor @ shapedirs.reshape(N, -1)).reshape(
            self.num_joints, 3, num_betas).transpose(2, 0, 1).reshape(num_betas, -1), persistent=False)  # [S, 3J]
        # Pose blend shapes are local when each vertex's column of P is zero outside a few joints' 9 features:
        # then only those blocks are read (batch 1 is bound by reading P, 12 MB for 5000 vertices).
        support = np.abs(posedirs_cm.reshape(self.num_joints - 1, 9, 3, N)).max(axis=(1, 2)).T > 0  # [N, J - 1]
        self.pose_regions: list[tuple[Tensor, Tensor]] | None = None
        if support.mean() <= 0.4:
            regions = pose_regions(support)
            self.pose_regions = []
            for joints_on, vertices in regions:
                feats = np.flatnonzero(np.repeat(joints_on, 9))
                block = posedirs_cm.reshape(P, 3, N)[feats][:, :, vertices].reshape(len(feats), -1)
                self.pose_regions.append((torch.from_numpy(feats), torch.as_tensor(block, dtype=dtype)))
            order = np.concatenate([vertices for _, vertices in regions])
            self.region_inverse = torch.from_numpy(np.argsort(order))
        ids = arrays.extra_vertex_ids
        self.register_buffer("extra_vertex_ids", None if ids is None else torch.as_tensor(ids))
        if ids is not None:  # the joints-only path blends and skins these vertices only
            dirs = np.concatenate([shapedirs[ids].reshape(-1, num_betas), arrays.posedirs[ids].reshape(-1, P)], 1)
            buffer("extra_template", arrays.v_template[ids].reshape(1, -1), persistent=False)  # [1, 3K]
            buffer("extra_dirs", dirs.T, persistent=False)  # [S + 207, 3K]
        self.vertex_colors = arrays.vertex_colors
        self.tree = kinematic_tree(arrays.parents)

    @property
    def shapedirs(self) -> Tensor:  # [N, 3, S], SMPL's layout (a view)
        return self.shapedirs_cm.view(self.num_betas, 3, self.num_vertices).permute(2, 1, 0)

    @property
    def posedirs(self) -> Tensor:  # [N, 3, 207], SMPL's layout (a view)
        return self.posedirs_cm.view(-1, 3, self.num_vertices).permute(2, 1, 0)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None, num_betas: int = 10,
                  dtype: torch.dtype = torch.float32) -> BodyModel:
        """Load an SMPL-format ``.npz`` or official ``.pkl`` (no code runs); the shipped model by default."""
        return cls(read_model(default_model_path() if path is None else path), num_betas=num_betas, dtype=dtype)

    # ------------------------------------------------------------------ inputs
    def _inputs(self, betas: Tensor | None, body_pose: Tensor | None, global_orient: Tensor | None,
                transl: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``betas [B, S]``, the rotations ``[B, J, 3, 3]`` and ``transl``; missing inputs are zeros."""
        given = [t for t in (betas, body_pose, global_orient, transl) if t is not None]
        B = given[0].shape[0] if given else 1
        like = self.v_template
        expected = {"betas": (betas, self.num_betas), "body_pose": (body_pose, 3 * (self.num_joints - 1)),
                    "global_orient": (global_orient, 3), "transl": (transl, 3)}
        for name, (value, width) in expected.items():
            if value is not None and tuple(value.shape) != (B, width):
                raise ValueError(f"{name} must be [B, {width}] = [{B}, {width}], got {list(value.shape)}")
        if betas is None:
            betas = like.new_zeros(B, self.num_betas)
        if body_pose is None:
            body_pose = like.new_zeros(B, 3 * (self.num_joints - 1))
        if global_orient is None:
            global_orient = like.new_zeros(B, 3)
        pose = torch.cat([global_orient, body_pose], dim=1).view(B, self.num_joints, 3)
        return betas, batch_rodrigues(pose), transl

    def rest_joints(self, betas: Float[Tensor, "B S"]) -> Float[Tensor, "B J 3"]:
        """``J(beta) = J_regressor (T + B_S(beta))``, from the precomputed regression of ``T`` and ``S``."""
        return torch.addmm(self.J_template.view(1, -1), betas, self.J_shapedirs).view(-1, self.num_joints, 3)

    # ------------------------------------------------------------------ the body
    def forward(
        self,
        betas: Float[Tensor, "B S"] | None = None,
        body_pose: Float[Tensor, "B 69"] | None = None,
        global_orient: Float[Tensor, "B 3"] | None = None,
        transl: Float[Tensor, "B 3"] | None = None,
    ) -> BodyOutput:
        """The posed mesh, its joints and its keypoint vertices (as smplx's ``SMPL.forward``)."""
        betas, rot_mats, transl = self._inputs(betas, body_pose, global_orient, transl)
        B = betas.shape[0]
        v_posed = self._blend(betas, pose_features(rot_mats)).view(B, 3, -1)  # T + B_S + B_P, [B, 3, N]
        joints, A = batch_rigid_transform(rot_mats, self.rest_joints(betas), self.parents, self.tree)
        vertices = self._skin(v_posed, A)
        if transl is not None:
            vertices, joints = vertices + transl[:, None], joints + transl[:, None]
        extra = None if self.extra_vertex_ids is None else vertices.index_select(1, self.extra_vertex_ids)
        return BodyOutput(vertices, joints, extra)

    def _blend(self, betas: Tensor, features: Tensor) -> Tensor:  # [B, 3N], coordinate-major
        """``T + B_S(beta) + B_P(theta)``: one product with the dense ``[S; P]``, or with each region's block of ``P``."""
        shaped = torch.addmm(self.template_cm, betas, self.shapedirs_cm)
        if self.pose_regions is None or betas.shape[0] > 8:  # a big batch keeps BLAS busy: dense is as fast
            return torch.addmm(shaped, features, self.posedirs_cm)
        B = betas.shape[0]
        blocks = [(features.index_select(1, feats) @ block).view(B, 3, -1) for feats, block in self.pose_regions]
        return shaped + torch.cat(blocks, dim=2)[:, :, self.region_inverse].view(B, -1)

    def _skin(self, v_posed: Tensor, A: Tensor) -> Tensor:  # v_posed [B, 3, N] -> [B, N, 3]
        """:func:`bodies.lbs.skin` in the coordinate-major layout: ``T = sum_k w_k G_k`` as one product, then
        ``x' = T_0 x + T_1 y + T_2 z + T_3`` for the three rows, each a pass over all vertices."""
        B, J = A.shape[:2]
        T = (A[:, :, :3, :].reshape(B, J, 12).transpose(1, 2).reshape(B * 12, J) @ self.weights_t).view(B, 3, 4, -1)
        x, y, z = v_posed[:, None, 0], v_posed[:, None, 1], v_posed[:, None, 2]
        out = torch.addcmul(T[:, :, 3], T[:, :, 0], x).addcmul_(T[:, :, 1], y).addcmul_(T[:, :, 2], z)
        return out.transpose(1, 2).contiguous()

    def joints(
        self,
        betas: Float[Tensor, "B S"] | None = None,
        body_pose: Float[Tensor, "B 69"] | None = None,
        global_orient: Float[Tensor, "B 3"] | None = None,
        transl: Float[Tensor, "B 3"] | None = None,
    ) -> BodyOutput:
        """The joints and keypoint vertices without the mesh (what fitting to keypoints needs): only the
        keypoint vertices are blended and skinned."""
        betas, rot_mats, transl = self._inputs(betas, body_pose, global_orient, transl)
        joints, A = batch_rigid_transform(rot_mats, self.rest_joints(betas), self.parents, self.tree)
        extra = None
        if self.extra_vertex_ids is not None:
            ids = self.extra_vertex_ids
            features = torch.cat([betas, pose_features(rot_mats)], dim=1)
            v_posed = torch.addmm(self.extra_template, features, self.extra_dirs).view(betas.shape[0], -1, 3)
            extra = skin(v_posed, self.weights[ids], A)
        if transl is not None:
            joints = joints + transl[:, None]
            extra = None if extra is None else extra + transl[:, None]
        return BodyOutput(None, joints, extra)

    def keypoints(self, output: BodyOutput) -> Float[Tensor, "B 14 3"]:
        """The 14 keypoints of the 2D methods (``skeleton.KEYPOINT_NAMES``) of a posed body."""
        if output.extra is None:
            raise ValueError("this body model has no keypoint vertices (extra_vertex_ids), so it has no head top")
        return keypoints_from(output.joints, output.extra)
