"""``make demo``'s first sections: the neural-network foundation of notes §1-4, then (``generative.demo_models``)
the autoencoders and autoregressive models of §6-7 and (``generative.demo_generators``) the flows, GANs, diffusion
models and the comparison of every model of §8-10, trained live.

The perceptron and an MLP on XOR, universal approximation by one hidden layer (§1); a CNN on
scikit-learn's 8x8 digits (§2); a U-Net segmenting generated shapes (§3); the vanishing and
exploding gradients of the Elman RNN and the LSTM solving the long-range adding problem that the
Elman RNN cannot (§4). The section goes into ``OUT/foundations/`` with a ``section.json``; the page
(:mod:`envs.io.page`) puts it first, in notes order. Budgets are reduced unless ``--full``; ``--only`` runs some
parts, and each section's page shows the command that reproduces it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from envs.io.figures import PALETTE, learning_curves, save_figure
from envs.io.page import Item, command_line, write_index, write_section
from generative.data.digits import load_digits_split
from generative.nn.mlp import XOR_X, XOR_Y, train_xor, universal_approximation, universal_approximation_figure
from generative.nn.perceptron import train_perceptron
from generative.nn.rnn import gradient_norm_experiment, gradient_norm_figure
from generative.tasks.classification import CNNConfig, classifier_figures, train_cnn
from generative.tasks.segmentation import UNetConfig, segmentation_figure, train_unet
from generative.tasks.sequences import LSTMConfig, RNNConfig, train_lstm, train_rnn
from generative.training import set_threads

Part = Literal["foundations", "models", "flows", "gans", "diffusion", "compare"]
"""The demo's parts: §1-4, §6-7 (the VAEs of §6 are the §7 table's), §8, §9, §10, the §10.6 comparison."""


@dataclass
class Demo:
    """Train the models of notes §1-4 and draw what they learned."""

    out: Path = Path("outputs/demo")
    """Folder of the demo page; the section goes into OUT/foundations."""
    unet_steps: int = 500
    """U-Net steps (its full budget is UNetConfig's own)."""
    sequence_steps: int = 1200
    """Steps of the RNN and of the LSTM on the adding problem."""
    sequence_length: int = 50
    """Length T of the adding problem's sequences (>= 50: a long-range task)."""
    table_scale: float = 0.06
    """Fraction of each likelihood model's steps in the §7 table (notes §6-7)."""
    table_min_steps: int = 300
    """At least this many steps per table model (the convolutional and attention models start slowly)."""
    table_fdd_samples: int = 400
    """Samples per model for the table's Frechet digit distance (the full table uses 1000)."""
    wavenet_steps: int = 150
    """WaveNet steps on the procedural audio."""
    stroke_steps: int = 100
    """Steps of the VRNN and of the RNN on the pen strokes."""
    autoencoder_steps: int = 1500
    """Steps of each autoencoder (linear, denoising, inpainting)."""
    flow_steps: int = 800
    """Steps of the RealNVP on each 2-D toy (notes §8)."""
    gan_steps: int = 600
    """Steps of each GAN on the 25-Gaussian grid (notes §9)."""
    diffusion_toy_steps: int = 1500
    """Steps of the DDPM on the two moons (notes §10)."""
    compare_scale: float = 0.05
    """Fraction of each model's steps in the §10.6 comparison."""
    compare_min_steps: int = 200
    """At least this many steps per model of the comparison."""
    compare_fdd_samples: int = 300
    """Samples per model for the comparison's Frechet digit distance (the full one uses 1000)."""
    full: bool = False
    """Train every model with its full default budget instead (``make demo-full``)."""
    threads: int = 1
    """Torch CPU threads (one is the fastest on a busy 2-core machine)."""
    progress: bool = True
    """Show progress bars."""
    only: tuple[Part, ...] = ()
    """Run only these parts (foundations §1-4, models §6-7, flows §8, gans §9, diffusion §10, compare §10.6) and
    keep the other sections on the page; empty: all."""

    def selected(self, part: Part) -> bool:
        """Whether this demo runs ``part``."""
        return not self.only or part in self.only


def section_command(args: Demo, part: Part) -> str:
    """The command that reproduces ``part``'s section: this demo's settings, that part only."""
    return command_line("python -m generative demo", dataclasses.replace(args, only=(part,)))


def _fit_budget(config: Any, progress: bool, threads: int, **changes: Any) -> Any:
    return dataclasses.replace(config, fit=dataclasses.replace(config.fit, progress=progress, threads=threads, **changes))


def perceptron_figure(seed: int = 0) -> tuple[Figure, dict[str, Any]]:
    """Mistakes per epoch of the perceptron rule on separable data and on XOR, and an MLP's XOR map."""
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(60, 2, generator=generator)
    y = (X @ torch.tensor([1.5, -1.0]) + 0.3 > 0).float()
    separable = train_perceptron(X, y, max_epochs=50)
    xor = train_perceptron(XOR_X, XOR_Y, max_epochs=50)
    mlp = train_xor(seed=seed)
    fig = Figure(figsize=(10.5, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot(np.arange(1, separable.epochs + 1), separable.mistakes, "o-", label="60 linearly separable points")
    left.plot(np.arange(1, xor.epochs + 1), xor.mistakes, "s-", label="the 4 XOR points")
    left.set(xlabel="epoch", ylabel="mistakes (updates) in the epoch", title="perceptron rule (notes §1.1)")
    left.legend()
    grid = torch.stack(torch.meshgrid(torch.linspace(-0.5, 1.5, 121), torch.linspace(-0.5, 1.5, 121), indexing="xy"), -1)
    with torch.no_grad():
        p = torch.sigmoid(mlp.model(grid.reshape(-1, 2).float())[:, 0]).reshape(121, 121)
    image = right.imshow(p.numpy(), origin="lower", extent=(-0.5, 1.5, -0.5, 1.5), cmap="coolwarm", vmin=0, vmax=1)
    right.scatter(XOR_X[:, 0], XOR_X[:, 1], c=XOR_Y, cmap="coolwarm", edgecolors="black", s=120, vmin=0, vmax=1)
    right.set(title="MLP with one hidden layer of 8 solves XOR", xlabel="x1", ylabel="x2")
    fig.colorbar(image, ax=right, label="p(y = 1)")
    facts = {"separable_epochs": separable.epochs, "separable_converged": separable.converged,
             "xor_converged": xor.converged, "xor_last_mistakes": xor.mistakes[-1], "mlp_xor_accuracy": mlp.accuracy}
    return fig, facts


def foundations_section(args: Demo, folder: Path, say: Any) -> dict[str, Any]:
    """§1-4: the perceptron and XOR, universal approximation, the CNN, the U-Net, gradients through time and the
    adding problem; returns their numbers."""
    runs = folder / "runs"
    if runs.exists():  # the demo owns its run folders: a re-run starts them afresh
        shutil.rmtree(runs)
    budget = "full" if args.full else "reduced"
    items: list[Item] = []
    summary: dict[str, Any] = {}

    say("generative demo: §1 perceptron, XOR, universal approximation")
    fig, facts = perceptron_figure()
    save_figure(fig, folder / "perceptron.png", wide=True)
    summary["perceptron"] = facts
    items.append({"kind": "image", "file": "perceptron.png", "wide": True, "caption": (
        f"Left: the perceptron rule stops after {facts['separable_epochs']} epochs on separable data (an epoch "
        f"without mistakes), but on XOR every epoch still makes {facts['xor_last_mistakes']} mistakes: no line "
        f"separates it. Right: an MLP's probability map classifies all four XOR points "
        f"({facts['mlp_xor_accuracy']:.0%}).")})
    approximation = universal_approximation("sin")
    save_figure(universal_approximation_figure(approximation), folder / "universal_approximation.png")
    items.append({"kind": "image", "file": "universal_approximation.png", "caption": (
        "Universal approximation (notes §1.5): one hidden layer of n sigmoids fitted to a target on [0, 1]; the "
        f"largest error falls from {approximation.errors[0]:.2f} (n = {approximation.widths[0]}) to "
        f"{approximation.errors[-1]:.4f} (n = {approximation.widths[-1]}).")})

    say("generative demo: §2 CNN on the 8x8 digits")
    cnn_config = _fit_budget(CNNConfig(), args.progress, args.threads)
    cnn = train_cnn(cnn_config, runs / "cnn")
    predictions, confusion = classifier_figures(cnn.model, load_digits_split())
    save_figure(predictions, folder / "cnn_predictions.png")
    save_figure(confusion, folder / "cnn_confusion.png")
    summary["cnn_test_accuracy"] = cnn.test_accuracy
    items += [
        {"kind": "image", "file": "cnn_predictions.png", "caption": (
            f"A CNN (notes §2.2) trained for {cnn_config.fit.steps} steps in {cnn.seconds:.0f} s classifies the 360 "
            f"held-out 8x8 digits with {cnn.test_accuracy:.1%} accuracy; predicted labels over test images, "
            "mistakes marked.")},
        {"kind": "image", "file": "cnn_confusion.png", "caption": "Which digit the CNN took for which, on the test set."},
    ]

    say("generative demo: §3 U-Net on generated shapes")
    unet_config = _fit_budget(UNetConfig(), args.progress, args.threads,
                              **({} if args.full else {"steps": args.unet_steps, "eval_every": 0}))
    unet = train_unet(unet_config, runs / "unet")
    from generative.data.shapes import test_set

    fixed = test_set(unet_config.test_size, unet_config.spec())
    with torch.no_grad():
        unet.model.eval()
        predicted = unet.model.predict(torch.from_numpy(fixed.images[:8])).numpy()
    save_figure(segmentation_figure(fixed.images[:8], fixed.labels[:8], predicted), folder / "unet.png", wide=True)
    summary["unet_mean_iou"] = unet.mean_iou
    items.append({"kind": "image", "file": "unet.png", "wide": True, "caption": (
        f"U-Net (notes §3.2, skips by concatenation, transposed-convolution upsampling) after {unet_config.fit.steps} "
        f"steps ({budget} budget, {unet.seconds:.0f} s): test images, true masks, predicted masks. Mean IoU over the "
        f"four classes on {unet_config.test_size} test images: {unet.mean_iou:.3f} (pixel accuracy "
        f"{unet.pixel_accuracy:.3f}).")})

    say("generative demo: §4 gradients through time, RNN vs LSTM")
    save_figure(gradient_norm_figure(gradient_norm_experiment()), folder / "gradient_norms.png")
    items.append({"kind": "image", "file": "gradient_norms.png", "caption": (
        "||dh_t/dh_0|| of an Elman RNN against t (notes §4.1), for W_h scaled to several largest singular values "
        "sigma_1, with the bound sigma_1^t: below 1 the gradient vanishes; above 1 it may explode (at the rate of "
        "the spectral radius, here with zero input) or still vanish when tanh saturates.")})
    changes = {} if args.full else {"steps": args.sequence_steps}
    sequence = {} if args.full else {"T": args.sequence_length}
    results = {}
    for name, config, trainer in (("rnn", RNNConfig(**sequence), train_rnn), ("lstm", LSTMConfig(**sequence), train_lstm)):
        config = _fit_budget(config, args.progress, args.threads, **changes)
        results[name] = trainer(config, runs / name)
    T = LSTMConfig(**sequence).T
    labels = {"lstm": "LSTM", "rnn": "Elman RNN"}
    curves = {labels[name]: ([r["step"] for r in res.fit.rows], [r["relative_mse"] for r in res.fit.rows])
              for name, res in results.items()}
    save_figure(learning_curves(curves, window=1, xlabel="step", ylabel="training MSE / baseline MSE", logy=True,
                                title=f"The adding problem, T = {T}: sum of two marked values",
                                colors={"LSTM": PALETTE.learned, "Elman RNN": PALETTE.reference}), folder / "adding.png")
    summary.update({f"{n}_test_mse": r.test_mse for n, r in results.items()})
    items.append({"kind": "image", "file": "adding.png", "caption": (
        f"The adding problem with sequences of {T} steps (notes §4): predicting the mean gives MSE "
        f"{results['lstm'].baseline_mse:.3f}. After the same {budget} budget the LSTM (notes §4.2) reaches test MSE "
        f"{results['lstm'].test_mse:.4f} and the Elman RNN {results['rnn'].test_mse:.4f}: the LSTM's cell carries the "
        "first marked value across the lag, the Elman RNN's gradient vanishes before it gets there.")})

    write_section(folder, "1", "Neural-network foundations (notes §1-4)",
                  "The building blocks every later model stands on, each trained live on data that ships with the "
                  f"package ({budget} budgets; `make demo-full` trains the full ones).", items,
                  command=section_command(args, "foundations"))
    return summary


def run_demo(args: Demo) -> Path:
    start = time.perf_counter()
    set_threads(args.threads)
    say = tqdm.write if args.progress else (lambda _: None)
    summary: dict[str, Any] = {}
    if args.selected("foundations"):
        summary.update(foundations_section(args, args.out / "foundations", say))
        summary["foundations_seconds"] = round(time.perf_counter() - start, 1)
    if args.selected("models"):
        from generative.demo_models import run_models_demo

        summary["models"] = run_models_demo(args, say)
    if any(args.selected(part) for part in ("flows", "gans", "diffusion", "compare")):
        from generative.demo_generators import run_generators_demo

        summary["generators"] = run_generators_demo(args, say)
    index = write_index(args.out)
    print(json.dumps({"index": str(index), "generative": summary, "seconds": round(time.perf_counter() - start, 1)}))
    return index
