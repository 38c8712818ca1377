"""``make demo``'s sections for notes §8-10, trained live: flows, GANs, diffusion, and one comparison of every model.

* §8 normalizing flows: a RealNVP on two 2-D toys, its density beside the true one;
* §9 GANs: mode coverage on the 25-Gaussian grid, the vanilla (minimax) GAN against the unrolled GAN;
* §10 diffusion: DDPM on the two moons, the reverse process as a video of particles flowing from noise;
* §10.6 the comparison table of ``python -m generative compare`` (``generative.compare``) on the digits: every
  family with the Gaussian-mixture and noisy-training-set baselines, at a reduced budget (``--full``: all rows at
  their full budgets).

Each section writes into its own folder of ``args.out`` with a ``section.json`` (``envs.io.page``).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from envs.io.figures import PALETTE, save_figure
from envs.io.page import Item, write_section
from generative.compare import CompareCommand, available_rows, run_compare
from generative.demo import section_command
from generative.training import FitConfig

Say = Callable[[str], None]
COMPARE_ROWS = ("test-images", "gmm-50", "train+noise", "glow", "dcgan", "ddim-50")
"""The rows of the demo's reduced comparison (``--full``: every row)."""


def _fit(fit: FitConfig, args: Any, steps: int | None) -> FitConfig:
    changes: dict[str, Any] = {"progress": args.progress, "threads": args.threads}
    if not args.full and steps is not None:
        changes["steps"] = steps
    return dataclasses.replace(fit, **changes)


def flows_section(args: Any, folder: Path, say: Say) -> dict[str, Any]:
    """§8: a RealNVP fitted to two toys; learned density beside the true one."""
    from generative.tasks.toy_flows import ToyFlowTrainConfig, density_figure, train_toy_flow

    items: list[Item] = []
    summary: dict[str, Any] = {}
    for toy in ("moons", "8gaussians"):
        say(f"generative demo: §8 RealNVP on {toy}")
        config = ToyFlowTrainConfig(toy=toy)
        config = dataclasses.replace(config, fit=_fit(config.fit, args, args.flow_steps))
        result = train_toy_flow(config, folder / "runs" / toy)
        save_figure(density_figure(result.model, toy), folder / f"{toy}.png")
        summary[toy] = {"test_nll": result.test_nll, "true_nll": result.true_nll, "gaussian_nll": result.gaussian_nll}
        items.append({"kind": "image", "file": f"{toy}.png", "caption": (
            f"RealNVP ({config.model.couplings} affine couplings, {config.fit.steps} steps) on {toy}: its density "
            f"beside the true one. Test NLL {result.test_nll:.2f} nats per point; the true density scores "
            f"{result.true_nll:.2f} (the best possible) and a fitted Gaussian {result.gaussian_nll:.2f}.")})
    write_section(folder, "8", "Normalizing flows (notes §8)", (
        "Exact likelihood by the change of variables: coupling layers whose log-determinants are cheap, composed. "
        "The image flows (NICE, RealNVP, Glow) are in the comparison of §10.6."), items,
        command=section_command(args, "flows"))
    return summary


def modes_figure(samples: dict[str, np.ndarray], data: str, modes: dict[str, float]) -> Figure:
    """Each GAN's samples ``[N, 2]`` (the palette's learned colour) over the true density of the toy ``data``
    (shaded), one panel each, titled with the modes it covers."""
    import torch

    from generative.data.toys import log_density

    grid = torch.linspace(-3, 3, 200)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    density = log_density(data, torch.stack([xx.flatten(), yy.flatten()], 1)).exp().view(200, 200).numpy()
    fig = Figure(figsize=(4.3 * len(samples), 4.6), layout="constrained")
    for ax, (name, x) in zip(np.atleast_1d(fig.subplots(1, len(samples))), samples.items()):
        ax.imshow(density, extent=(-3, 3, -3, 3), origin="lower", cmap="Greys")
        ax.scatter(x[:, 0], x[:, 1], s=4, color=PALETTE.learned, alpha=0.6, linewidths=0)
        ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", title=f"{name}: {modes[name]:.0f} of 25 modes")
    return fig


def gans_section(args: Any, folder: Path, say: Say) -> dict[str, Any]:
    """§9: vanilla vs unrolled GAN on the 25-Gaussian grid; modes covered and high-quality samples."""
    import torch

    from generative.tasks.gan import load_gan, mode_experiment_config, sample_gan, train_gan

    samples, summary = {}, {}
    for name in ("minimax", "non-saturating", "unrolled-5"):
        say(f"generative demo: §9 {name} GAN on the 25-Gaussian grid")
        config = mode_experiment_config(name, data="25gaussians", steps=args.gan_steps, threads=args.threads)
        config = dataclasses.replace(config, fit=dataclasses.replace(config.fit, progress=args.progress))
        result = train_gan(config, folder / "runs" / name)
        drawn = sample_gan(folder / "runs" / name, config, 2500, folder / f"{name}.png", seed=0)
        with torch.no_grad():  # the same draws as sample_gan's (seed 0), for one figure of all three
            z = torch.randn(2500, config.latent_dim, generator=torch.Generator().manual_seed(0))
            samples[name] = load_gan(folder / "runs" / name, config)(z).numpy()
        summary[name] = {"modes": drawn["modes"], "high_quality_fraction": drawn["high_quality_fraction"],
                         "seconds": result.train_seconds}
    s = summary
    save_figure(modes_figure(samples, "25gaussians", {name: s[name]["modes"] for name in samples}),
                folder / "modes.png", wide=True)
    items: list[Item] = [{"kind": "image", "file": "modes.png", "wide": True, "caption": (
        f"2500 samples of each GAN after {args.gan_steps} steps over the 25 Gaussians (std 0.1): modes covered "
        f"(a quarter of their fair share of samples within 3 std) {s['minimax']['modes']:.0f} (minimax), "
        f"{s['non-saturating']['modes']:.0f} (non-saturating) and {s['unrolled-5']['modes']:.0f} (unrolled, k = 5: "
        "the generator's loss through 5 discriminator steps). Over 5 seeds and 1000 steps (benchmarks/README.md) the "
        "unrolled GAN covers about 21 of 25 modes and the others 6-10.")}]
    write_section(folder, "9", "Generative adversarial networks (notes §9)", (
        "Sample quality without a likelihood, and its failure mode: mode collapse. The DCGAN on the digits is in the "
        "comparison of §10.6."), items, command=section_command(args, "gans"))
    return summary


def diffusion_section(args: Any, folder: Path, say: Say) -> dict[str, Any]:
    """§10: DDPM on the two moons; the reverse process as a video."""
    from generative.models.diffusion_unet import NoiseNetConfig
    from generative.tasks.diffusion import (
        VECTOR_FIT,
        DiffusionTrainConfig,
        sample_diffusion,
        toy_video,
        train_diffusion,
    )

    say("generative demo: §10 DDPM on the two moons")
    config = DiffusionTrainConfig(data="moons", batch_size=256, net=NoiseNetConfig(), fit=VECTOR_FIT)
    config = dataclasses.replace(config, fit=_fit(config.fit, args, args.diffusion_toy_steps))
    run = folder / "runs" / "moons"
    result = train_diffusion(config, run, desc="ddpm-moons")
    sample_diffusion(run, config, 2000, folder / "moons.png", seed=0)
    toy_video(run, config, folder / "moons.mp4")
    items: list[Item] = [
        {"kind": "video", "file": "moons.mp4", "caption": (
            f"2000 particles of the reverse process (Algorithm 3, {config.T} steps) of a DDPM trained for "
            f"{config.fit.steps} steps: Gaussian noise flows onto the two moons.")},
        {"kind": "image", "file": "moons.png", "caption": (
            f"Samples over the true density; their mean true log-density (DDIM, 50 steps) is "
            f"{result.toy_log_density:.2f} nats.")}]
    write_section(folder, "10", "Diffusion models (notes §10)", (
        "Many small denoising steps from noise to data. The DDPM, its DDIM sampler and latent diffusion on the digits "
        "are in the comparison of §10.6."), items, command=section_command(args, "diffusion"))
    return {"moons_log_density": result.toy_log_density, "seconds": result.train_seconds}


def run_generators_demo(args: Any, say: Say) -> dict[str, Any]:
    """Write the §8, §9, §10 and §10.6 sections (those of ``args.only``, if any) into ``args.out``; returns their
    numbers."""
    folders = {name: args.out / name for name in ("flows", "gans", "diffusion", "compare") if args.selected(name)}
    for folder in folders.values():
        for owned in ("runs", "table"):  # the demo owns its run folders: a re-run starts them afresh
            if (folder / owned).exists():
                shutil.rmtree(folder / owned)
    start = time.perf_counter()
    sections = {"flows": flows_section, "gans": gans_section, "diffusion": diffusion_section}
    summary: dict[str, Any] = {name: run(args, folders[name], say) for name, run in sections.items() if name in folders}
    if "compare" in folders:
        say("generative demo: §10.6 every model on the digits")
        rows = available_rows() if args.full else list(COMPARE_ROWS)
        compare = CompareCommand(out=folders["compare"] / "table", rows=rows,
                                 scale=1.0 if args.full else args.compare_scale,
                                 min_steps=0 if args.full else args.compare_min_steps, threads=args.threads,
                                 fdd_samples=1000 if args.full else args.compare_fdd_samples, progress=args.progress)
        measured = run_compare(compare, page_folder=folders["compare"], page_command=section_command(args, "compare"))
        summary["compare"] = {r.name: {"bits_per_dim": r.bits_per_dim, "fdd": r.fdd} for r in measured}
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary
