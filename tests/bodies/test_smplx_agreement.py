"""The shipped body model in smplx (the peer) gives our vertices and joints, joint order included.

smplx's ``SMPL`` reads only pickles from a path, so the model goes in as its ``data_struct`` (the arrays of our
``.npz``) and, for the extra keypoints, with our keypoint vertex ids under smplx's names.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bodies.model import BodyModel, default_model_path
from bodies.model_files import smplx_vertex_ids

smplx = pytest.importorskip("smplx")  # in the test extra; skipped only where a user has not installed it

def smplx_model(path):
    from smplx.utils import Struct

    with np.load(path, allow_pickle=False) as data:
        struct = Struct(**{key: data[key] for key in data.files})
    ids = smplx_vertex_ids(path)
    model = smplx.SMPL(str(path), data_struct=struct, num_betas=10, vertex_ids=ids, batch_size=1)
    model.vertex_ids = ids
    return model


@pytest.mark.parametrize("B", [1, 16])
def test_shipped_model_agrees_with_smplx(B):
    path = default_model_path()
    ours, peer = BodyModel.from_file(path), smplx_model(path)
    g = torch.Generator().manual_seed(B)
    betas = torch.randn(B, 10, generator=g)
    body_pose = 0.6 * torch.randn(B, 69, generator=g)
    global_orient, transl = torch.randn(B, 3, generator=g), torch.randn(B, 3, generator=g)
    with torch.no_grad():
        a = ours(betas, body_pose, global_orient, transl)
        b = peer(betas=betas, body_pose=body_pose, global_orient=global_orient, transl=transl)
    assert b.vertices.dtype == torch.float32 and b.joints.shape == (B, 24 + 21, 3)
    assert (a.vertices - b.vertices).abs().max() <= 1e-6
    assert (a.joints - b.joints[:, :24]).abs().max() <= 1e-6
    assert (a.extra[:, :21] - b.joints[:, 24:]).abs().max() <= 1e-6
    fast = ours.joints(betas, body_pose, global_orient, transl)
    assert (fast.joints - b.joints[:, :24]).abs().max() <= 1e-6
    assert (fast.extra[:, :21] - b.joints[:, 24:]).abs().max() <= 1e-6


def test_the_pickle_export_loads_in_smplx_by_path(tmp_path):
    """``smplx.SMPL(model_path=...)``, the way smplx users load SMPL_NEUTRAL.pkl, on our exported pickle."""
    from bodies.model_files import write_smpl_pickle

    path = write_smpl_pickle(default_model_path(), tmp_path / "SMPL_NEUTRAL.pkl")
    ours = BodyModel.from_file(path)  # and back through the restricted unpickler
    peer = smplx.SMPL(model_path=str(path), num_betas=10, vertex_ids=smplx_model(default_model_path()).vertex_ids)
    g = torch.Generator().manual_seed(7)
    betas, body_pose = torch.randn(4, 10, generator=g), 0.6 * torch.randn(4, 69, generator=g)
    with torch.no_grad():
        a = ours(betas, body_pose)
        b = peer(betas=betas, body_pose=body_pose, global_orient=torch.zeros(4, 3), transl=torch.zeros(4, 3))
    assert (a.vertices - b.vertices).abs().max() <= 1e-6 and (a.joints - b.joints[:, :24]).abs().max() <= 1e-6
