"""The SMPL function (notes §13.2): our BodyModel against smplx's SMPL on the same model file, side by side.

Both evaluate the shipped procedural body (``assets/bodies/procedural_body.npz``, or ``--model``) on the same random
shapes and poses, with ``torch.no_grad`` and float32: smplx's ``SMPL.forward`` (it regresses the joints from the
shaped mesh, multiplies the dense 207-row pose blend shapes, chains 23 joints one by one and skins with 4x4
products per vertex) against our ``BodyModel.forward`` (fused blend shapes that skip the all-zero blocks of local
pose blend shapes, joints regressed at load time, the chain by tree depth, coordinate-major skinning) and our
joints-only path ``BodyModel.joints`` (the 24 joints and 22 keypoint vertices, no mesh). Timed best of
``--repeats`` rounds, interleaved, each the mean of many calls; the outputs are checked to agree first.

    python benchmarks/bench_bodies.py [--batches 1 64] [--threads 1 2] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from bodies.model import BodyModel, default_model_path


def smplx_model(path: str):
    import smplx
    from smplx.utils import Struct

    from bodies.model_files import smplx_vertex_ids

    with np.load(path, allow_pickle=False) as data:
        struct = Struct(**{key: data[key] for key in data.files})
    vertex_ids = smplx_vertex_ids(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smplx.SMPL(path, data_struct=struct, num_betas=10, vertex_ids=vertex_ids)


def mean_seconds(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def bench(path: str, batch: int, threads: int, repeats: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    ours, peer = BodyModel.from_file(path), smplx_model(path)
    g = torch.Generator().manual_seed(batch)
    betas, body_pose = torch.randn(batch, 10, generator=g), 0.5 * torch.randn(batch, 69, generator=g)
    orient, transl = torch.randn(batch, 3, generator=g), torch.randn(batch, 3, generator=g)
    contenders = {
        "smplx": lambda: peer(betas=betas, body_pose=body_pose, global_orient=orient, transl=transl),
        "ours": lambda: ours(betas, body_pose, orient, transl),
        "ours_joints": lambda: ours.joints(betas, body_pose, orient, transl),
    }
    with torch.no_grad():
        a, b = contenders["ours"](), contenders["smplx"]()
        error = float(max((a.vertices - b.vertices).abs().max(), (a.joints - b.joints[:, :24]).abs().max()))
        calls = max(5, 400 // batch)
        best = {name: float("inf") for name in contenders}
        for _ in range(repeats):
            for name, fn in contenders.items():
                best[name] = min(best[name], mean_seconds(fn, calls))
    return {"batch": batch, "threads": threads, "vertices": ours.num_vertices, "max_abs_difference_m": error,
            **{f"{k}_ms": 1000 * v for k, v in best.items()},
            "speedup": best["smplx"] / best["ours"], "speedup_joints": best["smplx"] / best["ours_joints"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(default_model_path()))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    rows = [bench(args.model, b, t, args.repeats) for t in args.threads for b in args.batches]
    print(f"{'batch':>5} {'threads':>7} {'smplx ms':>9} {'ours ms':>8} {'ratio':>6} {'joints ms':>9} {'ratio':>6}"
          f" {'max diff m':>10}")
    for r in rows:
        print(f"{r['batch']:>5} {r['threads']:>7} {r['smplx_ms']:>9.3f} {r['ours_ms']:>8.3f} {r['speedup']:>5.2f}x"
              f" {r['ours_joints_ms']:>9.3f} {r['speedup_joints']:>5.1f}x {r['max_abs_difference_m']:>10.2e}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
