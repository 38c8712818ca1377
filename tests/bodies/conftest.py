"""A small random SMPL-format model (valid shapes, smooth-ish values) for the loader and model tests."""

from __future__ import annotations

import numpy as np
import pytest

from bodies.skeleton import NUM_JOINTS, NUM_POSE_FEATURES, kintree_table


def random_model_arrays(seed: int = 0, num_vertices: int = 120, num_betas: int = 10) -> dict[str, np.ndarray]:
    """SMPL's keys and shapes with random values: rows of the regressor and the weights sum to 1."""
    rng = np.random.default_rng(seed)
    N = num_vertices
    weights = rng.random((N, NUM_JOINTS)) ** 4
    J_regressor = rng.random((NUM_JOINTS, N)) ** 4
    return {
        "v_template": rng.normal(0.0, 0.5, (N, 3)),
        "shapedirs": rng.normal(0.0, 0.02, (N, 3, num_betas)),
        "posedirs": rng.normal(0.0, 0.01, (N, 3, NUM_POSE_FEATURES)),
        "J_regressor": J_regressor / J_regressor.sum(1, keepdims=True),
        "weights": weights / weights.sum(1, keepdims=True),
        "kintree_table": kintree_table(),
        "f": rng.integers(0, N, (2 * N, 3)),
        "extra_vertex_ids": rng.integers(0, N, 22),
    }


@pytest.fixture
def model_npz(tmp_path):
    """Path of a random SMPL-format ``.npz`` (float32 arrays, as model files store them)."""
    path = tmp_path / "random_body.npz"
    arrays = random_model_arrays()
    np.savez(path, **{k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in arrays.items()})
    return path
