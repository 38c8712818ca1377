"""The procedural SMPL-format body: a mannequin template, and a shape space, joint regressor and pose blend
shapes LEARNED from generated data as notes §13.2 describes (SMPL, Loper et al. 2015), so that the package can
ship a redistributable body model (assets/bodies/procedural_body.npz, MIT like the code).

* Shape: ``M`` random phenotypes register the one template (:func:`bodies.body_shapes.register`); PCA of the
  registered meshes gives ``v_template`` (their mean) and ``shapedirs`` (components times their standard
  deviation, so ``betas ~ N(0, I)``), ``B_S(beta) = sum_n beta_n S_n``.
* Joints: ``J_regressor`` is a sparse non-negative, row-stochastic matrix fitted (NNLS) so that
  ``J_regressor @ V`` reproduces every sample's joints.
* Pose: the reference deformer is dual-quaternion skinning (:mod:`bodies.skinning`), which LBS cannot
  reproduce; ``posedirs`` are the ridge regression of its rest-space residuals on ``R(theta) - R(theta*)``, so
  ``LBS(T + B_P(theta))`` imitates DQS: ``B_P(theta) = sum_n (R_n(theta) - R_n(theta*)) P_n``.

Run ``python -m bodies.procedural --out assets/bodies/procedural_body.npz`` to rebuild the shipped file.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.optimize
import torch

from bodies import body_shapes as bs
from bodies.lbs import batch_rigid_transform, batch_rodrigues, pose_features, skin
from bodies.prior import sample_poses as prior_poses
from bodies.skeleton import NUM_JOINTS, NUM_POSE_FEATURES, PARENTS, kintree_table
from bodies.skinning import dqs
from envs.io.files import atomic_path

NUM_BETAS = 10


@dataclass(frozen=True)
class BodyBuildConfig:
    """How the procedural body is built (the defaults build the shipped file)."""

    resolution: int = 320
    """Marching-cubes grid samples per axis (the grid spans the body's largest extent)."""
    target_vertices: int = 5000
    """Vertex count after quadric decimation."""
    num_samples: int = 300
    """Random phenotypes registered for the shape PCA and the joint regressor."""
    train_poses: int = 4000
    """Poses from the prior that the pose blend shapes are fitted on."""
    heldout_poses: int = 300
    """Further poses on which the blend shapes are evaluated."""
    ridge: float = 1e-3
    """Ridge penalty of the blend-shape regression, relative to the mean squared pose feature."""
    regressor_candidates: int = 100
    """Vertices around each joint that its regressor row may use."""
    regressor_spread: float = 1e-6
    """Ridge penalty that spreads each regressor row over a few dozen vertices instead of a handful."""
    seed: int = 0
    """Seed of every random draw (phenotypes, poses)."""


@dataclass
class BodyBuild:
    """The model's arrays (SMPL's keys) and the numbers that describe how well it was learned."""

    v_template: np.ndarray  # [N, 3]
    shapedirs: np.ndarray  # [N, 3, 10]
    posedirs: np.ndarray  # [N, 3, 207]
    J_regressor: np.ndarray  # [24, N]
    weights: np.ndarray  # [N, 24]
    f: np.ndarray  # [F, 3]
    extra_vertex_ids: np.ndarray  # [22]
    vertex_colors: np.ndarray  # [N, 3] uint8
    report: dict[str, float] = field(default_factory=dict)
    base_vertices: np.ndarray | None = None  # [N, 3] the template before PCA (the mean phenotype's mesh)

    def arrays(self) -> dict[str, np.ndarray]:
        """The contents of the ``.npz`` file: float32 arrays, int64 faces and ids, uint8 colours."""
        out = {k: np.asarray(getattr(self, k), np.float32)
               for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights")}
        out.update(kintree_table=kintree_table(), f=np.asarray(self.f, np.int64),
                   extra_vertex_ids=np.asarray(self.extra_vertex_ids, np.int64),
                   vertex_colors=np.asarray(self.vertex_colors, np.uint8))
        return out


# ------------------------------------------------------------------------------------------------------ shape
def learn_shape_space(samples: np.ndarray, num_betas: int = NUM_BETAS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of registered meshes ``samples [M, N, 3]``: the mean ``[N, 3]``, ``shapedirs [N, 3, S]`` (unit
    components scaled by their standard deviation) and the fraction of variance of each component ``[S]``.
    The notes represent each shape "by its joint locations"; SMPL's PCA (implemented here) is over the registered
    T-pose vertices, and the joints follow from them through the joint regressor."""
    M, N, _ = samples.shape
    if M < 2:
        raise ValueError(f"samples: expected at least 2 meshes, got {M}")
    flat = samples.reshape(M, -1)
    mean = flat.mean(0)
    _, sv, vt = np.linalg.svd(flat - mean, full_matrices=False)
    variance = sv**2 / (M - 1)
    k = min(num_betas, len(sv))
    shapedirs = np.zeros((N * 3, num_betas))
    shapedirs[:, :k] = (vt[:k] * np.sqrt(variance[:k])[:, None]).T
    explained = np.zeros(num_betas)
    explained[:k] = variance[:k] / variance.sum()
    return mean.reshape(N, 3), shapedirs.reshape(N, 3, num_betas), explained


def best_betas(vertices: np.ndarray, v_template: np.ndarray, shapedirs: np.ndarray) -> np.ndarray:  # [S]
    """Least-squares ``beta`` with ``v_template + B_S(beta)`` closest to ``vertices``."""
    return np.linalg.lstsq(shapedirs.reshape(-1, shapedirs.shape[-1]), (vertices - v_template).ravel(), rcond=None)[0]


# ------------------------------------------------------------------------------------------------------ joints
def learn_joint_regressor(
    samples: np.ndarray,  # [M, N, 3]
    sample_joints: np.ndarray,  # [M, 24, 3]
    candidates: int = 100,
    spread: float = 0.0,
    anchor: tuple[np.ndarray, np.ndarray] | None = None,  # (vertices [N, 3], joints [24, 3]) fitted 10x harder
) -> np.ndarray:  # [24, N]
    """Each joint as a convex combination of vertices around it: non-negative least squares (with a heavily
    weighted row for the sum-to-one constraint) over the ``candidates`` nearest vertices of the first sample plus
    the nearest few in each of the six axis directions, so the joint lies inside their hull. ``spread`` adds a
    small ridge penalty ``spread * sum c^2`` (per data row) that shares each joint among more vertices."""
    N = samples.shape[1]
    ref = samples.mean(0)
    ref_joints = sample_joints.mean(0)
    V, Jt = samples, sample_joints
    if anchor is not None:
        V = np.concatenate([V, np.repeat(anchor[0][None], 10, 0)])
        Jt = np.concatenate([Jt, np.repeat(anchor[1][None], 10, 0)])
    out = np.zeros((len(ref_joints), N))
    for j, c in enumerate(ref_joints):
        offset = ref - c
        dist = np.linalg.norm(offset, axis=1)
        chosen = set(np.argsort(dist)[:candidates].tolist())
        for axis in range(3):
            for sign in (1.0, -1.0):
                cone = sign * offset[:, axis] > 0.7 * dist
                chosen.update(np.argsort(np.where(cone, dist, np.inf))[:6].tolist())
        idx = np.array(sorted(chosen))
        A = V[:, idx].transpose(0, 2, 1).reshape(-1, len(idx))  # [M' * 3, K]
        b = Jt[:, j].reshape(-1)
        A = np.vstack([A, 100.0 * np.ones(len(idx)), np.sqrt(spread * len(b)) * np.eye(len(idx))])
        b = np.concatenate([b, [100.0], np.zeros(len(idx))])
        coef, _ = scipy.optimize.nnls(A, b, maxiter=50 * len(idx))
        out[j, idx] = coef / coef.sum()
    return out


# ------------------------------------------------------------------------------------------------------ pose
def sample_poses(rng: np.random.Generator, count: int) -> np.ndarray:  # [count, 72] axis-angle
    """``count`` poses of the pose prior (:func:`bodies.prior.sample_poses`, joint limits), the root not rotated:
    a global rotation moves every vertex rigidly, the same under LBS and DQS."""
    return np.concatenate([np.zeros((count, 3)), prior_poses(count, rng)], axis=1)


def _rest_residuals(target: torch.Tensor, v: torch.Tensor, w: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Rest-space offsets ``b_i`` with ``LBS(v + b) = target``: each vertex's blended transform ``sum_k w_ki G_k``
    is affine, so ``b_i = M_i^{-1} (target_i - m_i) - v_i`` (``M_i`` its 3x3 part, ``m_i`` its translation)."""
    B, J = A.shape[:2]
    T = torch.einsum("nj,bjk->bnk", w, A[:, :, :3, :].reshape(B, J, 12)).unflatten(-1, (3, 4))  # [B, N, 3, 4]
    return torch.linalg.solve(T[..., :3], target - T[..., 3]) - v


def learn_pose_blend_shapes(
    vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray, poses: np.ndarray, ridge: float, batch: int = 100,
    local: bool = True,
) -> np.ndarray:  # [N, 3, 207]
    """``posedirs`` by ridge regression of DQS's rest-space residuals on the pose features, accumulated over
    batches of poses: ``(F^T F + lambda I) P = F^T B``; ``local``: each vertex on its :func:`pose_support`'s
    features only (zero elsewhere), as pose-dependent deformations are local."""
    v, w, j = (torch.as_tensor(a, dtype=torch.float64) for a in (vertices, weights, joints))
    N = len(v)
    FtF = torch.zeros(NUM_POSE_FEATURES, NUM_POSE_FEATURES, dtype=torch.float64)
    FtB = torch.zeros(NUM_POSE_FEATURES, N * 3, dtype=torch.float64)
    for start in range(0, len(poses), batch):
        rot = batch_rodrigues(torch.as_tensor(poses[start:start + batch]).reshape(-1, NUM_JOINTS, 3))
        target = dqs(v, w, rot, j, PARENTS)
        _, A = batch_rigid_transform(rot, j.expand(len(rot), -1, -1), PARENTS)
        residual = _rest_residuals(target, v, w, A).reshape(len(rot), -1)
        feats = pose_features(rot)
        FtF += feats.T @ feats
        FtB += feats.T @ residual
    lam = ridge * torch.trace(FtF) / NUM_POSE_FEATURES
    if not local:
        P = torch.linalg.solve(FtF + lam * torch.eye(NUM_POSE_FEATURES, dtype=torch.float64), FtB)  # [207, N * 3]
        return P.T.reshape(N, 3, NUM_POSE_FEATURES).numpy()
    # Local blend shapes: vertex i sees only the features of the joints in its support, so each group of vertices
    # with one support solves the ridge normal equations restricted to those features (FtF and FtB suffice).
    support = pose_support(weights)  # [N, 23]
    P = torch.zeros(NUM_POSE_FEATURES, N * 3, dtype=torch.float64)
    groups, inverse = np.unique(support, axis=0, return_inverse=True)
    for g, joints_on in enumerate(groups):
        feats = torch.as_tensor(np.flatnonzero(np.repeat(joints_on, 9)))
        if len(feats) == 0:
            continue
        rows = np.flatnonzero(inverse.reshape(-1) == g)
        cols = torch.as_tensor((3 * rows[:, None] + np.arange(3)).reshape(-1))
        A = FtF[feats][:, feats] + lam * torch.eye(len(feats), dtype=torch.float64)
        P[feats[:, None], cols[None]] = torch.linalg.solve(A, FtB[feats][:, cols])
    return P.T.reshape(N, 3, NUM_POSE_FEATURES).numpy()


def pose_support(weights: np.ndarray) -> np.ndarray:  # [N, 24] -> [N, 23] bool
    """The joints whose rotations may move vertex ``i``'s pose blend shape: those with a skinning weight on it and
    their parents (the root has no pose feature)."""
    on = weights > 0
    with_parents = on.copy()
    for k in range(1, NUM_JOINTS):
        with_parents[:, PARENTS[k]] |= on[:, k]
    return with_parents[:, 1:]


def blend_shape_errors(
    vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray, posedirs: np.ndarray, poses: np.ndarray
) -> tuple[float, float]:
    """Mean per-vertex distance to DQS of plain LBS and of LBS with the blend shapes ``B_P(theta)``."""
    v, w, j = (torch.as_tensor(a, dtype=torch.float64) for a in (vertices, weights, joints))
    P = torch.as_tensor(posedirs, dtype=torch.float64).reshape(-1, NUM_POSE_FEATURES).T  # [207, N * 3]
    rot = batch_rodrigues(torch.as_tensor(poses).reshape(-1, NUM_JOINTS, 3))
    target = dqs(v, w, rot, j, PARENTS)
    _, A = batch_rigid_transform(rot, j.expand(len(rot), -1, -1), PARENTS)
    plain = skin(v.expand(len(rot), -1, -1), w, A)
    learned = skin(v + (pose_features(rot) @ P).reshape(len(rot), -1, 3), w, A)
    return float((plain - target).norm(dim=-1).mean()), float((learned - target).norm(dim=-1).mean())


# ------------------------------------------------------------------------------------------------------ build
def build_body(config: BodyBuildConfig = BodyBuildConfig()) -> BodyBuild:
    """The whole model: template mesh, weights, phenotype samples -> PCA and ``J_regressor``, poses -> ``posedirs``,
    keypoints and colours. Deterministic given ``config``."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    base = bs.PHENOTYPE_MEAN
    mesh = bs.template_mesh(base, config.resolution, config.target_vertices)
    verts, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    J0, E0 = bs.skeleton_joints(base)
    weights = bs.skinning_weights(verts, faces, J0, E0)
    phenotypes = bs.sample_phenotypes(rng, config.num_samples)
    registered = [bs.register(verts, weights, ph, base) for ph in phenotypes]
    samples = np.stack([r[0] for r in registered])
    sample_joints = np.stack([r[1] for r in registered])
    v_template, shapedirs, explained = learn_shape_space(samples)
    rest_joints = sample_joints.mean(0)
    J_regressor = learn_joint_regressor(
        samples, sample_joints, config.regressor_candidates, config.regressor_spread, (v_template, rest_joints)
    )
    sample_err = np.linalg.norm(np.einsum("jn,mnc->mjc", J_regressor, samples) - sample_joints, axis=-1)
    rest_err = np.linalg.norm(J_regressor @ v_template - rest_joints, axis=-1)
    joints = J_regressor @ v_template
    train = sample_poses(rng, config.train_poses)
    heldout = sample_poses(rng, config.heldout_poses)
    posedirs = learn_pose_blend_shapes(v_template, weights, joints, train, config.ridge)
    plain, learned = blend_shape_errors(v_template, weights, joints, posedirs, heldout)
    dense = learn_pose_blend_shapes(v_template, weights, joints, train, config.ridge, local=False)
    _, learned_dense = blend_shape_errors(v_template, weights, joints, dense, heldout)
    extra = bs.extra_keypoint_vertices(v_template, weights, base)
    eyes = extra[[1, 2]]
    colors = bs.vertex_colors(v_template, weights, base, eyes)
    report = {
        "vertices": len(v_template), "faces": len(faces),
        "height_m": float(v_template[:, 1].max() - v_template[:, 1].min()),
        "pca_variance_explained": float(explained.sum()),
        "pca_variance_per_component": [round(float(e), 5) for e in explained],
        "joint_regressor_sample_error_mean_mm": 1000 * float(sample_err.mean()),
        "joint_regressor_sample_error_max_mm": 1000 * float(sample_err.max()),
        "joint_regressor_rest_error_mean_mm": 1000 * float(rest_err.mean()),
        "joint_regressor_nonzeros_per_joint": float((J_regressor > 0).sum(1).mean()),
        "heldout_error_lbs_mm": 1000 * plain, "heldout_error_lbs_blend_shapes_mm": 1000 * learned,
        "heldout_error_reduction": plain / learned if learned > 0 else float("inf"),
        "heldout_error_lbs_dense_blend_shapes_mm": 1000 * learned_dense,
        "posedirs_nonzero_fraction": float((posedirs != 0).mean()),
        "build_seconds": time.perf_counter() - start,
    }
    return BodyBuild(v_template, shapedirs, posedirs, J_regressor, weights, faces, extra, colors, report, verts)


def write_body(build: BodyBuild, path: str | Path) -> Path:
    """Write the model as a compressed ``.npz`` (no pickled objects) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **build.arrays())
    return path


def main(argv: list[str] | None = None) -> dict:
    """``python -m bodies.procedural --out PATH [--resolution R ...]``: build, write, print the report as JSON."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("assets/bodies/procedural_body.npz"))
    for name, value in asdict(BodyBuildConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    build = build_body(BodyBuildConfig(**args))
    write_body(build, out)
    report = dict(build.report, file=str(out), file_mb=out.stat().st_size / 2**20)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
