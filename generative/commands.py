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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, NamedTuple

import tyro

from envs.io.cli import config_command, subcommands
from envs.io.config import loads
from envs.io.files import atomic_write_json
from envs.io.run import CONFIG, RunFolder
from generative.tasks.classification import CNNConfig, MLPConfig, train_cnn, train_mlp
from generative.tasks.density import DensityTrainConfig, density_trainer, sample_density
from generative.tasks.segmentation import UNetConfig, train_unet
from generative.tasks.sequences import LSTMConfig, RNNConfig, train_lstm, train_rnn
from generative.training import command_args, distributed, resolve_device


class Model(NamedTuple):
    """One trainable model: its config, its training function and what the command line says of it."""

    config: type
    train: Callable[[Any, RunFolder, bool], Any]  # (config, run folder, resume) -> a typed result
    summary: str
    sample: Callable[[Path, Any, int, Path, int], dict[str, Any]] | None = None
    """(run folder, its config, n, output file, seed) -> summary; None for models that do not generate."""


def density_model(name: str, model_config: type, summary: str, **defaults: Any) -> Model:
    """A registry entry for an image density of notes §6-7: its config is :class:`DensityTrainConfig` plus
    ``model: model_config``, with the model's own ``defaults`` (e.g. ``fit``, ``batch_size``)."""
    fields: list[tuple[str, Any, Any]] = [("model", model_config, field(default_factory=model_config))]
    for key, value in defaults.items():
        fields.append((key, type(value), field(default_factory=lambda v=value: dataclasses.replace(v))
                       if dataclasses.is_dataclass(value) else field(default=value)))
    title = "".join(part.title() for part in name.split("-"))
    config = dataclasses.make_dataclass(f"{title}TrainConfig", fields, bases=(DensityTrainConfig,),
                                        namespace={"__module__": __name__})
    config.__doc__ = f"{name}: the model, the data, early stopping and the optimisation."
    return Model(config, density_trainer(name), summary, sample_density)


MODELS: dict[str, Model] = {
    "mlp": Model(MLPConfig, train_mlp, "Multi-layer perceptron (notes §1) classifying scikit-learn's 8x8 digits."),
    "cnn": Model(CNNConfig, train_cnn, "Convolutional network (notes §2) classifying the 8x8 digits (target >= 97%)."),
    "unet": Model(UNetConfig, train_unet, "U-Net (notes §3) segmenting generated images of shapes (target mean IoU >= 0.90)."),
    "rnn": Model(RNNConfig, train_rnn, "Elman RNN (notes §4.1) on the adding problem: the long lag defeats it."),
    "lstm": Model(LSTMConfig, train_lstm, "LSTM (notes §4.2) on the adding problem, which it solves."),
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
    out = {k: v for k, v in result._asdict().items() if isinstance(v, (int, float, str, dict))}
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
    missing = [key for key in changes if not hasattr(config, key)]
    if missing:
        flag = "--data" if "data" in missing else "--mnist"
        raise ValueError(f"{flag}: model {args.model_name!r} trains on its own fixed data; it has no such option")
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
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    name, config = trained_config(args.run)
    entry = MODELS[name]
    if entry.sample is None:
        raise ValueError(f"{args.run}: model {name!r} does not generate samples")
    return {"model": name, **entry.sample(args.run, config, args.n, args.out, args.seed), "run": str(args.run)}
