"""BodyModel and its files: the fused forward equals the step-by-step lbs, the joints-only path equals the
full one, SMPL .pkl files load without chumpy, and a malicious pickle runs nothing."""

from __future__ import annotations

import copyreg
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from bodies.lbs import lbs
from bodies.model import BodyModel
from bodies.model_files import read_model
from bodies.skeleton import PARENTS
from tests.bodies.conftest import random_model_arrays


def _pose(B, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, 10, generator=g, dtype=dtype), 0.5 * torch.randn(B, 69, generator=g, dtype=dtype),
            0.5 * torch.randn(B, 3, generator=g, dtype=dtype), torch.randn(B, 3, generator=g, dtype=dtype))


def _reference(model_arrays, betas, body_pose, global_orient, transl):
    a = {k: torch.as_tensor(v) for k, v in model_arrays.items() if k not in ("f", "kintree_table", "extra_vertex_ids")}
    vertices, joints = lbs(betas, torch.cat([global_orient, body_pose], 1), a["v_template"], a["shapedirs"],
                           a["posedirs"], a["J_regressor"], PARENTS, a["weights"])
    return vertices + transl[:, None], joints + transl[:, None]


@pytest.mark.parametrize("local", [False, True])
@pytest.mark.parametrize("B", [1, 3, 12])
def test_forward_equals_lbs_and_joints_path_equals_forward(tmp_path, B, local):
    arrays = random_model_arrays()
    if local:  # pose blend shapes that are zero outside a few joints per vertex take the block path
        keep = np.random.default_rng(3).random((len(arrays["v_template"]), 1, 23)) < 0.15
        arrays["posedirs"] = arrays["posedirs"] * np.repeat(keep, 9, axis=2)
    np.savez(tmp_path / "m.npz", **arrays)
    model = BodyModel.from_file(tmp_path / "m.npz", dtype=torch.float64)
    assert (model.pose_regions is not None) == local
    inputs = _pose(B)
    out = model(*inputs)
    v_ref, j_ref = _reference(arrays, *inputs)
    torch.testing.assert_close(out.vertices, v_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.joints, j_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.extra, v_ref[:, torch.as_tensor(arrays["extra_vertex_ids"])], atol=1e-12, rtol=0)
    fast = model.joints(*inputs)
    assert fast.vertices is None
    torch.testing.assert_close(fast.joints, out.joints, atol=1e-12, rtol=0)
    torch.testing.assert_close(fast.extra, out.extra, atol=1e-12, rtol=0)
    assert model.keypoints(out).shape == (B, 14, 3)


def test_template_at_rest_and_gradients_flow(model_npz):
    model = BodyModel.from_file(model_npz)
    out = model()
    arrays = read_model(model_npz)
    np.testing.assert_allclose(out.vertices[0].numpy(), arrays.v_template, atol=1e-6)
    np.testing.assert_allclose(out.joints[0].numpy(), arrays.J_regressor @ arrays.v_template, atol=1e-6)
    betas = torch.zeros(2, 10, requires_grad=True)
    pose = torch.zeros(2, 69, requires_grad=True)
    model.joints(betas, pose).joints.sum().backward()
    assert betas.grad.abs().sum() > 0 and torch.isfinite(pose.grad).all()


def test_bad_inputs_are_one_line_errors(model_npz, tmp_path):
    model = BodyModel.from_file(model_npz)
    with pytest.raises(ValueError, match=r"body_pose must be \[B, 69\] = \[2, 69\], got \[2, 72\]"):
        model(torch.zeros(2, 10), torch.zeros(2, 72))
    with pytest.raises(ValueError, match="num_betas must be in 1..10"):
        BodyModel.from_file(model_npz, num_betas=11)
    arrays = random_model_arrays()
    arrays["posedirs"] = arrays["posedirs"][:, :, :200]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad.npz: posedirs must be \[120, 3, 207\], got shape \[120, 3, 200\]"):
        BodyModel.from_file(tmp_path / "bad.npz")
    del arrays["weights"]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="bad.npz: missing weights"):
        read_model(tmp_path / "bad.npz")
    (tmp_path / "m.obj").write_text("v 0 0 0\n")
    with pytest.raises(ValueError, match="ending in .npz or .pkl"):
        read_model(tmp_path / "m.obj")


# ---------------------------------------------------------------------- SMPL .pkl files
def _fake_module(name, **attrs):
    module = types.ModuleType(name)
    for key, value in attrs.items():
        value.__module__, value.__qualname__ = name, key
        setattr(module, key, value)
    return module


class _Ch:  # pickles as chumpy.ch.Ch does: a plain object whose state holds the array in "x"
    def __init__(self, x):
        self.x = x

    def __reduce_ex__(self, protocol):
        return copyreg._reconstructor, (type(self), object, None), {"x": self.x, "_dirty_vars": set()}


def write_smpl_like_pickle(path, arrays):
    """A pickle shaped like the official SMPL files: chumpy arrays and a scipy sparse regressor (protocol 2)."""
    import scipy.sparse

    sys.modules["chumpy"] = _fake_module("chumpy")
    sys.modules["chumpy.ch"] = _fake_module("chumpy.ch", Ch=_Ch)
    try:
        data = {key: (_Ch(value) if key in ("v_template", "shapedirs", "posedirs", "weights") else value)
                for key, value in arrays.items() if key != "extra_vertex_ids"}
        data["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
        data["bs_style"], data["bs_type"] = "lbs", "lrotmin"
        path.write_bytes(pickle.dumps(data, protocol=2))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_smpl_pickle_loads_without_chumpy(tmp_path):
    arrays = random_model_arrays()
    write_smpl_like_pickle(tmp_path / "SMPL_NEUTRAL.pkl", arrays)
    assert "chumpy" not in sys.modules
    loaded = read_model(tmp_path / "SMPL_NEUTRAL.pkl")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        np.testing.assert_array_equal(getattr(loaded, key), arrays[key])
    assert loaded.parents.tolist() == [-1, *PARENTS[1:]] and "chumpy" not in sys.modules
    np.savez(tmp_path / "m.npz", **arrays)
    inputs = _pose(2, dtype=torch.float32)
    a = BodyModel.from_file(tmp_path / "SMPL_NEUTRAL.pkl")(*inputs)
    b = BodyModel.from_file(tmp_path / "m.npz")(*inputs)
    torch.testing.assert_close(a.vertices, b.vertices, atol=0, rtol=0)


class _Payload:
    def __reduce__(self):
        return os.system, ("touch PWNED",)


@pytest.mark.parametrize("payload", ["system", "eval", "nested"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    data = {"v_template": np.zeros((3, 3))}
    if payload == "system":
        data["posedirs"] = _Payload()
    elif payload == "eval":
        class _Eval:
            def __reduce__(self):
                return eval, ("__import__('os').system('touch PWNED')",)
        data["posedirs"] = _Eval()
    else:  # hidden inside a chumpy array's state
        sys.modules["chumpy"] = _fake_module("chumpy")
        sys.modules["chumpy.ch"] = _fake_module("chumpy.ch", Ch=_Ch)
        data["shapedirs"] = _Ch(_Payload())
    try:
        (tmp_path / "evil.pkl").write_bytes(pickle.dumps(data, protocol=2))
    finally:
        sys.modules.pop("chumpy", None), sys.modules.pop("chumpy.ch", None)
    with pytest.raises(ValueError) as info:
        BodyModel.from_file(tmp_path / "evil.pkl")
    message = str(info.value)
    assert "\n" not in message and "evil.pkl" in message and "refuses to load" in message
    assert "system" in message or "eval" in message
    assert not (tmp_path / "PWNED").exists()


def test_truncated_pickle_is_one_line(tmp_path):
    arrays = random_model_arrays()
    write_smpl_like_pickle(tmp_path / "m.pkl", arrays)
    (tmp_path / "cut.pkl").write_bytes((tmp_path / "m.pkl").read_bytes()[:500])
    with pytest.raises(ValueError, match="cut.pkl: pickle data was truncated"):
        read_model(tmp_path / "cut.pkl")
