"""WaveNet on the procedural 8 kHz audio (notes §7.5): training on the engine, test NLL, figures and WAV files.

The objective minimises the mean negative log-likelihood per sample, ``-log p(x) / T``, of minibatches of
whole training clips (mu-law codes, ``generative.data.audio``); the engine (``generative.training.fit``) runs
the loop, logs, checkpoints and resumes. The result reports the test NLL in nats and bits per sample next to
the baseline without context: the entropy of the test set's histogram of mu-law levels, the NLL of the best
model that predicts every sample from nothing (an i.i.d. categorical fitted to the test set itself).

Figures: the waveform and the spectrogram (``scipy.signal.spectrogram``) of a generated clip next to a real
one; :func:`write_samples` writes generated clips as WAV files to listen to.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.signal import spectrogram
from torch import Tensor

from envs.io.figures import save_figure
from envs.io.run import RunFolder
from generative.data.audio import (
    RATE,
    AudioSplit,
    Kind,
    audio_split,
    marginal_entropy,
    mu_law_decode,
    tonal_fraction,
    write_wav,
)
from generative.models.wavenet import WaveNet, WaveNetConfig
from generative.training import FitConfig, FitResult, OneModel, evaluating, fit, resolve_device, seed_everything


def _wavenet_fit() -> FitConfig:
    # 1800 steps of 8 x 1024 samples: about 210 s of one CPU thread (measured with time.process_time)
    return FitConfig(steps=1800, lr=5e-3, warmup_steps=50, clip_norm=1.0, log_every=50, checkpoint_every=500)


@dataclass
class WaveNetTrainConfig:
    """WaveNet trained on whole procedural clips by maximum likelihood."""

    model: WaveNetConfig = field(default_factory=WaveNetConfig)
    """The network (channels, dilation stacks)."""
    fit: FitConfig = field(default_factory=_wavenet_fit)
    """Optimisation (Adam, cosine schedule, clipping), seed, device, threads, logging."""
    clip_length: int = 1024
    """Samples per clip (1024 = 128 ms at 8 kHz: four receptive fields, so most targets see a full context)."""
    kind: Kind | None = "steady"
    """Clips to learn: ``steady`` tones (the default: a model of them generates tones), ``tone`` (half with an
    attack/decay envelope), ``chirp``, ``mixture``, or ``None`` for the mix of tones, chirps and mixtures."""
    batch_size: int = 8
    """Training clips per step, drawn with replacement."""
    n_train: int = 1024
    """Training clips in the split."""
    n_test: int = 128
    """Test clips in the split (the validation part holds half as many)."""

    def __post_init__(self) -> None:
        if self.clip_length < 2:
            raise ValueError(f"clip_length must be >= 2, got {self.clip_length}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError(f"n_train and n_test must be >= 1, got {self.n_train}, {self.n_test}")

    def split(self) -> AudioSplit:
        """The fixed clips of this config."""
        return audio_split(self.n_train, max(self.n_test // 2, 1), self.n_test, self.clip_length, kind=self.kind)


class WaveNetResult(NamedTuple):
    """A trained WaveNet and its test likelihood against the no-context baseline."""

    model: WaveNet
    test_nll: float  # nats per sample
    test_bits: float  # bits per sample
    baseline_nll: float  # nats per sample: entropy of the test set's level histogram
    baseline_bits: float  # bits per sample
    seconds: float  # wall-clock seconds of the fit (this process)
    fit: FitResult


@torch.no_grad()
def nll_per_sample(model: WaveNet, codes: Tensor, batch_size: int = 64) -> float:  # codes: [N, T] int64 -> nats
    """Mean ``-log p(x_t | x_<t)`` over every sample of every clip, in nats, in evaluation mode."""
    if codes.ndim != 2:
        raise ValueError(f"codes must be [N, T], got {tuple(codes.shape)}")
    with evaluating(model):
        device = next(model.parameters()).device
        total = sum(float(-model.log_prob(codes[i:i + batch_size].to(device)).sum())
                    for i in range(0, len(codes), batch_size))
    return total / codes.numel()


class WaveNetObjective(OneModel):
    """Mean NLL per sample of whole training clips (``training.Objective``); evaluates the validation and
    test NLL in nats per sample."""

    def __init__(self, model: WaveNet, split: AudioSplit, batch_size: int, device: torch.device) -> None:
        self.model, self.batch_size, self.device = model, batch_size, device
        mu = model.levels - 1
        self.train = torch.from_numpy(split.codes("train", mu)).to(device)  # [N, T]
        self.val = torch.from_numpy(split.codes("val", mu))
        self.test = torch.from_numpy(split.codes("test", mu))

    def loss(self, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        index = torch.randint(0, len(self.train), (self.batch_size,), generator=generator).to(self.device)
        x = self.train[index]
        nll = -self.model.log_prob(x).mean() / x.shape[1]
        return nll, {"bits_per_sample": float(nll.detach()) / math.log(2.0)}

    def evaluate(self, step: int) -> dict[str, float]:
        val, test = nll_per_sample(self.model, self.val), nll_per_sample(self.model, self.test)
        return {"val_nll": val, "test_nll": test, "test_bits": test / math.log(2.0)}


def train_wavenet(config: WaveNetTrainConfig | None = None, run_dir: Path | str | RunFolder = "runs/wavenet",
                  resume: bool = False) -> WaveNetResult:
    """Fit a WaveNet to the training clips; report the test NLL per sample and the marginal baseline."""
    config = config or WaveNetTrainConfig()
    split = config.split()
    device = resolve_device(config.fit.device)
    seed_everything(config.fit.seed)
    model = config.model.build().to(device)
    objective = WaveNetObjective(model, split, config.batch_size, device)
    start = time.perf_counter()
    result = fit(objective, config.fit, run_dir, resume=resume, desc="wavenet", record=config)
    seconds = time.perf_counter() - start
    test_nll = nll_per_sample(model, objective.test)
    baseline = marginal_entropy(split.codes("test", config.model.levels - 1), config.model.levels)
    return WaveNetResult(model, test_nll, test_nll / math.log(2.0), baseline, baseline / math.log(2.0), seconds,
                         result)


# --- samples and figures ---------------------------------------------------------------------------------


def generate(model: WaveNet, n: int, seconds: float, seed: int = 0, rate: int = RATE,
             temperature: float = 1.0) -> np.ndarray:  # -> [n, T] float32
    """``n`` clips of ``seconds`` drawn with fast generation (seeded), decoded from mu-law to ``[-1, 1]``."""
    with evaluating(model):
        codes = model.sample(n, max(round(seconds * rate), 1), torch.Generator().manual_seed(seed), temperature)
    return mu_law_decode(codes.cpu().numpy(), model.levels - 1)


def write_samples(model: WaveNet, n: int, seconds: float, dir: str | os.PathLike[str], seed: int = 0,
                  rate: int = RATE, temperature: float = 1.0) -> list[Path]:
    """Write ``n`` generated clips of ``seconds`` as ``dir/sample_<i>.wav`` (16-bit PCM at ``rate``)."""
    if n < 1 or seconds <= 0:
        raise ValueError(f"need n >= 1 and seconds > 0, got {n}, {seconds}")
    clips = generate(model, n, seconds, seed, rate, temperature)
    return [write_wav(Path(dir) / f"sample_{i}.wav", clip, rate) for i, clip in enumerate(clips)]


def audio_figure(generated: np.ndarray, real: np.ndarray, rate: int = RATE) -> Figure:
    """Waveforms (first 40 ms) and spectrograms of a generated clip ``[T]`` and a real one ``[T']``."""
    if generated.ndim != 1 or real.ndim != 1:
        raise ValueError(f"generated and real must be mono [T], got {generated.shape}, {real.shape}")
    fig = Figure(figsize=(10, 6), layout="constrained")
    axes = fig.subplots(2, 2)
    for column, (name, clip) in enumerate((("generated", generated), ("real", real))):
        shown = clip[: int(0.04 * rate)]
        axes[0, column].plot(np.arange(len(shown)) / rate * 1000, shown, lw=0.8)
        axes[0, column].set(title=f"{name}: waveform", xlabel="ms", ylim=(-1, 1))
        segment = min(256, len(clip))
        f, t, power = spectrogram(clip, fs=rate, nperseg=segment, noverlap=segment * 3 // 4)
        axes[1, column].pcolormesh(t, f, 10 * np.log10(power + 1e-10), shading="auto", cmap="magma")
        axes[1, column].set(title=f"{name}: spectrogram (dB)", xlabel="s", ylabel="Hz")
    return fig


def wavenet_figures(model: WaveNet, split: AudioSplit, out: str | os.PathLike[str], seconds: float = 0.25,
                    seed: int = 0, temperature: float = 1.0) -> Path:
    """Save the figure of a generated clip vs a test clip to ``out`` (PNG)."""
    generated = generate(model, 1, seconds, seed, split.rate, temperature)[0]
    return save_figure(audio_figure(generated, split.test[0], split.rate), out)


def sample_wavenet(run_dir: Path, config: WaveNetTrainConfig, n: int, out: Path | None, seed: int,
                   seconds: float = 0.5) -> dict[str, Any]:
    """``n`` clips of ``seconds`` from the WaveNet trained in ``run_dir`` as WAV files in ``out`` (default
    RUN/samples), with the waveform and spectrogram of the first beside a real test clip."""
    from generative.training import load_modules

    model = config.model.build()
    load_modules(Path(run_dir), {"model": model})
    folder = Path(out) if out is not None else Path(run_dir) / "samples"
    start = time.perf_counter()
    clips = generate(model.eval(), n, seconds, seed)
    elapsed = time.perf_counter() - start
    paths = [write_wav(folder / f"sample_{i}.wav", clip, RATE) for i, clip in enumerate(clips)]
    figure = save_figure(audio_figure(clips[0], config.split().test[0]), folder / "spectrogram.png")
    return {"n": n, "out": str(folder), "files": [p.name for p in paths], "figure": str(figure),
            "seconds": elapsed, "seconds_per_sample": elapsed / n,
            "tonal_fraction": [round(tonal_fraction(clip, RATE), 3) for clip in clips]}
