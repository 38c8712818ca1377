"""3D Gaussian splatting on CPU: the tiled rasteriser (``vision3d.splatting.render``) against the per-pixel
reference (``vision3d.gaussians.render_reference``).

A seeded random scene (means uniform in a ball of radius 1, scales about 0.03, SH degree 1, opacities
sigmoid(N(0, 1))) seen from 3 units away with a 60 degree field of view fills most of the image and makes many
pixels opaque. For each image size and number of Gaussians: frames per second of the forward pass (under
``torch.no_grad``) and of forward + backward (the gradient of the sum of image, depth and alpha with respect
to every parameter), best of ``--repeats`` (the reference: of ``--reference-repeats``), for each tile size,
and the largest absolute difference of image, depth and alpha between the two (depth is not normalised: it
reaches about 4 here). The reference is skipped where one forward pass would take longer than
``--reference-limit`` seconds (estimated from a tenth of the scene). Prints a Markdown table.

    python benchmarks/bench_splatting.py [--threads 1] [--repeats 3] [--sizes 64 128] [--counts 2000 20000]
                                         [--tiles 8 16] [--reference-repeats 1] [--reference-limit 60]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from vision3d.camera import Intrinsics, look_at
from vision3d.gaussians import Gaussians, render_reference
from vision3d.splatting import render

FIELDS = ("means", "log_scales", "quaternions", "opacity_logits", "sh")


def make_scene(n: int, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    means = direction * torch.rand(n, 1, generator=g) ** (1 / 3)  # uniform in the unit ball
    return Gaussians(
        means=means,
        log_scales=math.log(0.03) + 0.3 * torch.randn(n, 3, generator=g),
        quaternions=torch.randn(n, 4, generator=g),
        opacity_logits=torch.randn(n, generator=g),
        sh=0.3 * torch.randn(n, 4, 3, generator=g),
    )


def time_best(repeats: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def forward_backward(renderer, scene: Gaussians, *args) -> None:
    params = [getattr(scene, k).detach().requires_grad_(True) for k in FIELDS]
    out = renderer(Gaussians(*params), *args)
    (out.image.sum() + out.depth.sum() + out.alpha.sum()).backward()


def bench(size: int, n: int, tiles: list[int], repeats: int, reference_repeats: int,
          reference_limit: float) -> list[dict[str, float | int | None]]:
    scene = make_scene(n)
    intrinsics = Intrinsics.from_fov(size, size, math.radians(60.0))
    args = (torch.tensor(look_at(np.array([2.0, -2.0, 1.0])), dtype=torch.float32), intrinsics,
            torch.tensor([0.1, 0.1, 0.1]))
    # The reference's cost is about linear in pixels x Gaussians: time a tenth of the scene and extrapolate.
    with torch.no_grad():
        t_probe, _ = time_best(1, lambda: render_reference(make_scene(max(1, n // 10)), *args))
    reference, ref_fps, ref_bw_fps = None, None, None
    if t_probe * 10 <= reference_limit:
        with torch.no_grad():
            t_ref, reference = time_best(reference_repeats, lambda: render_reference(scene, *args))
        t_ref_bw, _ = time_best(reference_repeats, lambda: forward_backward(render_reference, scene, *args))
        ref_fps, ref_bw_fps = 1 / t_ref, 1 / t_ref_bw
    rows = []
    for tile in tiles:
        def fast(*a, tile=tile):
            return render(*a, tile=tile)

        with torch.no_grad():
            fast(scene, *args)  # warm-up
            t_fast, out = time_best(repeats, lambda: fast(scene, *args))
        t_fast_bw, _ = time_best(repeats, lambda: forward_backward(fast, scene, *args))
        diff = None if reference is None else [(a - b).abs().max().item() for a, b in zip(out, reference)]
        rows.append({"size": size, "n": n, "tile": tile, "fast_fps": 1 / t_fast, "fast_bw_fps": 1 / t_fast_bw,
                     "ref_fps": ref_fps, "ref_bw_fps": ref_bw_fps, "diff": diff})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, choices=(1, 2), default=1)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs of the tiled rasteriser")
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--tiles", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--reference-limit", type=float, default=60.0, help="skip reference passes longer than this (s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def fmt(x: float | list[float] | None, spec: str = ".2f") -> str:
        if isinstance(x, list):
            return " / ".join(format(v, spec) for v in x)
        return "skipped" if x is None else format(x, spec)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), best of {args.repeats}\n")
    print("| image | Gaussians | tile | tiled fps | reference fps | speed-up | tiled fwd+bwd fps |"
          " reference fwd+bwd fps | speed-up | max abs difference: image / depth / alpha |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for n in args.counts:
            for r in bench(size, n, args.tiles, args.repeats, args.reference_repeats, args.reference_limit):
                ratio = None if r["ref_fps"] is None else r["fast_fps"] / r["ref_fps"]
                ratio_bw = None if r["ref_bw_fps"] is None else r["fast_bw_fps"] / r["ref_bw_fps"]
                print(f"| {size}x{size} | {n:,} | {r['tile']} | {fmt(r['fast_fps'], '.1f')} | {fmt(r['ref_fps'], '.3f')}"
                      f" | {fmt(ratio, '.0f')}x | {fmt(r['fast_bw_fps'], '.1f')} | {fmt(r['ref_bw_fps'], '.3f')}"
                      f" | {fmt(ratio_bw, '.0f')}x | {fmt(r['diff'], '.1e')} |", flush=True)

if __name__ == "__main__":
    main()
