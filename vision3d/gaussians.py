"""The maths of 3D Gaussian splatting (notes §12.5; Kerbl et al., 2023, "3D Gaussian Splatting for
Real-Time Radiance Field Rendering"), as small pure torch functions and a slow reference rasteriser.

A scene is a set of anisotropic 3D Gaussians, each with a mean ``mu``, a covariance
``Sigma = R S S^T R^T`` (rotation from a unit quaternion, scales stored as logs), an opacity
``o = sigmoid(logit)`` and a view-dependent colour from spherical-harmonic coefficients. Rendering
projects every Gaussian to a 2D Gaussian on the image (EWA splatting, Zwicker et al., 2001) and
alpha-composites them front to back at every pixel, with the notes' weight

    alpha_i(x) = o_i exp(-1/2 (x - mu'_i)^T Sigma'_i^-1 (x - mu'_i)).

Conventions are those of :mod:`vision3d.camera`: ``c2w`` poses in the OpenGL convention (the camera
looks down ``-z``, ``+y`` up), pixel ``(i, j)`` is sampled at its centre ``(i + 0.5, j + 0.5)``, and a
camera-space point ``(x, y, z)`` with depth ``d = -z`` lands at ``u = cx + fx x / d``,
``v = cy - fy y / d`` (exactly :func:`vision3d.camera.project`). Quaternions are ``(w, x, y, z)``.

The pipeline is split so a fast (tiled) rasteriser can replace the last step and be compared with it:
:func:`project_gaussians` -> :class:`Projection`, then :func:`rasterize_reference` -> :class:`Rendering`.
Everything is differentiable with torch autograd and runs on any device in float32 or float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vision3d.camera import Intrinsics

#: Alphas are clamped to this maximum so that transmittance never reaches zero (Kerbl et al., App. C).
ALPHA_MAX = 0.99
#: A Gaussian whose alpha at a pixel is below this is skipped there (Kerbl et al., App. C).
ALPHA_MIN = 1.0 / 255.0
#: Compositing stops before the Gaussian that would bring the transmittance below this.
T_MIN = 1e-4

# Real spherical harmonics, bands 0-3: the normalisation constants of each monomial (see :func:`sh_basis`).
SH_C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
SH_C1 = 0.4886025119029199  # sqrt(3 / (4 pi))
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)  # fmt: skip
SH_MAX_DEGREE = 3


def _check(name: str, tensor: Tensor, shape: tuple[int | None, ...], text: str) -> None:
    """Raise ``ValueError`` naming ``name``, the expected shape ``text`` and the actual shape."""
    ok = tensor.ndim == len(shape) and all(s is None or s == t for s, t in zip(shape, tensor.shape))
    if not ok:
        raise ValueError(f"{name} must have shape {text}, got {list(tensor.shape)}")


# --- Geometry: rotations and 3D covariances ---------------------------------------------------------


def quaternion_to_rotation(q: Tensor) -> Tensor:  # [N, 4] (w, x, y, z) -> [N, 3, 3]
    """Rotation matrices of quaternions ``(w, x, y, z)``, normalised here (``q`` and ``-q`` agree)."""
    _check("q", q, (None, 4), "[N, 4]")
    w, x, y, z = F.normalize(q, dim=-1).unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(q.shape[0], 3, 3)


def covariance_3d(log_scales: Tensor, quaternions: Tensor) -> Tensor:  # [N, 3], [N, 4] -> [N, 3, 3]
    """``Sigma = R S S^T R^T`` with ``S = diag(exp(log_scales))`` (Kerbl et al., eq. 6): always SPD."""
    _check("log_scales", log_scales, (None, 3), "[N, 3]")
    _check("quaternions", quaternions, (log_scales.shape[0], 4), f"[{log_scales.shape[0]}, 4] (N from log_scales)")
    M = quaternion_to_rotation(quaternions) * log_scales.exp()[:, None, :]  # R S: column k scaled by s_k
    return M @ M.transpose(-1, -2)


# --- Colour: real spherical harmonics ---------------------------------------------------------------


def sh_basis(degree: int, dirs: Tensor) -> Tensor:  # [N, 3] -> [N, (degree + 1)^2]
    """Real spherical harmonics ``Y_{l,m}(d)`` of bands ``l <= degree <= 3`` at directions ``dirs``.

    Column ``l^2 + l + m`` holds ``Y_{l,m}``, ``m = -l..l``. The basis is orthonormal on the unit sphere
    and is built from the complex ``Y_l^m`` *with* the Condon-Shortley phase ``(-1)^m``:
    ``Y_{l,m} = sqrt(2) Re Y_l^m`` (m > 0), ``Y_l^0`` (m = 0), ``sqrt(2) Im Y_l^|m|`` (m < 0). So the odd-m
    functions carry a minus sign, e.g. ``Y_{1,-1} = -C1 y, Y_{1,0} = C1 z, Y_{1,1} = -C1 x``: the sign
    convention of the 3DGS reference code, so coefficients exchange with its PLY files and viewers.
    ``dirs`` are normalised here.
    """
    if not 0 <= degree <= SH_MAX_DEGREE:
        raise ValueError(f"degree must be in 0..{SH_MAX_DEGREE}, got {degree}")
    _check("dirs", dirs, (None, 3), "[N, 3]")
    x, y, z = F.normalize(dirs, dim=-1).unbind(-1)
    basis = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        basis += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        basis += [
            SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z, SH_C2[4] * (xx - yy),
        ]  # fmt: skip
    if degree >= 3:
        basis += [
            SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy),
        ]  # fmt: skip
    return torch.stack(basis, dim=-1)


def eval_sh(degree: int, sh: Tensor, dirs: Tensor) -> Tensor:  # [N, K, 3], [N, 3] -> [N, 3]
    """RGB colour ``max(0, 0.5 + sum_k sh[:, k] Y_k(dirs))`` of SH coefficients seen along ``dirs``.

    ``dirs`` point from the camera centre to the Gaussians' means. Only the first ``(degree + 1)^2`` of the
    ``K`` coefficients are used. The ``+0.5`` offset is the 3DGS convention: all-zero coefficients give
    mid-grey, and at degree 0 the colour is ``0.5 + SH_C0 * f_dc`` (see :func:`rgb_to_sh0`).
    """
    k = (degree + 1) ** 2
    if sh.ndim != 3 or sh.shape[1] < k or sh.shape[2] != 3:
        raise ValueError(f"sh must have shape [N, K >= {k}, 3] for degree {degree}, got {list(sh.shape)}")
    _check("dirs", dirs, (sh.shape[0], 3), f"[{sh.shape[0]}, 3] (N from sh)")
    result = torch.einsum("nk,nkc->nc", sh_basis(degree, dirs), sh[:, :k])
    return (result + 0.5).clamp_min(0.0)


def rgb_to_sh0(rgb: Tensor) -> Tensor:  # [..., 3] -> [..., 3]
    """The degree-0 coefficient ``f_dc`` whose colour is ``rgb``: ``(rgb - 0.5) / SH_C0``."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:  # [..., 3] -> [..., 3]
    """The colour of degree-0 coefficients ``f_dc`` (before clamping): ``0.5 + SH_C0 * f_dc``."""
    return sh0 * SH_C0 + 0.5


# --- Projection: EWA splatting ------------------------------------------------------------------------


class Projection(NamedTuple):
    """Gaussians projected into one view (:func:`project_gaussians`)."""

    means2d: Tensor  # [N, 2] pixel coordinates of the projected means (camera.py's convention)
    cov2d: Tensor  # [N, 2, 2] image-space covariances, dilation included
    depths: Tensor  # [N] depth along the viewing axis (positive in front of the camera)
    radii: Tensor  # [N] 3-sigma extent in pixels, 3 sqrt(largest eigenvalue of cov2d); not differentiable
    visible: Tensor  # [N] bool: in front of the near plane and the 3-sigma square overlaps the image


def perspective_jacobian(
    cam: Tensor,  # [N, 3] camera-space points (OpenGL: in front when z < 0)
    intrinsics: Intrinsics,
    fov_clamp: float | None = 1.3,
) -> Tensor:  # [N, 2, 3]
    """Jacobian ``J = d(u, v) / d(x, y, z)`` of the pixel map at camera-space points (EWA's local affine map).

    With depth ``d = -z``, ``u = cx + fx x / d`` and ``v = cy - fy y / d`` (image v points down while
    camera y points up), so

        J = [[fx / d,  0,       fx x / d^2],
             [0,       -fy / d, -fy y / d^2]].

    As in the 3DGS reference, ``x / d`` and ``y / d`` are first clamped to ``fov_clamp`` times the field of
    view (measured from the image centre, so an off-centre principal point is handled): Gaussians far
    outside the image would otherwise get huge, unstable footprints. Inside that range ``J`` is exact.
    ``None`` turns the clamp off. Points must be in front of the camera (``z < 0``).
    """
    x, y, z = cam.unbind(-1)
    d = -z
    tx, ty = x / d, y / d
    if fov_clamp is not None:
        mx, my = 0.5 * (fov_clamp - 1.0) * intrinsics.width, 0.5 * (fov_clamp - 1.0) * intrinsics.height
        # u in [-mx, W + mx] and v in [-my, H + my], written as ranges of x / d and y / d.
        tx = tx.clamp((-intrinsics.cx - mx) / intrinsics.fx, (intrinsics.width - intrinsics.cx + mx) / intrinsics.fx)
        ty = ty.clamp((intrinsics.cy - intrinsics.height - my) / intrinsics.fy, (intrinsics.cy + my) / intrinsics.fy)
    zero = torch.zeros_like(d)
    fx, fy = intrinsics.fx, intrinsics.fy
    rows = (fx / d, zero, fx * tx / d, zero, -fy / d, -fy * ty / d)
    return torch.stack(rows, dim=-1).reshape(cam.shape[0], 2, 3)


def _as_pose(c2w: Tensor | np.ndarray, like: Tensor) -> Tensor:  # -> [4, 4]
    c2w = torch.as_tensor(c2w, dtype=like.dtype, device=like.device)
    if c2w.shape == (3, 4):
        c2w = torch.cat([c2w, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=like.dtype, device=like.device)])
    _check("c2w", c2w, (4, 4), "[4, 4] (or [3, 4]) camera-to-world")
    return c2w


def project_gaussians(
    means: Tensor,  # [N, 3] world
    covariances: Tensor,  # [N, 3, 3] world
    c2w: Tensor | np.ndarray,  # [4, 4] camera-to-world pose, OpenGL convention (vision3d.camera)
    intrinsics: Intrinsics,
    near: float = 0.01,
    dilation: float = 0.3,
    fov_clamp: float | None = 1.3,
) -> Projection:
    """Project 3D Gaussians into a view: ``mu' = pi(W mu + t)``, ``Sigma' = J W Sigma W^T J^T + dilation I``.

    EWA splatting (Zwicker et al., 2001) as used by Kerbl et al. (2023, eq. 5): ``W`` is the linear part of
    the world-to-camera transform, ``J`` the Jacobian of the pixel map at the camera-space mean
    (:func:`perspective_jacobian`). ``dilation`` (0.3 px^2 in the 3DGS code) is a low-pass filter that keeps
    every footprint at least about a pixel wide. Gaussians at depth ``<= near`` are invisible, and their
    other outputs are finite placeholders.
    """
    _check("means", means, (None, 3), "[N, 3]")
    n = means.shape[0]
    _check("covariances", covariances, (n, 3, 3), f"[{n}, 3, 3] (N from means)")
    w2c = torch.linalg.inv(_as_pose(c2w, means))
    W = w2c[:3, :3]
    cam = means @ W.T + w2c[:3, 3]  # [N, 3]
    depths = -cam[:, 2]
    in_front = depths > near
    # Placeholder depth 1 behind the near plane, so no inf/NaN enters the graph (torch.where's other branch).
    cam = torch.where(in_front[:, None], cam, torch.stack([cam[:, 0], cam[:, 1], -torch.ones_like(depths)], -1))
    d = -cam[:, 2]
    means2d = torch.stack([intrinsics.cx + intrinsics.fx * cam[:, 0] / d, intrinsics.cy - intrinsics.fy * cam[:, 1] / d], -1)
    J = perspective_jacobian(cam, intrinsics, fov_clamp)  # [N, 2, 3]
    JW = J @ W
    cov2d = JW @ covariances @ JW.transpose(-1, -2) + dilation * torch.eye(2, dtype=means.dtype, device=means.device)
    radii = 3.0 * largest_eigenvalue(cov2d.detach()).sqrt()
    inside = (
        (means2d[:, 0] + radii > 0) & (means2d[:, 0] - radii < intrinsics.width)
        & (means2d[:, 1] + radii > 0) & (means2d[:, 1] - radii < intrinsics.height)
    )  # fmt: skip
    visible = in_front & inside & torch.isfinite(cov2d).all(-1).all(-1)
    return Projection(means2d, cov2d, depths, radii, visible)


def largest_eigenvalue(cov2d: Tensor) -> Tensor:  # [N, 2, 2] symmetric -> [N]
    """``(a + c) / 2 + sqrt(((a - c) / 2)^2 + b^2)`` for ``[[a, b], [b, c]]``."""
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    return 0.5 * (a + c) + (0.25 * (a - c) ** 2 + b * b).sqrt()


def conics(cov2d: Tensor) -> Tensor:  # [N, 2, 2] -> [N, 2, 2]
    """Inverse 2D covariances ``Sigma'^-1`` (the "conics" of the 3DGS code), by the 2x2 cofactor formula."""
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det = a * c - b * b
    return torch.stack([c, -b, -b, a], dim=-1).reshape(-1, 2, 2) / det[:, None, None]


def support_radius(cov2d: Tensor, opacities: Tensor) -> Tensor:  # [N, 2, 2], [N] -> [N]
    """Pixels further than this from ``mu'`` get ``alpha < ALPHA_MIN`` and are skipped (0 if ``o < ALPHA_MIN``).

    ``o exp(-r^2 / (2 lambda_max)) = 1/255`` gives ``r = sqrt(2 lambda_max ln(255 o))``, at most 3.33 sigma. A
    tiled rasteriser that bounds each Gaussian by this radius sees every pixel the reference composites; the
    3DGS code bounds by the 3-sigma ``radii`` instead, which drops the faint rim (alpha < 0.011) beyond 3 sigma.
    """
    log_ratio = torch.log(opacities.detach() / ALPHA_MIN).clamp_min(0.0)
    return (2.0 * largest_eigenvalue(cov2d.detach()) * log_ratio).sqrt()


# --- Compositing -------------------------------------------------------------------------------------


def opacity_at(
    pixels: Tensor,  # [P, 2] pixel coordinates
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 2, 2] inverse 2D covariances
    opacities: Tensor,  # [N] in [0, 1]
) -> Tensor:  # [P, N]
    """``alpha_i(x) = o_i exp(-1/2 (x - mu'_i)^T Sigma'_i^-1 (x - mu'_i))``, the weight of notes §12.5.

    As in Kerbl et al. (2023, App. C), alpha is clamped to ``ALPHA_MAX = 0.99`` (so no Gaussian makes a
    pixel fully opaque and the transmittance stays invertible) and set to 0 where it is below
    ``ALPHA_MIN = 1/255`` (the Gaussian is skipped at that pixel).
    """
    delta = pixels[:, None, :] - means2d[None, :, :]  # [P, N, 2]
    power = -0.5 * torch.einsum("pni,nij,pnj->pn", delta, conics, delta)
    alpha = (opacities * power.exp()).clamp_max(ALPHA_MAX)
    return torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))


class Rendering(NamedTuple):
    """What a rasteriser returns."""

    image: Tensor  # [H, W, 3] colour, background blended with the remaining transmittance
    depth: Tensor  # [H, W] sum_i d_i alpha_i T_i (not normalised; divide by alpha for the expected depth)
    alpha: Tensor  # [H, W] accumulated opacity sum_i alpha_i T_i = 1 - T_final


def composite(
    alpha: Tensor,  # [P, N] per pixel, Gaussians sorted front to back
    colors: Tensor,  # [N, 3]
    depths: Tensor,  # [N]
    background: Tensor,  # [3]
) -> tuple[Tensor, Tensor, Tensor]:  # colour [P, 3], depth [P], accumulated alpha [P]
    """Front-to-back alpha compositing: ``C = sum_i c_i alpha_i T_i + T_final * background``.

    ``T_i = prod_{j<i} (1 - alpha_j)``. Like the 3DGS code, compositing stops *before* the Gaussian whose
    ``T_i (1 - alpha_i)`` would fall below ``T_MIN = 1e-4``; since ``T`` only decreases, the Gaussians kept
    are a prefix, and ``T_final = 1 - sum_i alpha_i T_i`` over that prefix.
    """
    T_next = torch.cumprod(1.0 - alpha, dim=1)  # T_{i+1}; every factor >= 1 - ALPHA_MAX > 0
    T = torch.cat([torch.ones_like(T_next[:, :1]), T_next[:, :-1]], dim=1)  # T_i
    weights = alpha * T * (T_next >= T_MIN)  # [P, N]
    accumulated = weights.sum(dim=1)
    color = weights @ colors + (1.0 - accumulated)[:, None] * background
    return color, weights @ depths, accumulated


def pixel_centres(width: int, height: int, like: Tensor) -> Tensor:  # -> [H * W, 2], row-major
    """Coordinates ``(i + 0.5, j + 0.5)`` of every pixel centre, as in :func:`vision3d.camera.pixel_rays`."""
    u = torch.arange(width, dtype=like.dtype, device=like.device) + 0.5
    v = torch.arange(height, dtype=like.dtype, device=like.device) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], dim=-1).reshape(-1, 2)


def rasterize_reference(
    projection: Projection,
    colors: Tensor,  # [N, 3]
    opacities: Tensor,  # [N] in [0, 1]
    width: int,
    height: int,
    background: Tensor,  # [3]
    chunk: int = 1 << 22,
) -> Rendering:
    """The slow, readable rasteriser: at every pixel centre, visible Gaussians sorted by depth are
    composited front to back with ``alpha_i(x)`` of :func:`opacity_at` (notes §12.5; Kerbl et al., 2023).

    Vectorised over Gaussians and blocks of pixels (``chunk`` bounds pixels x Gaussians per block). Whether
    a Gaussian reaches a pixel is decided by that pixel alone (``alpha >= 1/255``), not by tiles or radii.
    Sorting is stable, so Gaussians at equal depth keep their list order.
    """
    n = projection.means2d.shape[0]
    _check("colors", colors, (n, 3), f"[{n}, 3] (N from the projection)")
    _check("opacities", opacities, (n,), f"[{n}] (N from the projection)")
    _check("background", background, (3,), "[3]")
    ref = projection.means2d
    background = background.to(ref)
    order = torch.nonzero(projection.visible).squeeze(1)
    order = order[torch.argsort(projection.depths[order], stable=True)]
    means2d, inv_cov, depths = ref[order], conics(projection.cov2d[order]), projection.depths[order]
    colors, opacities = colors[order], opacities[order]
    pixels = pixel_centres(width, height, ref)
    step = max(1, chunk // max(1, len(order)))
    parts = [composite(opacity_at(pixels[s : s + step], means2d, inv_cov, opacities), colors, depths, background)
             for s in range(0, pixels.shape[0], step)]
    image, depth, alpha = (torch.cat(p, dim=0) for p in zip(*parts))
    return Rendering(image.reshape(height, width, 3), depth.reshape(height, width), alpha.reshape(height, width))


# --- The scene container ----------------------------------------------------------------------------


@dataclass
class Gaussians:
    """A scene of ``N`` 3D Gaussians: the parameters 3DGS optimises (and stores in its PLY files)."""

    means: Tensor  # [N, 3] world positions
    log_scales: Tensor  # [N, 3] log standard deviations along the local axes
    quaternions: Tensor  # [N, 4] (w, x, y, z), need not be normalised
    opacity_logits: Tensor  # [N] opacity = sigmoid(logit)
    sh: Tensor  # [N, K, 3] SH coefficients, K = (degree + 1)^2 (sh[:, 0] is f_dc)

    def __post_init__(self) -> None:
        _check("means", self.means, (None, 3), "[N, 3]")
        n = self.means.shape[0]
        _check("log_scales", self.log_scales, (n, 3), f"[{n}, 3] (N from means)")
        _check("quaternions", self.quaternions, (n, 4), f"[{n}, 4] (N from means)")
        _check("opacity_logits", self.opacity_logits, (n,), f"[{n}] (N from means)")
        _check("sh", self.sh, (n, None, 3), f"[{n}, K, 3] (N from means)")
        if self.sh.shape[1] not in (1, 4, 9, 16):
            raise ValueError(f"sh must have K in (1, 4, 9, 16) coefficients, got shape {list(self.sh.shape)}")

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        """The highest SH band the coefficients hold."""
        return math.isqrt(self.sh.shape[1]) - 1

    def covariances(self) -> Tensor:  # [N, 3, 3]
        return covariance_3d(self.log_scales, self.quaternions)

    def opacities(self) -> Tensor:  # [N]
        return torch.sigmoid(self.opacity_logits)

    def colors(self, camera_centre: Tensor, degree: int | None = None) -> Tensor:  # [3] -> [N, 3]
        """View-dependent RGB seen from ``camera_centre`` (world), with SH bands up to ``degree``."""
        degree = self.sh_degree if degree is None else degree
        return eval_sh(degree, self.sh, self.means - camera_centre.to(self.means))


def render_reference(
    gaussians: Gaussians,
    c2w: Tensor | np.ndarray,  # [4, 4] camera-to-world, OpenGL convention
    intrinsics: Intrinsics,
    background: Tensor,  # [3]
    sh_degree: int | None = None,
    near: float = 0.01,
    dilation: float = 0.3,
) -> Rendering:
    """Render ``gaussians`` from one camera with the reference rasteriser (project, colour, composite)."""
    projection, colors, opacities = splat_inputs(gaussians, c2w, intrinsics, sh_degree, near, dilation)
    return rasterize_reference(projection, colors, opacities, intrinsics.width, intrinsics.height, background)


def splat_inputs(
    gaussians: Gaussians,
    c2w: Tensor | np.ndarray,  # [4, 4] or [3, 4] camera-to-world, OpenGL convention
    intrinsics: Intrinsics,
    sh_degree: int | None = None,
    near: float = 0.01,
    dilation: float = 0.3,
) -> tuple[Projection, Tensor, Tensor]:
    """What every rasteriser takes from one camera: the projection, the colours seen from the camera centre
    ``[N, 3]`` and the opacities ``[N]``."""
    pose = _as_pose(c2w, gaussians.means)
    projection = project_gaussians(gaussians.means, gaussians.covariances(), pose, intrinsics, near, dilation)
    return projection, gaussians.colors(pose[:3, 3], sh_degree), gaussians.opacities()
