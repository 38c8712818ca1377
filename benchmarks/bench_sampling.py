"""Training-step and sampling time of the autoregressive models of notes §7, side by side in one run.

The notes' two claims about cost: Pixel-RNN trains sequentially (slow) where PixelCNN trains in parallel
(§7.4), and every autoregressive model samples one pass per pixel (§7.3, footnote 14); the transformer's
key-value cache and WaveNet's queues (Paine et al. 2016) cut each pass to one position. Weights do not
change the cost, so the models are the registry's default architectures, untrained, on the 8x8 digits.

    python benchmarks/bench_sampling.py [--threads 1 2] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from generative.commands import TRAIN_COMMANDS
from generative.training import set_threads

MODELS = ("made", "nade", "pixelcnn", "gated-pixelcnn", "pixel-rnn", "transformer")


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``fn`` in seconds (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def image_models() -> dict[str, torch.nn.Module]:
    """The default architecture of each model of :data:`MODELS` for the binary 8x8 digits."""
    return {name: TRAIN_COMMANDS[name]().config.model.build((1, 8, 8), 2) for name in MODELS}  # type: ignore[attr-defined]


def measure(threads: int, repeats: int, batch: int = 64) -> list[dict[str, object]]:
    """Rows: model, milliseconds per training step (batch 64), per sample (batch ``batch``) and for one sample."""
    set_threads(threads)
    x = torch.bernoulli(torch.full((batch, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    rows = []
    for name, model in image_models().items():
        def step(m=model) -> None:
            m.train()
            m.loss(x, torch.Generator().manual_seed(0)).mean().backward()

        variants = [("", {})] + ([(" (no KV cache)", {"cache": False})] if name == "transformer" else [])
        for suffix, options in variants:
            def draw(m=model, n=batch, o=options) -> None:
                with torch.no_grad():
                    m.sample(n, torch.Generator().manual_seed(0), **o)

            rows.append({
                "model": name + suffix, "threads": threads,
                "train_step_ms": best_of(step, repeats) * 1000 if not suffix else None,
                "ms_per_sample": best_of(draw, repeats) / batch * 1000,
                "ms_one_sample": best_of(lambda m=model, o=options: draw(m, 1, o), repeats) * 1000,
            })
    from generative.models.wavenet import WaveNetConfig

    wavenet = WaveNetConfig().build().eval()
    # per audio sample of one clip: the queues cost the same at every step; the naive sampler re-runs the net
    # over the whole prefix, so its cost grows with the length (a short clip keeps the benchmark short)
    for name, sampler, length in (("wavenet, queues (2000 audio samples)", wavenet.sample, 2000),
                                  ("wavenet, naive (250 audio samples)", wavenet.sample_naive, 250)):
        def clip(s=sampler, n=length) -> None:
            with torch.no_grad():
                s(1, n, torch.Generator().manual_seed(0))

        per = best_of(clip, repeats if length == 2000 else 1) / length
        rows.append({"model": name, "threads": threads, "train_step_ms": None, "ms_per_sample": per * 1000,
                     "ms_one_sample": per * 1000})
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    lines = ["| model | threads | train step (ms, batch 64) | ms per sample (batch 64) | ms for one sample |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        step = "" if r["train_step_ms"] is None else f"{r['train_step_ms']:.1f}"
        lines.append(f"| {r['model']} | {r['threads']} | {step} | {r['ms_per_sample']:.3f} | {r['ms_one_sample']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [row for threads in args.threads for row in measure(threads, args.repeats)]
    print(json.dumps(rows) if args.json else markdown(rows))


if __name__ == "__main__":
    main()
