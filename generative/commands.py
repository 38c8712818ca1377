"""What ``python -m generative train <model>`` does. The command line is generated from :data:`MODELS`,
the one registry of trainable models: name -> config dataclass, training function, one-line summary.

Every model trains on the engine (``generative.training.fit``): progress bar, ``RUN/config.json``
(this command, resolved), ``metrics.csv``, atomic ``checkpoint.pt``, ``--resume`` (which reads the
options back from ``config.json``), a clean stop on NaN, and ``torchrun`` for several processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, NamedTuple

import tyro

from envs.io.cli import config_command, subcommands
from envs.io.run import RunFolder
from generative.tasks.classification import CNNConfig, MLPConfig, train_cnn, train_mlp
from generative.tasks.segmentation import UNetConfig, train_unet
from generative.tasks.sequences import LSTMConfig, RNNConfig, train_lstm, train_rnn
from generative.training import command_args, distributed, resolve_device


class Model(NamedTuple):
    """One trainable model: its config, its training function and what the command line says of it."""

    config: type
    train: Callable[[Any, RunFolder, bool], Any]  # (config, run folder, resume) -> a typed result
    summary: str


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


RESUMABLE = ("steps", "threads", "resume", "json", "config.fit.progress", "config.fit.threads", "config.fit.device")
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


def train(args: TrainArgs) -> dict[str, Any]:
    """Train ``args``' model in ``args.out``; return the summary that ``--json`` prints."""
    args = command_args(args, RESUMABLE)
    config = args.config  # type: ignore[attr-defined]
    resolve_device(config.fit.device)  # joins the process group under torchrun
    main = distributed().main
    with RunFolder(args.out, config=args, resume=args.resume, writer=main) as run:
        result = MODELS[args.model_name].train(config, run, args.resume)
    return {"model": args.model_name, **summarize(result), "steps": config.fit.steps, "out": str(args.out)}
