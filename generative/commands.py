"""What ``python -m generative train <model>`` and ``sample RUN`` do. The command line is generated from
:data:`MODELS`, the one registry of trainable models: name -> config dataclass, training function, one-line
summary, and for generative models the function that draws samples from a finished run.

Every model trains on the engine (``generative.training.fit``): progress bar, ``RUN/config.json``
(this command, resolved), ``metrics.csv``, atomic ``checkpoint.pt``, ``--resume`` (which reads the
options back from ``config.json``), a clean stop on NaN, and ``torchrun`` for several processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, NamedTuple

import tyro
from torch import Tensor

from envs.io.cli import config_command, subcommands
from envs.io.config import loads
from envs.io.files import atomic_write_json
from envs.io.run import CONFIG, RunFolder
from generative.data.digits import DataConfig
from generative.models.diffusion_unet import NoiseNetConfig
from generative.models.fvsbn import FVSBNConfig, IndependentConfig
from generative.models.image_flows import GlowConfig, NICEConfig, RealNVPConfig
from generative.models.made import MADEConfig
from generative.models.nade import NADEConfig
from generative.models.pixelcnn import GatedPixelCNNConfig, PixelCNNConfig
from generative.models.pixelrnn import PixelRNNConfig
from generative.models.transformer import TransformerConfig
from generative.models.vae import VAEConfig
from generative.tasks.audio import WaveNetTrainConfig, sample_wavenet, train_wavenet
from generative.tasks.autoencoders import AEConfig, sample_autoencoder, train_autoencoder
from generative.tasks.classification import CNNConfig, MLPConfig, train_cnn, train_mlp
from generative.tasks.density import DensityTrainConfig, density_images, density_trainer, sample_density
from generative.tasks.diffusion import (
    VECTOR_FIT,
    DiffusionTrainConfig,
    diffusion_images,
    sample_diffusion,
    train_diffusion,
)
from generative.tasks.gan import GANTrainConfig, digits_gan_config, gan_images, sample_gan, train_gan
from generative.tasks.segmentation import UNetConfig, train_unet
from generative.tasks.sequences import LSTMConfig, RNNConfig, train_lstm, train_rnn
from generative.tasks.strokes import StrokeRNNTrainConfig, VRNNTrainConfig, sample_strokes, train_stroke_rnn, train_vrnn
from generative.tasks.toy_flows import ToyFlowTrainConfig, train_toy_flow
from generative.training import FitConfig, command_args, distributed, resolve_device, set_threads


class Model(NamedTuple):
    """One trainable model: its config, its training function and what the command line says of it."""

    config: type
    train: Callable[[Any, RunFolder, bool], Any]  # (config, run folder, resume) -> a typed result
    summary: str
    sample: Callable[[Path, Any, int, Path, int], dict[str, Any]] | None = None
    """(run folder, its config, n, output file, seed) -> summary; None for models that do not generate."""
    images: Callable[..., Tensor] | None = None
    """(run folder, its config, n, seed, **sampler options) -> ``[n, 1, 8, 8]`` float images in [0, 1]: the samples
    that ``python -m generative compare`` measures; None for models that do not draw digits."""


def with_defaults(name: str, base: type, doc: str, **defaults: Any) -> type:
    """A subclass of the config dataclass ``base`` named after ``name`` whose fields ``defaults`` have new
    defaults (a registry variant, e.g. the beta-VAE is the VAE's config with ``beta = 4``)."""
    fields: list[tuple[str, Any, Any]] = []
    hints = typing.get_type_hints(base)  # resolved: the base's module may use postponed annotations
    for key, value in defaults.items():
        default = (field(default_factory=lambda v=value: dataclasses.replace(v)) if dataclasses.is_dataclass(value)
                   else field(default=value))
        fields.append((key, hints[key], default))
    title = "".join(part.title() for part in name.split("-"))
    config = dataclasses.make_dataclass(f"{title}{base.__name__}", fields, bases=(base,), namespace={"__module__": __name__})
    config.__doc__ = doc
    return config


def density_model(name: str, model_config: Any, summary: str, **defaults: Any) -> Model:
    """A registry entry for an image density of notes §6-7: its config is :class:`DensityTrainConfig` plus
    ``model`` (an instance of the model's config: its defaults), with the entry's own ``defaults``
    (e.g. ``fit``, ``batch_size``)."""
    model = model_config if dataclasses.is_dataclass(model_config) and not isinstance(model_config, type) else model_config()
    base = dataclasses.make_dataclass("DensityTrainConfig", [("model", type(model), field(default_factory=type(model)))],
                                      bases=(DensityTrainConfig,), namespace={"__module__": __name__})
    config = with_defaults(name, base, f"{name}: the model, the data, early stopping and the optimisation.",
                           model=model, **defaults)
    return Model(config, density_trainer(name), summary, sample_density, density_images)


def diffusion_trainer(name: str) -> Callable[[Any, RunFolder, bool], Any]:
    """``train_diffusion`` with the progress bar named ``name`` (one entry of the registry)."""

    def train(config: DiffusionTrainConfig, run: RunFolder, resume: bool = False) -> Any:
        return train_diffusion(config, run, resume, name)

    train.__name__ = f"train_{name.replace('-', '_')}"
    return train


MODELS: dict[str, Model] = {
    "mlp": Model(MLPConfig, train_mlp, "Multi-layer perceptron (notes §1) classifying scikit-learn's 8x8 digits."),
    "cnn": Model(CNNConfig, train_cnn, "Convolutional network (notes §2) classifying the 8x8 digits (target >= 97%)."),
    "unet": Model(UNetConfig, train_unet, "U-Net (notes §3) segmenting generated images of shapes (target mean IoU >= 0.90)."),
    "rnn": Model(RNNConfig, train_rnn, "Elman RNN (notes §4.1) on the adding problem: the long lag defeats it."),
    "lstm": Model(LSTMConfig, train_lstm, "LSTM (notes §4.2) on the adding problem, which it solves."),
    "vae": density_model("vae", VAEConfig(), "Variational autoencoder (notes §6.3): Gaussian encoder, Bernoulli "
                         "decoder; ELBO and IWAE bound.",
                         fit=FitConfig(steps=20000, lr=1e-3, eval_every=500, checkpoint_every=2000), iwae_k=1000,
                         select_k=200),
    "beta-vae": density_model("beta-vae", VAEConfig(beta=4.0), "beta-VAE (notes §6.4): the VAE with the KL weighted "
                              "by beta = 4 (--config.model.beta).",
                              fit=FitConfig(steps=20000, lr=1e-3, eval_every=500, checkpoint_every=2000)),
    "ae": Model(AEConfig, train_autoencoder, "Non-linear autoencoder (notes §6.2): undercomplete, or overcomplete "
                "denoising / inpainting (--config.variant).", sample_autoencoder),
    "linear-ae": Model(with_defaults("linear-ae", AEConfig, "The linear autoencoder (notes §6.1).", variant="linear"),
                       train_autoencoder, "Linear autoencoder (notes §6.1), trained by gradient descent: it finds "
                       "the PCA subspace.", sample_autoencoder),
    "independent": density_model("independent", IndependentConfig(), "Independent pixels (notes §7, footnote 13): "
                                 "the baseline every autoregressive model must beat.",
                                 fit=FitConfig(steps=2000, lr=5e-2, eval_every=100, checkpoint_every=1000)),
    "fvsbn": density_model("fvsbn", FVSBNConfig(), "Fully visible sigmoid belief network (notes §7.1): one logistic "
                           "regression per pixel.",
                           fit=FitConfig(steps=8000, lr=1e-2, weight_decay=1e-3, eval_every=250, checkpoint_every=2000)),
    "nade": density_model("nade", NADEConfig(), "NADE (notes §7.2): shared weights, the O(nd) recursion, teacher "
                          "forcing.",
                          fit=FitConfig(steps=4000, lr=1e-3, weight_decay=3e-4, eval_every=250, checkpoint_every=1000)),
    "made": density_model("made", MADEConfig(), "MADE (notes §7.3): masked autoencoder, an order-agnostic ensemble "
                          "of 8 mask sets.",
                          fit=FitConfig(steps=12000, lr=2e-3, eval_every=500, checkpoint_every=2000)),
    "pixel-rnn": density_model("pixel-rnn", PixelRNNConfig(), "Pixel-RNN (notes §7.4): Row LSTMs, each row from "
                               "the row above; exact likelihood of the digits.",
                               fit=FitConfig(steps=2500, lr=2e-3, ema_decay=0.995, eval_every=100, checkpoint_every=500)),
    "pixelcnn": density_model("pixelcnn", PixelCNNConfig(), "PixelCNN (notes §7.4): masked convolutions of type A "
                              "and B; exact likelihood of the digits.",
                              fit=FitConfig(steps=1500, lr=2e-3, ema_decay=0.995, eval_every=100, checkpoint_every=500)),
    "gated-pixelcnn": density_model("gated-pixelcnn", GatedPixelCNNConfig(), "Gated PixelCNN (notes §7.4): vertical "
                                    "and horizontal stacks, no blind spot; exact likelihood of the digits.",
                                    fit=FitConfig(steps=2000, lr=2e-3, ema_decay=0.995, eval_every=100,
                                                  checkpoint_every=500)),
    "transformer": density_model("transformer", TransformerConfig(), "Pixel transformer (notes §7.7): causal "
                                 "self-attention over the 64 pixels; exact likelihood of the digits.",
                                 fit=FitConfig(steps=2000, lr=2e-3, optimizer="adamw", warmup_steps=100, ema_decay=0.995,
                                               eval_every=100, checkpoint_every=500)),
    "nice": density_model("nice", NICEConfig(), "NICE (notes §8.5): additive couplings on the flattened grey digits, "
                          "then a diagonal scaling; dequantised likelihood bound.", data="digits-grey",
                          fit=FitConfig(steps=3000, lr=1e-3, eval_every=100, checkpoint_every=500)),
    "realnvp": density_model("realnvp", RealNVPConfig(), "RealNVP (notes §8.5): multi-scale affine couplings "
                             "(checkerboard, squeeze, channel masks); dequantised likelihood bound of the grey digits.",
                             data="digits-grey", fit=FitConfig(steps=1500, lr=1e-3, eval_every=100, checkpoint_every=500)),
    "glow": density_model("glow", GlowConfig(), "Glow (notes §8.5): L = 2 levels of K = 4 steps (actnorm, invertible "
                          "1x1 convolution, affine coupling); dequantised likelihood bound of the grey digits.",
                          data="digits-grey", fit=FitConfig(steps=2000, lr=1e-3, eval_every=100, checkpoint_every=500)),
    "toy-flow": Model(ToyFlowTrainConfig, train_toy_flow, "RealNVP on a 2-D toy (notes §8.5): test NLL beside the true "
                      "density's, and RUN/density.png."),
    "ddpm": Model(DiffusionTrainConfig, diffusion_trainer("ddpm"), "DDPM (notes §10, Algorithms 2-3): the U-Net with a "
                  "time embedding on the digits (--data digits), or an MLP on a 2-D toy (--data moons, ...).",
                  sample_diffusion, diffusion_images),
    "ddpm-cfg": Model(with_defaults("ddpm-cfg", DiffusionTrainConfig, "DDPM conditioned on the digit's class, which "
                                    "training drops with probability cond_drop (classifier-free guidance).",
                                    cond_drop=0.15),
                      diffusion_trainer("ddpm-cfg"), "DDPM with classifier-free guidance (notes §10.4): one network, "
                      "class dropped in training; (1 + rho) eps(x, y) - rho eps(x).", sample_diffusion,
                      diffusion_images),
    "latent-ddpm": Model(with_defaults("latent-ddpm", DiffusionTrainConfig, "Diffusion on the latents of a VAE "
                                       "trained first and frozen (notes §10.5).", data="latent", fit=VECTOR_FIT,
                                       net=NoiseNetConfig()),
                         diffusion_trainer("latent-ddpm"), "Latent diffusion (notes §10.5): a VAE is trained, frozen, "
                         "and an MLP diffuses its latents; samples decoded.", sample_diffusion, diffusion_images),
    "gan": Model(with_defaults("gan", GANTrainConfig, "The GAN of Algorithm 1: the minimax value function.",
                               variant="minimax", batch_size=256),
                 train_gan, "GAN (notes §9, Algorithm 1): minimax value function, on a 2-D toy (--data 8gaussians, "
                 "25gaussians, ...) or the digits (--data digits, DCGAN players); mode coverage.", sample_gan, gan_images),
    "ns-gan": Model(with_defaults("ns-gan", GANTrainConfig, "The GAN with the non-saturating generator loss.",
                                  variant="non-saturating", batch_size=256),
                    train_gan, "GAN with the non-saturating generator loss -log D(G(z)) (notes §9.2, Figure 9.1).",
                    sample_gan, gan_images),
    "unrolled-gan": Model(with_defaults("unrolled-gan", GANTrainConfig, "The minimax GAN whose generator looks 5 "
                                        "discriminator steps ahead.", variant="minimax", unroll_steps=5, batch_size=256),
                          train_gan, "Unrolled GAN (Metz et al. 2017, notes §9.2): the generator's loss through k = 5 "
                          "unrolled discriminator updates, differentiated through them.", sample_gan, gan_images),
    "wgan-gp": Model(with_defaults("wgan-gp", GANTrainConfig, "The Wasserstein GAN with a gradient penalty.",
                                   variant="wgan-gp", d_steps=5, betas=(0.5, 0.9), batch_size=256),
                     train_gan, "Wasserstein GAN with a gradient penalty (Gulrajani et al. 2017, notes §9.2): 5 critic "
                     "steps per generator step.", sample_gan, gan_images),
    "r1-gan": Model(with_defaults("r1-gan", GANTrainConfig, "The non-saturating GAN with the R1 penalty.", variant="r1",
                                  batch_size=256),
                    train_gan, "Non-saturating GAN with the R1 gradient penalty of Mescheder et al. 2018 (notes §9.2).",
                    sample_gan, gan_images),
    "dcgan": Model(with_defaults("dcgan", GANTrainConfig, "A DCGAN on the 8x8 float digits (non-saturating loss).",
                                 **dataclasses.asdict(digits_gan_config()) | {"fit": digits_gan_config().fit}),
                   train_gan, "DCGAN (Radford et al. 2016) on the 8x8 digits: transposed convolutions, non-saturating "
                   "loss; Frechet digit distance.", sample_gan, gan_images),
    "wavenet": Model(WaveNetTrainConfig, train_wavenet, "WaveNet (notes §7.5): dilated causal convolutions over "
                     "procedural 8 kHz audio, 256 mu-law levels; samples as WAV files.", sample_wavenet),
    "vrnn": Model(VRNNTrainConfig, train_vrnn, "Variational RNN (notes §7.6) on procedural pen strokes; test ELBO "
                  "and IWAE bound.", sample_strokes),
    "stroke-rnn": Model(StrokeRNNTrainConfig, train_stroke_rnn, "Plain RNN on the same pen strokes, the VRNN's "
                        "baseline (same state size, exact likelihood).", sample_strokes),
}


@dataclass
class TrainArgs:
    """Options shared by every model."""

    model_name: ClassVar[str] = ""

    out: Path = Path("runs/model")
    """Run folder: config.json, metrics.csv, checkpoint.pt; default runs/<model>."""
    steps: int | None = None
    """Optimisation steps; default: the model's own (``--config.fit.steps``)."""
    seed: int | None = None
    """Seed; default: the model's own (0)."""
    threads: int | None = None
    """Torch CPU threads; default: the model's own (1, the fastest on a busy 2-core machine)."""
    resume: bool = False
    """Continue the run in ``out`` from its checkpoint.pt, with the options of its config.json."""
    json: bool = False
    """Print the summary as one JSON object."""
    data: str | None = None
    """Data set of a generative model (digits, digits-grey, ...: see its ``--config.data``); default: its own."""
    mnist: Path | None = None
    """Train a generative model on MNIST instead of the digits: the folder holding the four IDX files."""


RESUMABLE = ("steps", "threads", "resume", "json", "data", "mnist", "config.fit.progress", "config.fit.threads", "config.fit.device")
"""Options that a resumed run takes from the command line; every other one comes from its config.json."""


TRAIN_COMMANDS: dict[str, type[TrainArgs]] = {
    name: config_command(name, TrainArgs, model.config, model.summary, __name__,
                         fields=[("out", Path, field(default=Path("runs") / name))], model_name=name)
    for name, model in MODELS.items()
}
TrainModel = subcommands(TRAIN_COMMANDS)
"""One subcommand per model of :data:`MODELS`."""


@dataclass
class TrainCommand:
    """Train a model of notes §1-4 on data that ships with the package (or your MNIST files)."""

    model: Annotated[TrainModel, tyro.conf.arg(name="")]


def summarize(result: Any) -> dict[str, Any]:
    """The numbers of a typed training result (everything but the model and the fit record)."""
    out = {k: (None if isinstance(v, float) and math.isnan(v) else v)  # JSON has no NaN: a number that does not apply
           for k, v in result._asdict().items() if isinstance(v, (int, float, str, dict))}
    for name in dir(type(result)):  # derived numbers, e.g. SequenceResult.relative_mse
        if isinstance(getattr(type(result), name, None), property):
            out[name] = getattr(result, name)
    return out


def with_data_options(args: TrainArgs) -> TrainArgs:
    """``args`` with ``--data`` and ``--mnist`` written into its config (a new run only: a resumed run keeps its data)."""
    changes = {key: value for key, value in (("data", args.data), ("mnist_dir", args.mnist)) if value is not None}
    if not changes or args.resume:
        return args
    config = args.config  # type: ignore[attr-defined]
    if isinstance(getattr(config, "data", None), DataConfig) and args.data is None:  # the §1-4 models and autoencoders
        data = dataclasses.replace(config.data, dataset="mnist", mnist_dir=args.mnist)
        return dataclasses.replace(args, config=dataclasses.replace(config, data=data))
    names_its_data = isinstance(getattr(config, "data", None), str)  # the image densities name their data by a string
    reads_mnist = args.mnist is None or any(f.name == "mnist_dir" for f in dataclasses.fields(config))
    if not names_its_data or not reads_mnist:
        flag = "--data" if args.data is not None else "--mnist"
        raise ValueError(f"{flag}: model {args.model_name!r} trains on its own data (see its --config.* options)")
    return dataclasses.replace(args, config=dataclasses.replace(config, **changes))


MODEL_FILE = "model.json"
"""The run folder's record of which registry entry trained it (read by ``sample``)."""


def train(args: TrainArgs) -> dict[str, Any]:
    """Train ``args``' model in ``args.out``; return the summary that ``--json`` prints."""
    args = with_data_options(command_args(args, RESUMABLE))
    config = args.config  # type: ignore[attr-defined]
    resolve_device(config.fit.device)  # joins the process group under torchrun
    main = distributed().main
    with RunFolder(args.out, config=args, resume=args.resume, writer=main) as run:
        if main:
            atomic_write_json(run.path / MODEL_FILE, {"model": args.model_name})
        result = MODELS[args.model_name].train(config, run, args.resume)
    return {"model": args.model_name, **summarize(result), "steps": config.fit.steps, "out": str(args.out)}


@dataclass
class SampleCommand:
    """Draw samples from a trained run (its best weights): an image grid, WAV files or pen strokes."""

    run: tyro.conf.Positional[Path]
    """The run folder of ``python -m generative train <model> --out RUN``."""
    n: int = 64
    """How many samples."""
    out: Path | None = None
    """Where to write them; default: RUN/samples.png (RUN/samples/ for audio)."""
    seed: int = 0
    """Seed of the sampling noise: same seed, same samples."""
    threads: int = 1
    """Torch CPU threads (one is the fastest on a busy 2-core machine)."""
    json: bool = False
    """Print the summary as one JSON object."""


def trained_config(run_dir: Path) -> tuple[str, Any]:
    """``(registry name, model config)`` of the run in ``run_dir``, read from its model.json and config.json."""
    record, stored = run_dir / MODEL_FILE, run_dir / CONFIG
    for path in (record, stored):
        if not path.is_file():
            raise ValueError(f"{run_dir}: not a finished run of `python -m generative train` (no {path.name})")
    try:
        name = json.loads(record.read_text())["model"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{record}: expected a JSON object with the model's name") from None
    if name not in MODELS:
        raise ValueError(f"{record}: unknown model {name!r}")
    return name, loads(TRAIN_COMMANDS[name], stored.read_text(), str(stored)).config  # type: ignore[attr-defined]


def sample(args: SampleCommand) -> dict[str, Any]:
    """Samples of the model trained in ``args.run``; return the summary that ``--json`` prints."""
    if args.n < 1 or args.threads < 1:
        raise ValueError(f"--n and --threads must be >= 1, got {args.n}, {args.threads}")
    name, config = trained_config(args.run)
    set_threads(args.threads)
    entry = MODELS[name]
    if entry.sample is None:
        raise ValueError(f"{args.run}: model {name!r} does not generate samples")
    return {"model": name, **entry.sample(args.run, config, args.n, args.out, args.seed), "run": str(args.run)}
