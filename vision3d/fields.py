"""The implicit-function network every vision3d method fits: an MLP ``f_theta(x, z)`` (notes §12).

One module, parameterised, serves as the occupancy network of Mescheder et al. (2019), the DeepSDF
decoder of Park et al. (2019), the IGR network of Gropp et al. (2020) and the shape and texture
fields of DVR (Niemeyer et al., 2020):

* the input point ``x`` ``[N, 3]``, optionally lifted by Fourier features
  ``gamma(x) = (x, sin(2^k pi x), cos(2^k pi x))_{k < L}`` (Mildenhall et al., 2020);
* a latent code ``z`` ``[N, latent_dim]`` concatenated to the input, and again at the skip connection
  (DeepSDF's decoder), so one network holds several shapes;
* ReLU or Softplus (``beta = 100``, IGR: a smooth ReLU, so that ``grad_x f`` is continuous);
* geometric initialisation (Atzmon & Lipman, SAL, 2020): at initialisation
  ``f(x) ~ ||x|| - radius``, a sphere's signed distance, which IGR and DVR start from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from envs.io.config import dumps, loads
from envs.io.files import atomic_write_text
from envs.io.run import RunFolder, opened
from generative.training import Objective, fit, load_modules
from vision3d.volume import positional_encoding


@dataclass
class FieldConfig:
    """Architecture of an implicit-function MLP."""

    hidden: int = 256
    """Width of every hidden layer."""
    layers: int = 8
    """Number of hidden layers (linear + activation)."""
    skip: tuple[int, ...] = (4,)
    """Hidden layers whose input is concatenated with the (encoded) input point and code again."""
    latent_dim: int = 0
    """Size of the shape code ``z`` concatenated to the input (0: no code)."""
    out_dim: int = 1
    """Number of outputs (1 for an SDF or occupancy logit, 3 for a texture field)."""
    activation: Literal["relu", "softplus"] = "softplus"
    """Hidden activation; softplus keeps the gradient of the field smooth (IGR)."""
    beta: float = 100.0
    """Sharpness of the softplus, ``log(1 + exp(beta t)) / beta``."""
    geometric_init: bool = True
    """Initialise so that ``f(x) ~ ||x|| - radius`` (Atzmon & Lipman's SAL initialisation)."""
    radius: float = 0.3
    """Radius of the sphere the geometric initialisation starts from."""
    fourier_levels: int = 0
    """Number of Fourier-feature octaves ``L`` of the positional encoding (0: raw coordinates)."""

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got hidden={self.hidden}, layers={self.layers}")
        if any(not 0 < s < self.layers for s in self.skip):
            raise ValueError(f"skip layers must lie in 1..{self.layers - 1}, got {self.skip}")
        if self.latent_dim < 0 or self.fourier_levels < 0 or self.out_dim < 1:
            raise ValueError(
                f"latent_dim and fourier_levels must be >= 0 and out_dim >= 1, got latent_dim={self.latent_dim}, "
                f"fourier_levels={self.fourier_levels}, out_dim={self.out_dim}"
            )


def fourier_encoding(x: Tensor, levels: int) -> Tensor:  # x: [N, 3] -> [N, 3 + 6 levels]
    """``gamma(x) = (x, sin(2^k pi x), cos(2^k pi x))`` for ``k = 0 .. levels-1``; identity for 0 levels.

    The notes' encoding (:func:`vision3d.volume.positional_encoding`) in this field's own order, which trained
    checkpoints depend on: ``x``, then every sine, then every cosine, each ordered by octave, then coordinate.
    """
    if levels == 0:
        return x
    gamma = positional_encoding(x, levels).reshape(x.shape[0], 3, levels, 2)  # [N, coordinate, octave, sin|cos]
    sin_cos = gamma.permute(0, 3, 2, 1).reshape(x.shape[0], 6 * levels)  # [N, 6 L]: sin|cos, octave, coordinate
    return torch.cat([x, sin_cos], dim=-1)


def gradient(y: Tensor, x: Tensor, create_graph: bool = True) -> Tensor:  # y: [N, 1], x: [N, 3] -> [N, 3]
    """``grad_x y`` by autograd; ``create_graph=True`` keeps it differentiable (Eikonal terms)."""
    if not x.requires_grad:
        raise ValueError("x must require grad (call x.requires_grad_() before evaluating the field)")
    (grad,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y), create_graph=create_graph)
    return grad


class ImplicitField(nn.Module):
    """An MLP ``f_theta(x, z)`` with optional Fourier features, skip connections and geometric init."""

    def __init__(self, config: FieldConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or FieldConfig()
        self.point_dim = 3 + 6 * config.fourier_levels
        self.input_dim = self.point_dim + config.latent_dim
        widths_in = [self.input_dim] + [config.hidden] * (config.layers - 1)
        widths_out = [config.hidden] * config.layers
        for s in config.skip:  # the layer before a skip leaves room for the re-injected input
            widths_out[s - 1] = config.hidden - self.input_dim
            if widths_out[s - 1] < 1:
                raise ValueError(f"hidden={config.hidden} is too narrow for a skip with input size {self.input_dim}")
        self.hidden_layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(widths_in, widths_out))
        self.output = nn.Linear(config.hidden, config.out_dim)
        if config.activation == "softplus":
            self.activation: nn.Module = nn.Softplus(beta=config.beta)
        else:
            self.activation = nn.ReLU()
        if config.geometric_init:
            self._geometric_init()

    @torch.no_grad()
    def _geometric_init(self) -> None:
        """SAL initialisation: hidden ``W ~ N(0, 2 / fan_out)``, ``b = 0``; output ``W ~ sqrt(pi / fan_in)``,
        ``b = -radius``. Weights on Fourier features and on the code start at zero so that the network
        begins as the same sphere for every code; the skip concatenation is scaled by ``1/sqrt(2)``."""
        cfg = self.config
        for index, layer in enumerate(self.hidden_layers):
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0) / math.sqrt(layer.out_features))
            nn.init.zeros_(layer.bias)
            if index == 0 or index in cfg.skip:
                start = layer.in_features - self.input_dim  # the input block is last in the concatenation
                layer.weight[:, start + 3 :] = 0.0  # Fourier features and code
        nn.init.normal_(self.output.weight, math.sqrt(math.pi) / math.sqrt(self.output.in_features), 1e-4)
        nn.init.constant_(self.output.bias, -cfg.radius)

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:  # x: [N, 3], z: [N | 1, latent_dim]
        """Evaluate the field; returns ``[N, out_dim]``. ``z`` of shape ``[latent_dim]`` or ``[1, latent_dim]``
        is shared by all points."""
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValueError(f"x must have shape [N, 3], got {tuple(x.shape)}")
        inputs = fourier_encoding(x, self.config.fourier_levels)
        latent_dim = self.config.latent_dim
        if latent_dim:
            if z is None:
                raise ValueError(f"this field needs a code z of shape [N, {latent_dim}], got None")
            z = z.reshape(1, -1) if z.ndim == 1 else z
            if z.ndim != 2 or z.shape[1] != latent_dim or z.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"z must have shape [{x.shape[0]} or 1, {latent_dim}], got {tuple(z.shape)}")
            inputs = torch.cat([inputs, z.expand(x.shape[0], -1)], dim=-1)
        elif z is not None:
            raise ValueError("this field has latent_dim=0 but a code z was given")
        h = inputs
        for index, layer in enumerate(self.hidden_layers):
            if index in self.config.skip:
                h = torch.cat([h, inputs], dim=-1) / math.sqrt(2.0)
            h = self.activation(layer(h))
        return self.output(h)

    def value_and_gradient(self, x: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(f(x) [N, 1], grad_x f(x) [N, 3])`` with the gradient differentiable (for Eikonal losses)."""
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        y = self.forward(x, z)[:, :1]
        return y, gradient(y, x, create_graph=True)


class AutoDecoder(nn.Module):
    """A field and one learned code per shape (Park et al.'s auto-decoder): ``f_theta(x, z_k)``.

    The codes start as ``N(0, code_std^2)`` (DeepSDF: 0.01) and are optimised with the network.
    """

    def __init__(self, config: FieldConfig, n_shapes: int, code_std: float = 0.01) -> None:
        super().__init__()
        if config.latent_dim < 1 or n_shapes < 1:
            raise ValueError(
                f"an auto-decoder needs latent_dim >= 1 and n_shapes >= 1, got {config.latent_dim} and {n_shapes}"
            )
        self.field = ImplicitField(config)
        self.codes = nn.Embedding(n_shapes, config.latent_dim)
        nn.init.normal_(self.codes.weight, 0.0, code_std)

    def forward(self, x: Tensor, shape: int) -> Tensor:  # x: [N, 3] -> [N]
        """The first output of the field at ``x`` for the code of shape ``shape``."""
        return self.field(x, self.codes.weight[shape])[:, 0]


def as_numpy_sdf(
    fn: Callable[[Tensor], Tensor], device: torch.device | str = "cpu", batch_size: int = 65_536
) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a torch field ``[N, 3] -> [N] or [N, 1]`` as a numpy callable for marching cubes (no grad, batched)."""

    def sdf(points: np.ndarray) -> np.ndarray:  # [N, 3] -> [N] float32
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must have shape [N, 3], got {points.shape}")
        out = np.empty(len(points), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(points), batch_size):
                chunk = torch.as_tensor(points[start : start + batch_size], dtype=torch.float32, device=device)
                out[start : start + len(chunk)] = fn(chunk).reshape(len(chunk)).float().cpu().numpy()
        return out

    return sdf


@dataclass
class FittedShape:
    """A fitted shape: ``sdf`` maps float32 points ``[N, 3]`` to ``[N]``, negative inside, surface at 0."""

    name: str
    sdf: Callable[[np.ndarray], np.ndarray] = field(repr=False)


class Reconstruction(NamedTuple):
    """What every ``fit_<method>`` returns: the fitted shapes and the trained model itself, so callers
    evaluate or render it without reading it back from disk."""

    shapes: list[FittedShape]
    model: nn.Module


def fit_image_model(objective: Objective, model: nn.Module, config: Any, run_dir: Path | RunFolder, resume: bool,
                    method: str, name: str, device: torch.device) -> Reconstruction:
    """The end of every image-based fit (DVR, NeRF): the config as ``<method>_config.json`` beside the
    checkpoint (what :func:`load_image_model` rebuilds the model from), the engine's fit, and the model as
    a reconstruction whose shape is ``model.sdf``."""
    with opened(run_dir, config=config, resume=resume) as run:
        if run.writer:
            atomic_write_text(run.path / f"{method}_config.json", dumps(config))
        fit(objective, config.fit, run, resume=resume, desc=method)
    model.eval()
    return Reconstruction([FittedShape(name or method, as_numpy_sdf(model.sdf, device))], model)


def load_image_model(run_dir: Path, config_cls: Any, build: Callable[[Any], nn.Module], method: str,
                     device: str = "cpu") -> nn.Module:
    """The model of a finished (or checkpointed) :func:`fit_image_model` run of ``method``."""
    run_dir = Path(run_dir)
    path = run_dir / f"{method}_config.json"
    if not path.exists():
        raise ValueError(f"run_dir must hold {path.name} and a checkpoint from fit_{method}, got {run_dir}")
    model = build(loads(config_cls, path.read_text(), str(path)))
    load_modules(run_dir, {method: model})
    return model.to(device).eval()


def as_paths(data: str | Path | Sequence[str | Path], name: str = "data") -> list[Path]:
    """One data folder or several, as a non-empty list of existing folders."""
    items = [data] if isinstance(data, (str, Path)) else list(data)
    if not items:
        raise ValueError(f"{name}: expected at least one data folder, got none")
    paths = [Path(item) for item in items]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise ValueError(f"{name}: expected existing data folders, these are missing: {', '.join(missing)}")
    return paths
