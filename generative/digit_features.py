"""Features of the 8x8 digits from the notes-§2 classifier, for the Frechet digit distance of ``generative.metrics``.

The FID of Heusel et al. (2017) compares two image sets through the activations of an Inception network;
for 8x8 digits we use the small CNN of notes §2.2 (``generative.nn.cnn.CNN``: two conv -> ReLU -> max-pool
blocks, a dense hidden layer of 128 ReLU units, 10 logits) trained on the float form of the fixed digits
split (``generative.data.digits``). The features are the activations of its *penultimate* layer: the
hidden dense layer after its ReLU (``[N, 128]``), the layer just before the class logits.

The trained weights ship as ``assets/generative/digit_classifier.pt``: a dictionary of tensors and the few
numbers that rebuild the network, read with ``torch.load(weights_only=True)`` (a file asking for anything
else is refused with one line naming it). ``python -m generative.metrics`` rebuilds it with
:func:`train_digit_classifier` (deterministic: seed 0, one thread, about 6 s).

Images reach the classifier as floats in ``[0, 1]``: the float and binary forms as they are, int64 grey
levels divided by ``levels - 1``. A set of samples is compared with reference images *in the same form*
(binary samples with the binary digits: :func:`reference_images`), since the classifier sees a binarised
digit differently from a grey one.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from envs.io.checkpoint import load_checkpoint, save_checkpoint
from generative.data.digits import DIGITS_LEVELS, load_digits_split
from generative.nn.cnn import CNN

__all__ = [
    "DIGITS_LEVELS", "DIGIT_CLASSIFIER_PATH", "FORMAT", "digit_features", "load_digit_classifier", "penultimate_features",
    "reference_images", "reference_labels", "save_digit_classifier", "train_digit_classifier",
]

DIGIT_CLASSIFIER_PATH = Path(__file__).resolve().parent.parent / "assets" / "generative" / "digit_classifier.pt"
"""The shipped classifier (see ``assets/generative/README``)."""
FORMAT = "machine-perception/digit-classifier-1"
"""The ``format`` entry of a classifier file."""
IMAGE_SIZE = (8, 8)
Part = Literal["train", "val", "test"]
ImageForm = Literal["float", "binary", "grey"]


def train_digit_classifier(seed: int = 0, steps: int = 1500) -> CNN:
    """The notes-§2 CNN (channels 32, 64; 128 hidden units) fitted to the float digits, deterministically.

    Trained by ``generative.tasks.classification.train_cnn`` (Adam, lr 2e-3, cosine schedule, batch 64,
    1-pixel shift augmentation) on one CPU thread in a throw-away run folder; same ``seed`` and
    ``steps``, same weights. Returned on the CPU in evaluation mode.
    """
    from generative.tasks.classification import CNNConfig, train_cnn
    from generative.training import FitConfig

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    fit = FitConfig(steps=steps, lr=2e-3, seed=seed, device="cpu", threads=1, progress=False, log_every=100,
                    checkpoint_every=steps)
    with tempfile.TemporaryDirectory(prefix="digit-classifier-") as run_dir:
        result = train_cnn(CNNConfig(fit=fit), run_dir)
    model = result.model
    if not isinstance(model, CNN):
        raise TypeError(f"train_cnn returned a {type(model).__name__}, expected a CNN")
    return model.cpu().eval()


def _architecture(model: CNN) -> dict[str, Any]:
    """The numbers that rebuild ``model``'s layers (read from the layers themselves)."""
    convs = [m for m in model.features if hasattr(m, "weight")]
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    if len(linears) != 2:
        raise ValueError(f"model must have one hidden dense layer (hidden > 0), got {len(linears) - 1}")
    return {
        "image_size": list(model.image_shape[1:]),
        "in_channels": model.image_shape[0],
        "channels": [int(m.weight.shape[0]) for m in convs],
        "kernel_size": int(convs[0].weight.shape[-1]),
        "hidden": int(linears[0].out_features),
        "n_classes": int(linears[1].out_features),
    }


def save_digit_classifier(model: CNN, path: str | Path = DIGIT_CLASSIFIER_PATH, **info: float | str) -> Path:
    """Write ``model``'s state dict, the numbers that rebuild it and ``info`` (e.g. its test accuracy)
    atomically to ``path``; only tensors and plain values, so ``torch.load(weights_only=True)`` reads it."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return save_checkpoint(path, {"format": FORMAT, "architecture": _architecture(model), "state_dict": state,
                                  "info": dict(info)})


def load_digit_classifier(path: str | Path | None = None) -> CNN:
    """The classifier stored at ``path`` (default: the shipped one), on the CPU in evaluation mode with
    frozen weights; read without running code from the file. A missing, corrupt, foreign or unsafe file
    is a ``ValueError`` of one line naming it. Loaded once per path and file version (cached)."""
    file = Path(path if path is not None else DIGIT_CLASSIFIER_PATH).resolve()
    stamp = (file.stat().st_mtime_ns, file.stat().st_size) if file.is_file() else None
    return _load_cached(str(file), stamp)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, stamp: tuple[int, int] | None) -> CNN:  # stamp: a rewritten file is read again
    state = load_checkpoint(path)  # one-line ValueError naming the file; weights_only=True
    arch = state.get("architecture")
    if state.get("format") != FORMAT or not isinstance(arch, dict) or not isinstance(state.get("state_dict"), dict):
        raise ValueError(f"digit classifier {path} is not a {FORMAT} file (rebuild it: python -m generative.metrics)")
    try:
        model = CNN(tuple(arch["image_size"]), int(arch["in_channels"]), [int(c) for c in arch["channels"]],
                    int(arch["kernel_size"]), int(arch["hidden"]), int(arch["n_classes"]))
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ValueError(f"digit classifier {path} does not rebuild the network: {reason}") from None
    model.requires_grad_(False)
    return model.eval()


def penultimate_features(model: CNN, x: Tensor) -> Tensor:  # x: [B, C, H, W] float -> [B, hidden]
    """Activations of the hidden dense layer after its ReLU: the head up to its last ReLU (no dropout in
    evaluation mode), the layer before the logits."""
    relus = [i for i, m in enumerate(model.head) if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("model has no hidden dense layer (hidden=0), so no penultimate ReLU features")
    return model.head[: relus[-1] + 1](model.features(x))


def _as_unit_float(images: Tensor, levels: int | None, name: str) -> Tensor:  # [N, C, H, W] -> float32 in [0, 1]
    """Float or binary images as they are (checked to lie in ``[0, 1]``); integer grey levels scaled."""
    if images.is_floating_point():
        if images.numel() and (not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1):
            raise ValueError(f"{name} must hold floats in [0, 1], got values in "
                             f"[{float(images.min()):.4g}, {float(images.max()):.4g}]")
        return images.float()
    if levels is None or levels < 2:
        raise ValueError(f"{name} holds integer grey levels ({images.dtype}); pass levels >= 2, got {levels}")
    if images.numel() and (images.min() < 0 or images.max() > levels - 1):
        raise ValueError(f"{name} must hold grey levels 0..{levels - 1}, got {int(images.min())}..{int(images.max())}")
    return images.float() / (levels - 1)


@torch.no_grad()
def digit_features(images: Tensor, levels: int | None = None, classifier: CNN | None = None,
                   batch_size: int = 1024) -> Tensor:  # images: [N, 1, 8, 8] -> [N, F] float32
    """Penultimate-layer features of the digit classifier for ``images`` ``[N, 1, 8, 8]``: float in
    ``[0, 1]``, binary ``{0, 1}``, or int64 grey levels ``0 .. levels - 1`` (``levels`` needed only
    then; ``DIGITS_LEVELS`` = 17 for the digits). ``classifier`` defaults to the shipped one. -> ``[N, 128]`` on the CPU."""
    model = classifier if classifier is not None else load_digit_classifier()
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"images must be [N, {', '.join(map(str, model.image_shape))}], got {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = _as_unit_float(images.detach().cpu(), levels, "images")  # [N, 1, 8, 8]
    was_training = model.training
    model.eval()
    chunks = [penultimate_features(model, x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(chunks) if chunks else x.new_zeros(0, int(model.head[-1].in_features))


@functools.lru_cache(maxsize=4)
def _split(form: ImageForm) -> Any:
    return load_digits_split(form=form)


def reference_images(form: ImageForm = "binary", part: Part = "train") -> Tensor:  # -> [N, 1, 8, 8]
    """The digits of the fixed split in ``form`` (``float`` or ``binary`` float32, ``grey`` int64 levels
    ``0..16``): the reference to compare a model's samples with, in the samples' own form. ``part``:
    ``train`` (1257 images), ``val`` (180) or ``test`` (360)."""
    if form not in ("float", "binary", "grey"):
        raise ValueError(f"form must be 'float', 'binary' or 'grey', got {form!r}")
    if part not in ("train", "val", "test"):
        raise ValueError(f"part must be 'train', 'val' or 'test', got {part!r}")
    return torch.tensor(np.array(getattr(_split(form), f"x_{part}")))


def reference_labels(part: Part = "train") -> Tensor:  # -> [N] int64
    """The class labels of :func:`reference_images` of the same ``part``."""
    if part not in ("train", "val", "test"):
        raise ValueError(f"part must be 'train', 'val' or 'test', got {part!r}")
    return torch.tensor(np.array(getattr(_split("float"), f"y_{part}")))

