"""The procedural 8 kHz audio (notes §7.5): the signals have the frequencies they claim, mu-law companding is
the G.711 / WaveNet formula (endpoints, monotone, round trip within the quantisation step), the split is fixed,
and WAV files are written atomically and read back."""

import numpy as np
import pytest
import torch

from envs.io.files import TEMP_MARK
from generative.data.audio import (
    MU,
    RATE,
    audio_split,
    chirp,
    chirp_phase,
    envelope,
    marginal_entropy,
    mu_law_compress,
    mu_law_decode,
    mu_law_encode,
    mu_law_expand,
    random_clip,
    random_clips,
    read_wav,
    tonal_fraction,
    tone,
    write_wav,
)


def _peak_frequency(x: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def test_tone_has_its_frequency_harmonics_and_amplitude():
    x = tone(8000, 440.0, amplitude=0.5)
    assert _peak_frequency(x) == pytest.approx(440.0, abs=1.0)
    assert np.abs(x).max() == pytest.approx(0.5, rel=1e-3)
    rich = tone(8000, 300.0, amplitude=0.8, harmonics=(0.5,))
    spectrum = np.abs(np.fft.rfft(rich))  # 1 s at 8 kHz: bin k is k Hz
    assert spectrum[600] / spectrum[300] == pytest.approx(0.5, rel=1e-3)
    assert np.abs(rich).max() <= 0.8 + 1e-9
    with pytest.raises(ValueError, match="Nyquist"):
        tone(10, 4000.0)


def test_chirp_phase_is_the_integral_of_the_sweep():
    t = np.linspace(0.0, 0.5, 20001)
    for sweep, f in (("linear", 200 + (1200 - 200) * t / 0.5), ("exponential", 200 * (1200 / 200) ** (t / 0.5))):
        phase = chirp_phase(t, 200.0, 1200.0, 0.5, sweep)
        assert np.gradient(phase, t)[1:-1] == pytest.approx(2 * np.pi * f[1:-1], rel=1e-4)
        assert phase[0] == 0.0
    x = chirp(4000, 200.0, 1200.0, sweep="linear")
    assert _peak_frequency(x[:800]) < 400 and _peak_frequency(x[-800:]) > 1000


def test_envelope_attack_and_decay():
    env = envelope(8000, attack=0.01, decay=0.1)
    assert env[0] == 0.0 and env[80] == pytest.approx(1.0)
    assert env[80 + 800] == pytest.approx(np.exp(-1.0), rel=1e-6)  # one time constant after the attack


def test_mu_law_endpoints_monotone_and_round_trip():
    assert mu_law_encode(np.array([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]
    assert mu_law_decode(np.array([0, 255])).tolist() == [-1.0, 1.0]
    assert mu_law_encode(np.array([-3.0, 3.0])).tolist() == [0, 255]  # clipped
    x = np.linspace(-1.0, 1.0, 100_001)
    q = mu_law_encode(x)
    assert q.dtype == np.int64 and q.min() == 0 and q.max() == MU
    assert np.all(np.diff(q) >= 0) and np.all(np.diff(mu_law_decode(np.arange(256))) > 0)
    assert np.array_equal(mu_law_encode(mu_law_decode(np.arange(256))), np.arange(256))
    # F and F^-1 are exact inverses, and F is the WaveNet formula
    assert mu_law_expand(mu_law_compress(x)) == pytest.approx(x, abs=1e-12)
    assert mu_law_compress(np.array([0.5]))[0] == pytest.approx(np.log(1 + 255 * 0.5) / np.log(256))
    # round trip error: x lies in its level's cell [F^-1(y_q - 1/mu), F^-1(y_q + 1/mu)]
    y_q = 2.0 * q / MU - 1.0
    lower, upper = mu_law_expand(np.clip(y_q - 1 / MU, -1, 1)), mu_law_expand(np.clip(y_q + 1 / MU, -1, 1))
    error = np.abs(mu_law_decode(q) - x)
    assert np.all(error <= np.maximum(upper - mu_law_decode(q), mu_law_decode(q) - lower) + 1e-6)
    assert error[np.abs(x) < 0.01].max() < 5e-4 and 0.02 < error.max() < 0.025  # fine steps near 0, coarse near 1
    with pytest.raises(ValueError, match="q must hold levels"):
        mu_law_decode(np.array([256]))


def test_marginal_entropy():
    assert marginal_entropy(np.array([3, 3, 3])) == 0.0
    assert marginal_entropy(np.arange(256)) == pytest.approx(np.log(256))


def test_clips_are_seeded_and_bounded():
    a = random_clips(6, 300, np.random.default_rng(1))
    b = random_clips(6, 300, np.random.default_rng(1))
    c = random_clips(6, 300, torch.Generator().manual_seed(1))
    assert a.shape == (6, 300) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(c, random_clips(6, 300, torch.Generator().manual_seed(1)))
    for kind in ("tone", "chirp", "mixture"):
        peak = np.abs(random_clip(400, np.random.default_rng(2), kind)).max()
        assert 0.2 - 1e-6 <= peak <= 0.9 + 1e-6
    with pytest.raises(ValueError, match="kind"):
        random_clip(10, np.random.default_rng(0), "noise")  # type: ignore[arg-type]


def test_split_is_fixed_and_held_out_parts_do_not_depend_on_the_seed():
    a, b, c = audio_split(8, 4, 6, 256, seed=0), audio_split(8, 4, 6, 256, seed=0), audio_split(8, 4, 6, 256, seed=1)
    assert a.train.shape == (8, 256) and a.val.shape == (4, 256) and a.test.shape == (6, 256) and a.rate == RATE
    assert np.array_equal(a.train, b.train) and not np.array_equal(a.train, c.train)
    assert np.array_equal(a.test, c.test) and np.array_equal(a.val, c.val)
    assert not np.isin(a.test[:, 100], a.train[:, 100]).any()
    assert a.codes("test").dtype == np.int64 and a.codes("test").shape == (6, 256)


def test_write_wav_round_trip_and_atomic(tmp_path):
    x = tone(800, 500.0, 0.7)
    path = write_wav(tmp_path / "sub" / "a.wav", x)
    back, rate = read_wav(path)
    assert rate == RATE and back.shape == x.shape
    assert np.abs(back - x).max() <= 1 / 32767
    assert not list(tmp_path.rglob(f"*{TEMP_MARK}*"))
    with pytest.raises(ValueError, match="mono"):
        write_wav(tmp_path / "b.wav", np.zeros((2, 10)))


def test_steady_tones_keep_their_amplitude_and_the_split_draws_one_kind():
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = random_clip(2000, rng, "steady")
        peaks = np.abs(x.reshape(10, 200)).max(1)  # 200 samples = 25 ms: a period of every tone >= 110 Hz
        assert peaks.min() > 0.9 * peaks.max()  # no attack/decay envelope
        assert tonal_fraction(x) > 0.6  # harmonics hold at most 1/3 of the amplitude
    split = audio_split(6, 2, 4, 1024, kind="steady")
    assert all(tonal_fraction(c) > 0.6 for c in np.concatenate([split.train, split.val, split.test]))
    assert not np.array_equal(split.test, audio_split(6, 2, 4, 1024).test)


def test_tonal_fraction_of_a_tone_noise_and_silence():
    assert tonal_fraction(tone(8000, 440.0)) > 0.99
    assert tonal_fraction(tone(8000, 300.0, harmonics=(0.5,))) == pytest.approx(1 / 1.25, abs=0.01)  # 1 : 0.5^2
    noise = np.random.default_rng(0).standard_normal(8000)
    assert tonal_fraction(noise) < 3 * 41 / 4001  # ~41 of the 4001 bins for white noise
    assert tonal_fraction(np.zeros(100)) == 0.0
    with pytest.raises(ValueError, match="mono"):
        tonal_fraction(np.zeros((2, 10)))
