"""RealNVP on the 2-D toys (notes §8.5): our ToyFlow against zuko's RealNVP, side by side in one process.

Both get the same training and test points (``generative.tasks.toy_flows.toy_split``), the same number of affine
couplings with alternating masks and the same hidden widths, Adam with the same learning rate and cosine schedule
(``generative.training.lr_factor``), the same batches (one generator, seeded alike) and the same number of steps.
Differences that remain: zuko's coupling MLP reads only the conditioning half and bounds its log-scale its own way;
ours reads the masked vector and soft-clamps ``s`` (so the parameter counts differ a little).

    python benchmarks/bench_flows.py [--toys moons 8gaussians] [--steps 3000] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from generative.data import toys
from generative.models.flows import ToyFlowConfig
from generative.tasks.toy_flows import ToyFlowTrainConfig, gaussian_nll, toy_split
from generative.training import FitConfig, lr_factor


def zuko_flow(couplings: int, hidden: tuple[int, ...]) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    import zuko

    flow = zuko.flows.RealNVP(2, transforms=couplings, hidden_features=hidden)
    return flow, lambda x: flow().log_prob(x)


def ours_flow(couplings: int, hidden: tuple[int, ...]) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    model = ToyFlowConfig(couplings=couplings, hidden=hidden).build(2)
    return model, model.log_prob


def train(module: nn.Module, log_prob: Callable[[Tensor], Tensor], x_train: Tensor, fit: FitConfig,
          batch: int) -> float:
    """Adam with the engine's schedule on minibatches of ``x_train``; returns the training seconds."""
    opt = torch.optim.Adam(module.parameters(), lr=fit.lr)
    g = torch.Generator().manual_seed(fit.seed)
    start = time.perf_counter()
    for step in range(fit.steps):
        for group in opt.param_groups:
            group["lr"] = fit.lr * lr_factor(step, fit)
        index = torch.randint(0, len(x_train), (batch,), generator=g)
        loss = -log_prob(x_train[index]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def bench(toy: str, steps: int, threads: int, couplings: int, hidden: tuple[int, ...], lr: float, batch: int,
          seed: int) -> list[dict[str, float | str]]:
    torch.set_num_threads(threads)
    config = ToyFlowTrainConfig(toy=toy)  # type: ignore[arg-type]
    x_train, x_test = toy_split(config)
    true_nll = float(-toys.log_density(toy, x_test).mean())  # type: ignore[arg-type]
    fit = FitConfig(steps=steps, lr=lr, seed=seed, threads=threads)
    rows: list[dict[str, float | str]] = []
    for name, build in (("ours", ours_flow), ("zuko", zuko_flow)):
        torch.manual_seed(seed)
        module, log_prob = build(couplings, hidden)
        seconds = train(module, log_prob, x_train, fit, batch)
        with torch.no_grad():
            test_nll = float(-log_prob(x_test).mean())
        rows.append({"toy": toy, "model": name, "test_nll": test_nll, "true_nll": true_nll,
                     "gaussian_nll": gaussian_nll(x_train, x_test),
                     "parameters": sum(p.numel() for p in module.parameters()), "train_seconds": seconds,
                     "threads": threads, "steps": steps})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toys", nargs="+", default=["moons", "8gaussians"], choices=toys.TOYS)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--couplings", type=int, default=8)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    rows = [row for toy in args.toys for row in bench(toy, args.steps, args.threads, args.couplings,
                                                        tuple(args.hidden), args.lr, args.batch, args.seed)]
    print("| toy | model | test NLL (nats) | true NLL | Gaussian NLL | parameters | train s | threads |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['toy']} | {r['model']} | {r['test_nll']:.3f} | {r['true_nll']:.3f} | {r['gaussian_nll']:.3f} | "
              f"{r['parameters']} | {r['train_seconds']:.1f} | {r['threads']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
