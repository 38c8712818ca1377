"""Procedural audio at 8 kHz for WaveNet (notes §7.5): tones, chirps and their mixtures, and mu-law codes.

Every clip is drawn from a seeded ``numpy.random.Generator`` (or a ``torch.Generator``, whose seed draw
seeds one), so the same seed gives the same samples:

* a *tone*: ``a sum_k a_k sin(2 pi k f t + phase_k)``, a fundamental ``f`` with optional harmonics ``k = 2, 3, ...``
  of decaying amplitude, shaped by an attack/decay envelope half of the time; a *steady* tone never is (its
  amplitude stays constant, so a model trained on it continues a tone for as long as it is asked to);
* a *chirp*: a sine whose instantaneous frequency sweeps from ``f0`` to ``f1`` linearly,
  ``f(t) = f0 + (f1 - f0) t / D``, or exponentially, ``f(t) = f0 (f1 / f0)^(t / D)``; the phase is the
  integral ``2 pi int_0^t f(s) ds`` in closed form (:func:`chirp_phase`);
* a *mixture*: the sum of two or three of those, rescaled to the clip's peak amplitude.

WaveNet models 8-bit mu-law codes (van den Oord et al. 2016, §2.2; ITU-T G.711's continuous mu-law):
``F(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)`` maps ``[-1, 1]`` onto ``[-1, 1]`` with fine steps near 0,
then ``F`` is quantised to ``mu + 1 = 256`` levels; :func:`mu_law_decode` inverts both up to the step.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from scipy.io import wavfile

from envs.io.files import atomic_path

RATE = 8000
"""Samples per second of every clip."""
MU = 255
"""The mu of the 8-bit mu-law: 256 levels."""
TEST_SEED = 20_240_705
"""Seed of the fixed validation and test clips (the training clips use ``seed``)."""

Kind = Literal["tone", "steady", "chirp", "mixture"]
Sweep = Literal["linear", "exponential"]


# ---------------------------------------------------------------------- signals (pure functions)
def envelope(n: int, attack: float, decay: float, rate: int = RATE) -> np.ndarray:  # -> [n]
    """Linear attack over ``attack`` seconds to 1, then exponential decay with time constant ``decay`` s."""
    if n < 0 or attack < 0 or decay <= 0:
        raise ValueError(f"need n >= 0, attack >= 0 and decay > 0, got {n}, {attack}, {decay}")
    t = np.arange(n) / rate
    rise = np.clip(t / attack, 0.0, 1.0) if attack > 0 else np.ones(n)
    return rise * np.exp(-np.maximum(t - attack, 0.0) / decay)


def tone(n: int, frequency: float, amplitude: float = 0.5, harmonics: tuple[float, ...] = (),
         phase: float = 0.0, rate: int = RATE) -> np.ndarray:  # -> [n] float64
    """``amplitude (sin(2 pi f t + phase) + sum_k h_k sin(2 pi (k + 2) f t + phase)) / (1 + sum_k h_k)``;
    ``harmonics`` are the relative amplitudes of the 2nd, 3rd, ... harmonics (peak stays <= ``amplitude``)."""
    if n < 0 or not 0 < frequency < rate / 2:
        raise ValueError(f"frequency must lie in (0, {rate / 2}) Hz (Nyquist) and n >= 0, got {frequency}, {n}")
    t = np.arange(n) / rate
    wave = np.sin(2 * np.pi * frequency * t + phase)
    for k, h in enumerate(harmonics, start=2):
        if k * frequency < rate / 2:  # harmonics above Nyquist would alias; leave them out
            wave = wave + h * np.sin(2 * np.pi * k * frequency * t + phase)
    return amplitude * wave / (1.0 + sum(abs(h) for h in harmonics))


def chirp_phase(t: np.ndarray, f0: float, f1: float, duration: float, sweep: Sweep = "linear") -> np.ndarray:
    """``2 pi int_0^t f(s) ds`` of the linear or exponential sweep from ``f0`` (t = 0) to ``f1`` (t = duration)."""
    if f0 <= 0 or f1 <= 0 or duration <= 0:
        raise ValueError(f"f0, f1 and duration must be > 0, got {f0}, {f1}, {duration}")
    if sweep == "linear":
        return 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration))
    if sweep == "exponential":
        k = f1 / f0
        if abs(k - 1.0) < 1e-12:
            return 2 * np.pi * f0 * t
        return 2 * np.pi * f0 * duration / math.log(k) * (k ** (t / duration) - 1.0)
    raise ValueError(f"sweep must be 'linear' or 'exponential', got {sweep!r}")


def chirp(n: int, f0: float, f1: float, amplitude: float = 0.5, sweep: Sweep = "linear",
          rate: int = RATE) -> np.ndarray:  # -> [n] float64
    """A sine sweeping from ``f0`` to ``f1`` Hz over the ``n`` samples."""
    if max(f0, f1) >= rate / 2:
        raise ValueError(f"f0 and f1 must stay below Nyquist {rate / 2} Hz, got {f0}, {f1}")
    t = np.arange(n) / rate
    return amplitude * np.sin(chirp_phase(t, f0, f1, max(n, 1) / rate, sweep))


def _random_part(n: int, rng: np.random.Generator, kind: Literal["tone", "steady", "chirp"], rate: int
                 ) -> np.ndarray:
    if kind in ("tone", "steady"):
        f = float(np.exp(rng.uniform(np.log(110.0), np.log(880.0))))  # A2 .. A5, uniform in pitch
        harmonics = tuple(rng.uniform(0.0, 0.6) * 0.5**k for k in range(int(rng.integers(0, 4))))
        wave = tone(n, f, 1.0, harmonics, float(rng.uniform(0, 2 * np.pi)), rate)
        if kind == "tone" and rng.random() < 0.5:
            wave = wave * envelope(n, float(rng.uniform(0.0, 0.02)), float(rng.uniform(0.05, 0.5)), rate)
        return wave
    lo, hi = np.exp(rng.uniform(np.log(110.0), np.log(1760.0), size=2))
    return chirp(n, float(lo), float(hi), 1.0, "linear" if rng.random() < 0.5 else "exponential", rate)


def random_clip(length: int, rng: np.random.Generator, kind: Kind | None = None, rate: int = RATE
                ) -> np.ndarray:  # -> [length] float32 in [-1, 1]
    """One clip of ``length`` samples: a tone, a steady tone, a chirp or a mixture (``kind=None``: a tone, a chirp
    or a mixture, each with probability 1/3), scaled to a peak amplitude drawn uniformly from ``[0.2, 0.9]``."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    kind = kind or ("tone", "chirp", "mixture")[int(rng.integers(0, 3))]
    if kind == "mixture":
        parts = int(rng.integers(2, 4))
        wave = sum(_random_part(length, rng, "tone" if rng.random() < 0.6 else "chirp", rate) for _ in range(parts))
    elif kind in ("tone", "steady", "chirp"):
        wave = _random_part(length, rng, kind, rate)
    else:
        raise ValueError(f"kind must be 'tone', 'steady', 'chirp', 'mixture' or None, got {kind!r}")
    peak = float(np.max(np.abs(wave)))
    scale = rng.uniform(0.2, 0.9) / peak if peak > 0 else 0.0
    return (wave * scale).astype(np.float32)


def random_clips(n: int, length: int, rng: np.random.Generator | torch.Generator, kind: Kind | None = None,
                 rate: int = RATE) -> np.ndarray:  # -> [n, length] float32
    """``n`` clips (:func:`random_clip`); a ``torch.Generator`` seeds the numpy generator with one draw."""
    if isinstance(rng, torch.Generator):
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng)))
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return np.stack([random_clip(length, rng, kind, rate) for _ in range(n)]) if n else np.zeros((0, length), np.float32)


# ---------------------------------------------------------------------- mu-law
def mu_law_compress(x: np.ndarray, mu: int = MU) -> np.ndarray:  # [*S] in [-1, 1] -> [*S] in [-1, 1]
    """The continuous mu-law ``F(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)``."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)


def mu_law_expand(y: np.ndarray, mu: int = MU) -> np.ndarray:  # [*S] in [-1, 1] -> [*S] in [-1, 1]
    """The inverse of :func:`mu_law_compress`: ``F^-1(y) = sign(y) ((1 + mu)^|y| - 1) / mu``."""
    y = np.asarray(y, dtype=np.float64)
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu


def mu_law_encode(x: np.ndarray, mu: int = MU) -> np.ndarray:  # [*S] float in [-1, 1] -> [*S] int64 0..mu
    """Quantise ``F(x)`` to the nearest of ``mu + 1`` levels: ``q = round((F(x) + 1) mu / 2)``; values outside
    ``[-1, 1]`` are clipped."""
    if mu < 1:
        raise ValueError(f"mu must be >= 1, got {mu}")
    y = mu_law_compress(np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0), mu)
    return np.clip(np.floor((y + 1.0) * mu / 2.0 + 0.5), 0, mu).astype(np.int64)


def mu_law_decode(q: np.ndarray, mu: int = MU) -> np.ndarray:  # [*S] int 0..mu -> [*S] float32 in [-1, 1]
    """The amplitude of level ``q``: ``F^-1(2 q / mu - 1)``; 0 -> -1, mu -> 1."""
    q = np.asarray(q)
    if q.size and (q.min() < 0 or q.max() > mu):
        raise ValueError(f"q must hold levels 0..{mu}, got range {q.min()}..{q.max()}")
    return mu_law_expand(2.0 * q / mu - 1.0, mu).astype(np.float32)


def marginal_entropy(q: np.ndarray, levels: int = MU + 1) -> float:  # q: [*S] int64 -> nats per sample
    """Entropy ``-sum_k p_k ln p_k`` of the levels' histogram: the NLL of the best model without context."""
    counts = np.bincount(np.asarray(q).ravel(), minlength=levels).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def tonal_fraction(x: np.ndarray, rate: int = RATE, bandwidth: float = 20.0) -> float:  # x: [T] -> in [0, 1]
    """Share of the power of a clip (mean removed, Hann window) within ``bandwidth`` Hz of its main spectral peak:
    near 1 for a steady tone, about ``(2 bandwidth + 1 / duration) / (rate / 2)`` for white noise; how tonal a
    generated clip is."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2:
        raise ValueError(f"x must be mono [T] with T >= 2, got shape {x.shape}")
    power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)))) ** 2
    if power.sum() <= 0:
        return 0.0
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return float(power[np.abs(f - f[np.argmax(power)]) <= bandwidth].sum() / power.sum())


# ---------------------------------------------------------------------- files and the split
def write_wav(path: str | os.PathLike[str], samples: np.ndarray, rate: int = RATE) -> Path:
    """Write mono float samples ``[T]`` in ``[-1, 1]`` as 16-bit PCM WAV (``scipy.io.wavfile``), atomically."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"samples must be mono [T], got shape {samples.shape}")
    if rate < 1:
        raise ValueError(f"rate must be >= 1, got {rate}")
    pcm = np.round(np.clip(samples.astype(np.float64), -1.0, 1.0) * 32767).astype(np.int16)
    path = Path(path)
    with atomic_path(path) as tmp:
        wavfile.write(tmp, rate, pcm)
    return path


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:  # -> ([T] float32 in [-1, 1], rate)
    """Read a mono 16-bit PCM WAV written by :func:`write_wav`."""
    rate, pcm = wavfile.read(Path(path))
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"{path}: expected mono 16-bit PCM, got {pcm.dtype} with shape {pcm.shape}")
    return (pcm.astype(np.float32) / 32767).astype(np.float32), int(rate)


class AudioSplit(NamedTuple):
    """Train / validation / test clips ``[N, T]`` float32 in ``[-1, 1]`` at ``rate`` Hz."""

    train: np.ndarray  # [N_train, T]
    val: np.ndarray  # [N_val, T]
    test: np.ndarray  # [N_test, T]
    rate: int

    def codes(self, part: Literal["train", "val", "test"], mu: int = MU) -> np.ndarray:  # -> [N, T] int64
        """The mu-law codes of one part."""
        return mu_law_encode(getattr(self, part), mu)


def audio_split(n_train: int = 1024, n_val: int = 64, n_test: int = 128, length: int = 1024, seed: int = 0,
                rate: int = RATE, kind: Kind | None = None) -> AudioSplit:
    """The fixed clips of one ``kind`` (``None``: the mix of :func:`random_clip`): training clips from ``seed``;
    validation and test clips from :data:`TEST_SEED` (the same for every ``seed``, so every model of a kind is
    compared on the same test clips)."""
    if min(n_train, n_val, n_test) < 0 or length < 1:
        raise ValueError(f"need clip counts >= 0 and length >= 1, got {n_train}, {n_val}, {n_test}, {length}")
    held_out = random_clips(n_val + n_test, length, np.random.default_rng(TEST_SEED + length), kind, rate)
    train = random_clips(n_train, length, np.random.default_rng([seed, length]), kind, rate)
    return AudioSplit(train, held_out[:n_val], held_out[n_val:], rate)
