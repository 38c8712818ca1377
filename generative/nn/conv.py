"""Correlation, convolution, the convolutional layer and max pooling, with hand-written backward passes
(notes §2.1-2.2).

Indices start at 0 and the kernel ``K`` is ``[kh, kw]``. The notes centre the kernel (``m = -k..k``);
``mode="same"`` is that centred form with zeros outside the image, ``"valid"`` keeps only the outputs where
the kernel lies inside the image, ``"full"`` every output where it overlaps it:

    correlation  (K ⋆ I)[i, j] = sum_{m, n} K[m, n] I[i + m, j + n]          (valid)
    convolution  (K * I)[i, j] = sum_{m, n} K[m, n] I[i - m, j - n]          (full: i = 0 .. H + kh - 2)

For an even kernel ``same`` keeps, for both operations, the crop of the full output that starts at
``((kh - 1) // 2, (kw - 1) // 2)`` (scipy's ``correlate2d`` centres even kernels the other way).

``K * I = Flip(K) ⋆ I``: a convolution is a correlation with the kernel flipped in both axes
(``torch.nn.functional.conv2d`` computes the *correlation*). The convolution commutes, ``K * I = I * K``;
the correlation does not: ``I ⋆ K = Flip(K ⋆ I)`` (full mode). The notes' footnote 4 prints the two sides
with the same star; the correct statement is ``I * K = K * I`` but ``I ⋆ K != K ⋆ I``. Both are linear and
shift-equivariant: ``C(alpha x + beta y) = alpha C(x) + beta C(y)`` (the notes' ``C(alpha x + beta) =
alpha C(x) + beta`` is a slip: a constant ``beta`` comes out as ``beta sum K``) and
``C(T_t x) = T_t C(x)``.

The layer (notes §2.2) is ``Z_j = sum_c W[j, c] * Z_c + b_j``, a true convolution, valid after zero padding
by ``padding``, stride 1, weights in torch's layout ``W: [C_out, C_in, kh, kw]`` (the notes write
``C_in x C_out x k x k``). Its backward, with ``delta = dL/dZ^(l)``:

    delta^(l-1)_c = sum_j delta_j * Flip(W[j, c]) = sum_j W[j, c] ⋆ delta_j     (a full correlation of delta)
    dL/dW[j, c]   = Z_c ⋆ delta_j  (index m: sum_i delta_j[i] Z_c[i - m]) = Flip(delta_j ⋆ Z_c)
    dL/db_j       = sum_i delta_j[i]

The notes write the first as ``delta * Flip(W) = delta ⋆ W``: the first form is right, the second has the
correlation's operands swapped (``delta ⋆ W`` reads ``W[i + m]``, the sum needs ``W[m - i]``), so it is
``W ⋆ delta``. They write ``dL/dW = delta * Z``, but their own last line ``sum_i delta[i] Z[i - m]`` is the
correlation ``Z ⋆ delta``, not a convolution.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Mode = Literal["valid", "same", "full"]


def _check_image_kernel(I: Tensor, K: Tensor, batched: bool) -> None:
    if K.ndim != 2:
        raise ValueError(f"K must be [kh, kw], got {tuple(K.shape)}")
    if (I.ndim != 2 and not batched) or (batched and I.ndim < 2):
        raise ValueError(f"I must be [H, W]{' or [..., H, W]' if batched else ''}, got {tuple(I.shape)}")


def _crop_full(full: Tensor, shape: tuple[int, int], kernel: tuple[int, int], mode: Mode) -> Tensor:
    """The ``valid`` or ``same`` part of a full output ``[..., H + kh - 1, W + kw - 1]``."""
    (H, W), (kh, kw) = shape, kernel
    if mode == "full":
        return full
    if mode == "valid":
        if H < kh or W < kw:
            raise ValueError(f"mode='valid' needs the image at least as large as the kernel, got {shape} and {kernel}")
        return full[..., kh - 1 : H, kw - 1 : W]
    if mode == "same":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        return full[..., top : top + H, left : left + W]
    raise ValueError(f"mode must be 'valid', 'same' or 'full', got {mode!r}")


# --- slow references, straight from the definitions ------------------------------------------------------


def correlate2d_loops(I: Tensor, K: Tensor, mode: Mode = "valid") -> Tensor:  # I: [H, W], K: [kh, kw]
    """``(K ⋆ I)[i, j] = sum_{m, n} K[m, n] I[i + m, j + n]`` by explicit loops (zeros outside ``I``)."""
    _check_image_kernel(I, K, batched=False)
    (H, W), (kh, kw) = I.shape, K.shape
    full = torch.zeros(H + kh - 1, W + kw - 1, dtype=torch.promote_types(I.dtype, K.dtype))
    for p in range(H + kh - 1):  # full output p sits at i = p - (kh - 1) of the valid one
        for q in range(W + kw - 1):
            total = 0.0
            for m in range(kh):
                for n in range(kw):
                    a, b = p - (kh - 1) + m, q - (kw - 1) + n
                    if 0 <= a < H and 0 <= b < W:
                        total = total + K[m, n] * I[a, b]
            full[p, q] = total
    return _crop_full(full, (H, W), (kh, kw), mode)


def convolve2d_loops(I: Tensor, K: Tensor, mode: Mode = "full") -> Tensor:  # I: [H, W], K: [kh, kw]
    """``(K * I)[i, j] = sum_{m, n} K[m, n] I[i - m, j - n]`` by explicit loops (zeros outside ``I``)."""
    _check_image_kernel(I, K, batched=False)
    (H, W), (kh, kw) = I.shape, K.shape
    full = torch.zeros(H + kh - 1, W + kw - 1, dtype=torch.promote_types(I.dtype, K.dtype))
    for i in range(H + kh - 1):
        for j in range(W + kw - 1):
            total = 0.0
            for m in range(kh):
                for n in range(kw):
                    if 0 <= i - m < H and 0 <= j - n < W:
                        total = total + K[m, n] * I[i - m, j - n]
            full[i, j] = total
    return _crop_full(full, (H, W), (kh, kw), mode)


# --- vectorised ------------------------------------------------------------------------------------------


def correlate2d(I: Tensor, K: Tensor, mode: Mode = "valid") -> Tensor:  # I: [..., H, W], K: [kh, kw]
    """``K ⋆ I`` for one image or a batch, with ``F.conv2d`` (which is a correlation)."""
    _check_image_kernel(I, K, batched=True)
    (H, W), (kh, kw) = I.shape[-2:], K.shape
    if mode == "valid" and (H < kh or W < kw):
        raise ValueError(f"mode='valid' needs I at least as large as K, got {tuple(I.shape)} and {tuple(K.shape)}")
    if mode == "full":
        pad = (kw - 1, kw - 1, kh - 1, kh - 1)
    elif mode == "same":  # the crop of the full output that starts at ((kh - 1) // 2, (kw - 1) // 2)
        top, left = (kh - 1) // 2, (kw - 1) // 2
        pad = (kw - 1 - left, left, kh - 1 - top, top)
    elif mode == "valid":
        pad = (0, 0, 0, 0)
    else:
        raise ValueError(f"mode must be 'valid', 'same' or 'full', got {mode!r}")
    batch = I.shape[:-2]
    x = F.pad(I.reshape(-1, 1, H, W), pad)
    dtype = torch.promote_types(I.dtype, K.dtype)
    out = F.conv2d(x.to(dtype), K.to(dtype)[None, None])
    return out.reshape(*batch, *out.shape[-2:])


def convolve2d(I: Tensor, K: Tensor, mode: Mode = "full") -> Tensor:  # I: [..., H, W], K: [kh, kw]
    """``K * I``: the correlation with the flipped kernel, ``Flip(K) ⋆ I``."""
    _check_image_kernel(I, K, batched=True)
    return correlate2d(I, K.flip(-2, -1), mode)


def toeplitz_matrix(kernel: Tensor, n: int) -> Tensor:  # kernel: [m] -> [n + m - 1, n]
    """The matrix ``T`` of the notes (§2.1), ``T[i, j] = k[i - j]`` (zero outside ``0 <= i - j < m``), so that
    ``T @ x`` is the full 1-D convolution ``k * x`` of a signal ``x: [n]`` (length ``n + m - 1``). Its
    first column is ``k_1, k_2, ...``, its last row ends in ``k_m``, as in the notes."""
    if kernel.ndim != 1 or len(kernel) == 0 or n < 1:
        raise ValueError(f"kernel must be [m] with m >= 1 and n >= 1, got {tuple(kernel.shape)} and n={n}")
    m = len(kernel)
    i = torch.arange(n + m - 1)[:, None]
    j = torch.arange(n)[None, :]
    offset = i - j
    inside = (offset >= 0) & (offset < m)
    return torch.where(inside, kernel[offset.clamp(0, m - 1)], torch.zeros((), dtype=kernel.dtype))


def convolve1d_full(x: Tensor, kernel: Tensor) -> Tensor:  # x: [n], kernel: [m] -> [n + m - 1]
    """``k * x`` in full mode with ``F.conv1d``: a correlation with the flipped kernel, padded by ``m - 1``."""
    if x.ndim != 1 or kernel.ndim != 1:
        raise ValueError(f"x and kernel must be 1-D, got {tuple(x.shape)} and {tuple(kernel.shape)}")
    return F.conv1d(x[None, None], kernel.flip(0)[None, None], padding=len(kernel) - 1)[0, 0]


# --- the convolutional layer -----------------------------------------------------------------------------


def _check_layer(Z: Tensor, W: Tensor, b: Tensor | None) -> None:
    if Z.ndim != 4 or W.ndim != 4 or Z.shape[1] != W.shape[1]:
        raise ValueError(
            f"Z must be [B, C_in, H, W] and W [C_out, C_in, kh, kw], got {tuple(Z.shape)} and {tuple(W.shape)}"
        )
    if b is not None and b.shape != W.shape[:1]:
        raise ValueError(f"b must be [C_out] = [{W.shape[0]}], got {tuple(b.shape)}")


def conv_forward(Z: Tensor, W: Tensor, b: Tensor | None, padding: int = 0) -> Tensor:
    """``Z_j^(l) = sum_c W[j, c] * Z_c^(l-1) + b_j`` (notes §2.2), valid after zero padding.
    Z: [B, C_in, H, W], W: [C_out, C_in, kh, kw], b: [C_out] -> [B, C_out, H + 2p - kh + 1, W + 2p - kw + 1]."""
    _check_layer(Z, W, b)
    return F.conv2d(Z, W.flip(-2, -1), b, padding=padding)


def conv_backward(delta: Tensor, Z: Tensor, W: Tensor, padding: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``(dL/dZ^(l-1), dL/dW, dL/db)`` of ``conv_forward`` from ``delta = dL/dZ^(l)`` (see the module docstring).
    delta: [B, C_out, H', W'], Z: [B, C_in, H, W], W: [C_out, C_in, kh, kw]."""
    _check_layer(Z, W, None)
    kh, kw = W.shape[-2:]
    Zp = F.pad(Z, (padding,) * 4)
    expected = (Z.shape[0], W.shape[0], Zp.shape[2] - kh + 1, Zp.shape[3] - kw + 1)
    if tuple(delta.shape) != expected:
        raise ValueError(
            f"delta must be {list(expected)} for Z {tuple(Z.shape)} and W {tuple(W.shape)}, got {tuple(delta.shape)}"
        )
    # delta^(l-1)_c = sum_j W[j, c] ⋆ delta_j in full mode: F.conv2d correlates, channels C_out -> C_in
    grad_Zp = F.conv2d(delta, W.transpose(0, 1), padding=(kh - 1, kw - 1))
    grad_Z = grad_Zp[..., padding : padding + Z.shape[2], padding : padding + Z.shape[3]]
    # dL/dW[j, c] = Flip(delta_j ⋆ Z_c), summed over the batch: the batch becomes the channel to sum over
    corr = F.conv2d(Zp.transpose(0, 1), delta.transpose(0, 1))  # [C_in, C_out, kh, kw]
    grad_W = corr.transpose(0, 1).flip(-2, -1)
    return grad_Z, grad_W, delta.sum(dim=(0, 2, 3))


def conv_backward_loops(delta: Tensor, Z: Tensor, W: Tensor) -> tuple[Tensor, Tensor]:
    """The notes' sums, literally, for one image and one filter (no padding): ``delta^(l-1)[i, j] =
    sum_{i', j'} delta[i', j'] w[i' - i, j' - j]`` and ``dL/dw[m, n] = sum_{i, j} delta[i, j] z[i - m, j - n]``,
    with the full convolution's indices shifted to the valid output (``i' -> i' + k - 1``).
    delta: [H - kh + 1, W - kw + 1], Z: [H, W], W: [kh, kw] -> ([H, W], [kh, kw])."""
    (H, Wd), (kh, kw) = Z.shape, W.shape
    if delta.shape != (H - kh + 1, Wd - kw + 1):
        raise ValueError(
            f"delta must be [{H - kh + 1}, {Wd - kw + 1}] for Z {tuple(Z.shape)}, got {tuple(delta.shape)}"
        )
    grad_Z = torch.zeros_like(Z)
    grad_W = torch.zeros_like(W)
    for i in range(H):
        for j in range(Wd):
            for a in range(delta.shape[0]):  # a is valid index; full index a + kh - 1
                for c in range(delta.shape[1]):
                    m, n = a + kh - 1 - i, c + kw - 1 - j
                    if 0 <= m < kh and 0 <= n < kw:
                        grad_Z[i, j] += delta[a, c] * W[m, n]
    for m in range(kh):
        for n in range(kw):
            for a in range(delta.shape[0]):
                for c in range(delta.shape[1]):
                    grad_W[m, n] += delta[a, c] * Z[a + kh - 1 - m, c + kw - 1 - n]
    return grad_Z, grad_W


class ConvFunction(torch.autograd.Function):
    """``conv_forward`` differentiated by ``conv_backward``: ``ConvFunction.apply(Z, W, b, padding)``."""

    @staticmethod
    def forward(ctx: Any, Z: Tensor, W: Tensor, b: Tensor, padding: int = 0) -> Tensor:
        ctx.save_for_backward(Z, W)
        ctx.padding = padding
        return conv_forward(Z, W, b, padding)

    @staticmethod
    def backward(ctx: Any, delta: Tensor) -> tuple[Tensor | None, ...]:
        Z, W = ctx.saved_tensors
        grad_Z, grad_W, grad_b = conv_backward(delta, Z, W, ctx.padding)
        return grad_Z, grad_W, grad_b, None


class Conv2d(nn.Module):
    """The notes' convolutional layer (true convolution, stride 1) with the hand-written backward."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        reference = nn.Conv2d(c_in, c_out, kernel_size)  # borrow torch's default initialisation
        self.weight = nn.Parameter(reference.weight.detach().clone())  # [C_out, C_in, k, k]
        self.bias = nn.Parameter(reference.bias.detach().clone())  # [C_out]
        self.padding = padding

    def forward(self, Z: Tensor) -> Tensor:  # [B, C_in, H, W] -> [B, C_out, H', W']
        return ConvFunction.apply(Z, self.weight, self.bias, self.padding)


# --- max pooling -----------------------------------------------------------------------------------------


def maxpool_forward(Z: Tensor, k: int, s: int | None = None) -> tuple[Tensor, Tensor]:
    """``z^(l)[i, j] = max {z^(l-1)[i', j'] : i' in [si, si + k), j' in [sj, sj + k)}`` and the flat index
    ``i* W + j*`` of each maximum (the first one on ties). Z: [B, C, H, W] -> ([B, C, H', W'], same, int64)."""
    s = k if s is None else s
    if Z.ndim != 4 or k < 1 or s < 1 or Z.shape[2] < k or Z.shape[3] < k:
        raise ValueError(f"Z must be [B, C, H, W] with H, W >= k = {k} and stride >= 1, got {tuple(Z.shape)}, s={s}")
    W = Z.shape[3]
    patches = Z.unfold(2, k, s).unfold(3, k, s)  # [B, C, H', W', k, k]
    values, arg = patches.flatten(-2).max(dim=-1)  # arg in 0 .. k*k - 1
    Ho, Wo = values.shape[-2:]
    rows = torch.arange(Ho, device=Z.device)[:, None] * s + arg // k
    cols = torch.arange(Wo, device=Z.device)[None, :] * s + arg % k
    return values, rows * W + cols


def maxpool_backward(grad_out: Tensor, indices: Tensor, input_shape: tuple[int, ...]) -> Tensor:
    """``dL/dz^(l-1)[i', j'] = sum_{(i, j): (i*, j*) = (i', j')} dL/dz^(l)[i, j]``: each output's gradient goes
    to its arg-max only (summed where overlapping windows share one). grad_out, indices: [B, C, H', W']."""
    if grad_out.shape != indices.shape:
        raise ValueError(
            f"grad_out and indices must have the same shape, got {tuple(grad_out.shape)} and {tuple(indices.shape)}"
        )
    B, C, H, W = input_shape
    grad = torch.zeros(B, C, H * W, dtype=grad_out.dtype, device=grad_out.device)
    grad.scatter_add_(2, indices.flatten(2), grad_out.flatten(2))
    return grad.reshape(B, C, H, W)


class MaxPoolFunction(torch.autograd.Function):
    """``maxpool_forward`` differentiated by ``maxpool_backward``: ``MaxPoolFunction.apply(Z, k, s)``."""

    @staticmethod
    def forward(ctx: Any, Z: Tensor, k: int, s: int | None = None) -> Tensor:
        values, indices = maxpool_forward(Z, k, s)
        ctx.save_for_backward(indices)
        ctx.input_shape = tuple(Z.shape)
        return values

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (indices,) = ctx.saved_tensors
        return maxpool_backward(grad_out, indices, ctx.input_shape), None, None


class MaxPool2d(nn.Module):
    """Max pooling with kernel ``k`` and stride ``s`` (``k`` by default) and the hand-written backward."""

    def __init__(self, k: int, s: int | None = None) -> None:
        super().__init__()
        self.k, self.s = k, s

    def forward(self, Z: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C, H', W']
        return MaxPoolFunction.apply(Z, self.k, self.s)
