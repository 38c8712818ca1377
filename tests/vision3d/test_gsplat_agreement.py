"""Our 3D Gaussian splatting maths against gsplat's pure-PyTorch reference functions, on random Gaussians.

gsplat (nerfstudio-project/gsplat) ships readable torch versions of its CUDA kernels in ``gsplat.cuda._torch_impl``;
the projection, covariance and spherical-harmonics ones run on a CPU (its rasteriser needs CUDA, so the
rasterisers are not compared here). Its conventions differ from ours and are converted, never fudged:

* cameras: gsplat takes world-to-camera ``viewmats`` in the OpenCV convention (``+z`` forward, ``+y`` down);
  ours are camera-to-world poses in the OpenGL convention, so ``viewmat = diag(1, -1, -1, 1) @ inv(c2w)``.
  Both put pixel ``u = cx + fx x / depth`` and clamp the Jacobian to 1.3 times the field of view.
* scales: gsplat takes the standard deviations, we store their logs.
* colour: gsplat's ``_spherical_harmonics`` returns the bare SH sum; its renderer adds 0.5 and clamps at 0,
  which :func:`vision3d.gaussians.eval_sh` does itself.
* the screen-space extent: gsplat's radii are ``ceil(3.33 sqrt(diag(cov2d)))`` per axis, ours
  ``3 sqrt(lambda_max)``; they are different bounds by design and are not compared.

The PLY file gsplat's exporter writes (it has no PLY reader) is read with :func:`vision3d.splat_ply.read_splat_ply`.
"""

import math

import numpy as np
import pytest
import torch

from vision3d.camera import Intrinsics, look_at
from vision3d.gaussians import conics, covariance_3d, eval_sh, project_gaussians, quaternion_to_rotation, sh_basis
from vision3d.splat_ply import read_splat_ply

gsplat_torch = pytest.importorskip("gsplat.cuda._torch_impl")
gsplat_exporter = pytest.importorskip("gsplat.exporter")

D = torch.float64
#: OpenGL camera axes (x right, y up, z back) to OpenCV ones (x right, y down, z forward).
GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=D))


def _gaussians(n: int, seed: int, spread: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Means, log-scales and (unnormalised) quaternions of ``n`` random Gaussians, float64."""
    g = torch.Generator().manual_seed(seed)
    means = spread * (2 * torch.rand(n, 3, generator=g, dtype=D) - 1)
    log_scales = math.log(0.05) + 0.7 * torch.randn(n, 3, generator=g, dtype=D)
    quaternions = torch.randn(n, 4, generator=g, dtype=D) * (0.5 + torch.rand(n, 1, generator=g, dtype=D))
    return means, log_scales, quaternions


def _camera() -> tuple[Intrinsics, torch.Tensor]:
    # Off-centre principal point, unequal focal lengths and a non-square image, so no symmetry hides a swap.
    intrinsics = Intrinsics(width=64, height=48, fx=70.0, fy=62.0, cx=30.7, cy=25.1)
    return intrinsics, torch.as_tensor(look_at(np.array([2.2, -1.6, 1.3]), target=(0.1, 0.2, -0.1)), dtype=D)


def _K(intrinsics: Intrinsics) -> torch.Tensor:  # [3, 3]
    return torch.tensor([[intrinsics.fx, 0.0, intrinsics.cx], [0.0, intrinsics.fy, intrinsics.cy], [0.0, 0.0, 1.0]],
                        dtype=D)


def test_rotations_and_covariances_agree_with_gsplat():
    _, log_scales, quaternions = _gaussians(500, seed=0)
    torch.testing.assert_close(quaternion_to_rotation(quaternions), gsplat_torch._quat_to_rotmat(quaternions),
                               rtol=1e-12, atol=1e-13)
    covariances, precisions = gsplat_torch._quat_scale_to_covar_preci(quaternions, log_scales.exp())
    ours = covariance_3d(log_scales, quaternions)
    torch.testing.assert_close(ours, covariances, rtol=1e-12, atol=1e-15)
    # and its precision matrix is our covariance's inverse
    torch.testing.assert_close(torch.linalg.inv(ours), precisions, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics_agree_with_gsplat(degree):
    g = torch.Generator().manual_seed(degree)
    n, k = 400, (degree + 1) ** 2
    dirs = torch.randn(n, 3, generator=g, dtype=D) * (0.1 + 3 * torch.rand(n, 1, generator=g, dtype=D))
    unit = dirs / dirs.norm(dim=-1, keepdim=True)
    # gsplat's basis takes unit directions; ours normalises (so the unnormalised dirs must give the same)
    torch.testing.assert_close(sh_basis(degree, dirs), gsplat_torch._eval_sh_bases_fast(k, unit),
                               rtol=1e-12, atol=1e-13)
    coefficients = torch.randn(n, 16, 3, generator=g, dtype=D)  # more bands than used: both take the first k
    theirs = (gsplat_torch._spherical_harmonics(degree, dirs, coefficients) + 0.5).clamp_min(0.0)
    torch.testing.assert_close(eval_sh(degree, coefficients, dirs), theirs, rtol=1e-12, atol=1e-13)
    assert (theirs == 0).any(), "some colours must be clamped at 0, or the clamp is untested"


def test_ewa_projection_agrees_with_gsplat():
    intrinsics, c2w = _camera()
    # A wide spread, so some means fall far outside the image (the Jacobian clamp) and some behind the camera.
    means, log_scales, quaternions = _gaussians(2000, seed=1, spread=3.0)
    covariances = covariance_3d(log_scales, quaternions)
    ours = project_gaussians(means, covariances, c2w, intrinsics, near=0.01, dilation=0.3)

    viewmat = (GL_TO_CV @ torch.linalg.inv(c2w))[None]  # [1, 4, 4] world-to-camera, OpenCV
    K = _K(intrinsics)[None]  # [1, 3, 3]
    w, h = intrinsics.width, intrinsics.height
    _, means2d, depths, packed_conics, _ = gsplat_torch._fully_fused_projection(
        means, covariances, viewmat, K, w, h, eps2d=0.3, near_plane=0.01)
    means_c, covariances_c = gsplat_torch._world_to_cam(means, covariances, viewmat)
    _, cov2d = gsplat_torch._persp_proj(means_c, covariances_c, K, w, h)
    cov2d = cov2d[0] + 0.3 * torch.eye(2, dtype=D)  # gsplat adds its eps2d after the projection

    torch.testing.assert_close(ours.depths, depths[0], rtol=1e-12, atol=1e-12)
    front = ours.depths > 0.01
    assert 0 < front.sum() < len(means), "the spread must put Gaussians on both sides of the near plane"
    torch.testing.assert_close(ours.means2d[front], means2d[0][front], rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(ours.cov2d[front], cov2d[front], rtol=1e-10, atol=1e-10)
    a, b, c = packed_conics[0][front].unbind(-1)
    torch.testing.assert_close(conics(ours.cov2d[front]), torch.stack([a, b, b, c], -1).reshape(-1, 2, 2),
                               rtol=1e-9, atol=1e-9)
    # The field-of-view clamp of the Jacobian is engaged for some Gaussians, so it is compared too.
    u, v = ours.means2d[front].unbind(-1)
    outside = (u < -0.15 * w) | (u > 1.15 * w) | (v < -0.15 * h) | (v > 1.15 * h)
    assert outside.sum() > 10
    unclamped = project_gaussians(means, covariances, c2w, intrinsics, fov_clamp=None)
    assert not torch.allclose(unclamped.cov2d[front][outside], ours.cov2d[front][outside])


def test_gsplat_exported_ply_reads_back(tmp_path):
    n, degree = 50, 3
    means, log_scales, quaternions = (t.float() for t in _gaussians(n, seed=2))
    g = torch.Generator().manual_seed(3)
    opacity_logits = torch.randn(n, generator=g)
    sh = torch.randn(n, (degree + 1) ** 2, 3, generator=g)
    path = tmp_path / "gsplat.ply"
    # gsplat's exporter takes the parameters before activation, as the optimiser holds them (so do we).
    gsplat_exporter.export_splats(means, log_scales, quaternions, opacity_logits, sh[:, :1], sh[:, 1:], format="ply",
                                  save_to=str(path))
    splats = read_splat_ply(path)
    for name, expected in [("means", means), ("log_scales", log_scales), ("quaternions", quaternions),
                           ("opacity_logits", opacity_logits), ("sh", sh)]:
        np.testing.assert_array_equal(getattr(splats, name), expected.numpy(), err_msg=name)
    assert splats.sh_degree == degree
