"""``make demo``'s sections for notes §6-7: autoencoders and VAEs, and the autoregressive models, trained live.

§7 (``OUT/autoregressive``): the likelihood table of every model on the binary 8x8 digits
(``generative.table``, each model at ``table_scale`` of its steps unless ``--full``), the sample grid of
each, the time to draw one sample (MADE's n passes, PixelCNN vs the gated one, the transformer with and
without its key-value cache, Pixel-RNN), WaveNet's generated audio with its spectrogram, and the VRNN's
pen strokes beside a plain RNN's.

§6 (``OUT/autoencoders``): the linear autoencoder against PCA, denoising and inpainting reconstructions,
and the VAE of the table: samples, interpolation, the 2-D latent map, traversals, and the KL per latent
dimension for beta = 1 and beta = 4.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import torch

from envs.io.figures import image_grid, save_figure
from envs.io.page import Item, write_section
from generative.data.digits import load_digits_split
from generative.demo import section_command
from generative.models.autoencoders import fit_linear_autoencoder, pca, principal_angles, reconstruction_error
from generative.table import TABLE_MODELS, Row, TableCommand, run_table
from generative.tasks.density import load_density

Say = Callable[[str], None]


def _fit(config: Any, args: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, fit=dataclasses.replace(config.fit, progress=args.progress, threads=args.threads,
                                                               **changes))


def table_item(rows: list[Row], scale: float, file: str, min_steps: int = 0) -> Item:
    """The likelihood table as a page item."""
    columns = ["model", "test NLL (nats)", "bits/dim", "-ELBO", "parameters", "steps (best)", "train s",
               "sample s / 64", "FDD", "NN distance (test)"]
    cells = [[r.model, f"{r.test_nll:.2f}", f"{r.bits_per_dim:.4f}", "" if math.isnan(r.elbo_nll) else f"{r.elbo_nll:.2f}",
              f"{r.parameters:,}", f"{r.steps} ({r.best_step})", f"{r.train_seconds:.0f}", f"{r.sample_seconds:.3f}",
              f"{r.fdd:.1f}", f"{r.nn_distance:.2f} ({r.test_nn_distance:.2f})"] for r in rows]
    best = min(rows, key=lambda r: r.test_nll)
    budget = "full budgets" if scale >= 1 else f"{scale:.0%} of each model's steps, at least {min_steps}, live"
    return {"kind": "table", "file": file, "columns": columns, "rows": cells, "caption": (
        f"Test NLL of every likelihood model on the 360 binary test digits ({budget}; the full table is in "
        f"benchmarks/README.md): exact for the autoregressive models, the IWAE bound (k = 1000) for the VAEs with the "
        f"negative ELBO beside it. Best here: {best.model}, {best.test_nll:.2f} nats. FDD: Frechet digit distance of "
        "samples to the training digits; NN distance: mean Hamming distance of samples to their nearest "
        "training digit (in brackets, that of real test digits: samples much closer would be copies).")}


def samples_item(rows: list[Row], samples: Path, folder: Path) -> Item:
    """One figure with every model's 64-sample grid."""
    images = [iio.imread(samples / f"{r.model}.png") for r in rows]
    titles = [f"{r.model}\n{r.test_nll:.2f} nats" for r in rows]
    save_figure(image_grid(images, titles, columns=5, cell=2.4, cmap="gray", fontsize=10), folder / "samples.png",
                wide=True)
    return {"kind": "image", "file": "samples.png", "wide": True, "caption": (
        "64 samples of each model (seeded), with its test NLL: independent pixels draw noise in the shape of the "
        "mean digit; every autoregressive model draws strokes, each pixel given the ones before it.")}


def sampling_times(runs: Path, names: list[str], n: int = 64) -> list[list[str]]:
    """Seconds per sample (batches of ``n``) of the table's models; the transformer also without its cache."""
    rows = []
    from generative.commands import trained_config

    for name in names:
        model, _ = load_density(runs / name, trained_config(runs / name)[1])
        variants = [("", {})] + ([(" (no KV cache)", {"cache": False})] if name == "transformer" else [])
        for suffix, options in variants:
            generator = torch.Generator().manual_seed(0)
            start = time.perf_counter()
            with torch.no_grad():
                model.sample(n, generator, **options)
            rows.append([name + suffix, f"{(time.perf_counter() - start) / n * 1000:.2f}"])
    return rows


def autoregressive_section(args: Any, folder: Path, say: Say) -> dict[str, Any]:
    """§7: the table, sample grids, sampling times, WaveNet and the VRNN."""
    from generative.tasks.audio import WaveNetTrainConfig, audio_figure, generate, train_wavenet
    from generative.tasks.strokes import (
        StrokeRNNTrainConfig,
        VRNNTrainConfig,
        sampled_strokes_figure,
        train_stroke_rnn,
        train_vrnn,
    )

    scale = 1.0 if args.full else args.table_scale
    say(f"generative demo: §6-7 likelihood table ({scale:.0%} of each model's steps)")
    min_steps = 0 if args.full else args.table_min_steps
    rows = run_table(TableCommand(out=folder / "table", scale=scale, threads=args.threads, progress=args.progress,
                                  min_steps=min_steps, fdd_samples=1000 if args.full else args.table_fdd_samples))
    items: list[Item] = [table_item(rows, scale, "table/table.md", min_steps), samples_item(rows, folder / "table" / "samples", folder)]
    timed = [m for m in ("made", "pixelcnn", "gated-pixelcnn", "pixel-rnn", "transformer") if m in TABLE_MODELS]
    items.append({"kind": "table", "file": "table/table.json", "columns": ["model", "ms per sample (batch of 64)"],
                  "rows": sampling_times(folder / "table" / "runs", timed), "caption": (
        "Drawing a sample takes one network pass per pixel for every autoregressive model (notes §7.3, footnote 14); "
        "the transformer's key-value cache makes each pass cost one position instead of the whole prefix.")})

    say("generative demo: §7.5 WaveNet on procedural audio")
    wave_config = _fit(WaveNetTrainConfig(), args, **({} if args.full else {"steps": args.wavenet_steps}))
    wavenet = train_wavenet(wave_config, folder / "runs" / "wavenet")
    clip = generate(wavenet.model, 1, 1.0, seed=0)[0]
    from generative.data.audio import RATE, write_wav

    write_wav(folder / "wavenet_sample.wav", clip, RATE)
    save_figure(audio_figure(clip, wave_config.split().test[0]), folder / "wavenet.png")
    items += [
        {"kind": "image", "file": "wavenet.png", "caption": (
            f"WaveNet (notes §7.5: dilated causal convolutions, receptive field {wavenet.model.receptive_field} samples, "
            f"gated units, residual and skip connections) after {wave_config.fit.steps} steps: test NLL "
            f"{wavenet.test_bits:.2f} bits per sample against {wavenet.baseline_bits:.2f} for the level histogram alone. "
            "Waveform and spectrogram of a generated second of audio beside a real clip of tones and chirps.")},
        {"kind": "audio", "file": "wavenet_sample.wav", "caption": "The generated second, 8 kHz, mu-law decoded."},
    ]

    say("generative demo: §7.6 variational RNN vs RNN on pen strokes")
    steps = {} if args.full else {"steps": args.stroke_steps}
    vrnn = train_vrnn(_fit(VRNNTrainConfig(), args, **steps), folder / "runs" / "vrnn")
    rnn = train_stroke_rnn(_fit(StrokeRNNTrainConfig(), args, **steps), folder / "runs" / "stroke_rnn")
    figure = sampled_strokes_figure({"VRNN": vrnn.model, "RNN": rnn.model}, VRNNTrainConfig().data.split())
    save_figure(figure, folder / "strokes.png", wide=True)
    items.append({"kind": "image", "file": "strokes.png", "wide": True, "caption": (
        f"Pen strokes (dx, dy, pen up) of procedural digits and curves: real test drawings, then samples of the VRNN "
        f"(notes §7.6, Chung et al. 2015: prior, encoder and decoder conditioned on the RNN state) and of a plain RNN "
        f"with the same state size, both after {VRNNTrainConfig().fit.steps if args.full else args.stroke_steps} steps. "
        f"Test log-likelihood per drawing: VRNN ELBO {vrnn.test_score:.1f} nats (IWAE bound {vrnn.test_iwae:.1f}), "
        f"RNN exact {rnn.test_score:.1f} (higher is better; continuous densities, so positive values are possible).")})
    write_section(folder, "7", "Autoregressive models (notes §7)",
                  "Every model of the chapter trained live on data that ships with the package: the 8x8 digits, "
                  "procedural audio and procedural pen strokes (reduced budgets unless `make demo-full`).", items,
                  command=section_command(args, "models"))
    return {"table": {r.model: round(r.test_nll, 3) for r in rows}, "wavenet_bits": wavenet.test_bits,
            "vrnn_elbo": vrnn.test_score, "rnn_log_likelihood": rnn.test_score}


def autoencoder_section(args: Any, folder: Path, runs: Path, say: Say) -> dict[str, Any]:
    """§6: linear AE vs PCA, denoising and inpainting, and the table's VAE and beta-VAE."""
    from generative.commands import trained_config
    from generative.tasks.autoencoders import (
        AEConfig,
        autoencoder_figure,
        kl_figure,
        train_autoencoder,
        vae_figures,
    )

    say("generative demo: §6 autoencoders")
    split = load_digits_split(form="float")
    x_test = torch.from_numpy(split.x_test)
    items: list[Item] = []
    facts: dict[str, Any] = {}
    steps = {} if args.full else {"steps": args.autoencoder_steps}
    for variant in ("linear", "denoising", "inpainting"):
        config = _fit(AEConfig(variant=variant), args, **steps)
        result = train_autoencoder(config, folder / "runs" / variant)
        save_figure(autoencoder_figure(result.model, config, x_test), folder / f"{variant}.png")
        facts[variant] = result.test_mse
        if variant == "linear":
            k = 4  # a clear gap between the 4th and 5th eigenvalues, so the subspace is well defined
            x = torch.from_numpy(split.x_train).double()
            exact = fit_linear_autoencoder(x, k)
            _, components, eigenvalues = pca(x.flatten(1), k)
            angle = float(principal_angles(exact.B.detach(), components).max())
            with torch.no_grad():
                error = float(reconstruction_error(x, exact(x)).mean())
            optimum = float(eigenvalues[k:].sum())
            caption = (f"Linear autoencoder (notes §6.1) with k = {config.latent_size}, trained on minibatches for "
                       f"{config.fit.steps} steps: test digits and reconstructions (error per pixel {result.test_mse:.4f}). "
                       f"Fitted by full-batch gradient descent with k = {k}, its decoder spans the top-{k} PCA subspace "
                       f"(largest principal angle {angle:.1e} rad) and its error per image, {error:.4f}, equals the sum "
                       f"of the discarded eigenvalues, {optimum:.4f}: the best any rank-{k} map can do.")
            facts["linear_angle"], facts["linear_error_over_optimum"] = angle, error / optimum
        else:
            caption = (f"{variant.title()} autoencoder (notes §6.2, overcomplete: {config.latent_size} latent units for "
                       f"64 pixels): test digits, the corrupted input, the output. Error per pixel against the clean "
                       f"digit: {result.test_mse_corrupted:.4f}, against {result.baseline_mse:.4f} for the corrupted "
                       "input itself.")
        items.append({"kind": "image", "file": f"{variant}.png", "caption": caption})

    say("generative demo: §6.3-6.4 VAE figures")
    binary = load_digits_split(form="binary")
    xb, yb = torch.from_numpy(binary.x_test), binary.y_test
    kls = {}
    for name in ("vae", "beta-vae"):
        model, _ = load_density(runs / name, trained_config(runs / name)[1])
        with torch.no_grad():
            kls[name] = model.kl_per_dimension(xb)
        if name == "vae":
            figures = vae_figures(model, xb, yb)
            for key in ("samples", "interpolation", "latent_map", "traversals"):
                save_figure(figures[key], folder / f"vae_{key}.png", wide=key == "interpolation")  # a strip
        save_figure(kl_figure(kls[name]), folder / f"{name.replace('-', '_')}_kl.png")
    active = {name: int((kl > 0.01).sum()) for name, kl in kls.items()}
    total = {name: float(kl.sum()) for name, kl in kls.items()}
    items += [
        {"kind": "image", "file": "vae_samples.png", "caption": (
            "VAE (notes §6.3): z ~ N(0, I) through the Bernoulli decoder, its mean and a draw, rows alternating.")},
        {"kind": "image", "file": "vae_interpolation.png", "wide": True, "caption": (
            "Decoder means along the line between the posterior means of two test digits: the latent space is "
            "continuous, every point on the way decodes to a digit-like image.")},
        {"kind": "image", "file": "vae_latent_map.png", "caption": "Posterior means of the test digits, coloured by class."},
        {"kind": "image", "file": "vae_traversals.png", "caption": (
            "Traversals: one latent dimension swept from -3 to 3 per row, the others at a test digit's posterior mean.")},
        {"kind": "image", "file": "vae_kl.png", "caption": (
            f"KL per latent dimension, beta = 1: {active['vae']} active units (> 0.01 nats), total {total['vae']:.1f} nats.")},
        {"kind": "image", "file": "beta_vae_kl.png", "caption": (
            f"beta = 4 (notes §6.4) prices each nat of code four times: {active['beta-vae']} active units, total KL "
            f"{total['beta-vae']:.2f} nats. On 8x8 binary digits, which carry about 17 nats beyond independent pixels, "
            "the price is too high and the posterior collapses to the prior: the beta-VAE's likelihood falls to that "
            "of independent pixels (see the table), the extreme of the trade of reconstruction for a simple code.")},
    ]
    write_section(folder, "6", "Autoencoders and variational autoencoders (notes §6)",
                  "Autoencoders trained live on the 8x8 digits; the VAEs are those of the likelihood table (§7 section).",
                  items, command=section_command(args, "models"))
    facts.update({"active_units": active, "total_kl": total})
    return facts


def run_models_demo(args: Any, say: Say) -> dict[str, Any]:
    """Write the §6 and §7 sections into ``args.out``; returns their numbers."""
    folders = args.out / "autoencoders", args.out / "autoregressive"
    for folder in folders:
        for owned in ("runs", "table"):  # the demo owns its run folders: a re-run starts them afresh
            if (folder / owned).exists():
                shutil.rmtree(folder / owned)
    start = time.perf_counter()
    summary = {"autoregressive": autoregressive_section(args, folders[1], say)}
    summary["autoencoders"] = autoencoder_section(args, folders[0], folders[1] / "table" / "runs", say)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary

