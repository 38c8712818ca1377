"""Gradient clipping by the global norm (notes §4.3; Pascanu, Mikolov and Bengio, ICML 2013).

The update ``theta <- theta - gamma g`` becomes ``theta <- theta - gamma (k / ||g||) g`` when
``||g|| > k``: the step keeps its direction and its length is capped at ``gamma k``. ``g`` is the
gradient of *all* parameters together, so ``||g|| = sqrt(sum_p ||g_p||^2)`` (the global L2 norm), and
every parameter's gradient is scaled by the same factor.

``torch.nn.utils.clip_grad_norm_`` scales by ``k / (||g|| + 1e-6)`` and only when that factor is below
1; ours is exactly the notes' rule: no scaling at ``||g|| <= k``, and ``||g||`` becomes exactly ``k``
above it (torch's lands at ``k ||g|| / (||g|| + 1e-6)``, a relative ``1e-6 / ||g||`` short).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


def _check_k(k: float) -> None:
    if not (k > 0 and math.isfinite(k)):
        raise ValueError(f"the threshold k must be positive and finite, got {k}")


def global_norm(gradients: Sequence[Tensor]) -> Tensor:  # tensors of any shapes -> [] (float64 if any is)
    """``||g|| = sqrt(sum_p sum_i g_{p,i}^2)`` over every tensor in ``gradients`` (0 for none)."""
    if len(gradients) == 0:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in gradients]))


def clipped(g: Tensor, k: float) -> Tensor:  # g: [*] -> [*]
    """The notes' clipped gradient: ``g`` if ``||g|| <= k``, else ``k g / ||g||`` (``g`` is one
    flat-or-any-shape tensor holding the whole gradient)."""
    _check_k(k)
    norm = torch.linalg.vector_norm(g)
    if norm <= k:
        return g
    return g * (k / norm)


def clip_gradients(parameters: Iterable[Tensor], k: float) -> float:
    """Clip the ``.grad`` of ``parameters`` in place to global norm at most ``k`` (notes §4.3) and
    return the norm before clipping. Parameters without a gradient are skipped; a non-finite norm is
    returned unchanged and the gradients are left alone (the caller decides what to do with NaN)."""
    _check_k(k)
    gradients = [p.grad for p in parameters if p.grad is not None]
    norm = float(global_norm(gradients))
    if math.isfinite(norm) and norm > k:
        scale = k / norm
        with torch.no_grad():
            for g in gradients:
                g.mul_(scale)
    return norm
