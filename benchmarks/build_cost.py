"""Alignment fit cost vs number of anchors and feature dimensions (`fit_alignment`, CPU).

Fits each map on synthetic anchor features (a random linear map plus noise) for every (anchors, dims)
cell and prints wall time, time per 1k anchors, and the ratio to the smallest anchor count, so growth in
the number of anchors can be read off one run. Not a test: no assertions on timing.

    python benchmarks/build_cost.py                         # 1k/5k/10k anchors, 1024 -> 1024 and 4096 -> 4096
    python benchmarks/build_cost.py --anchors 1000 2000 --dims 512 --methods ridge svd mlp
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from safesteer_diffusers.build.alignment import fit_alignment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--dims", type=int, nargs="+", default=[1024, 4096], help="source = target dimension")
    parser.add_argument("--methods", nargs="+", default=["ridge", "svd"], choices=["ridge", "svd", "mlp"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; command: {' '.join(sys.argv)}")
    print(f"{'method':<6} {'dims':>11} {'anchors':>8} {'seconds':>9} {'s per 1k':>9} {'x smallest':>10}")
    for dim in args.dims:
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(dim, dim, generator=generator) / dim**0.5
        for method in args.methods:
            first = None
            for count in args.anchors:
                x = torch.randn(count, dim, generator=generator)
                y = x @ weight + 0.1 * torch.randn(count, dim, generator=generator)
                started = time.perf_counter()
                fit_alignment(x, y, method=method, seed=0)
                seconds = time.perf_counter() - started
                first = first or seconds
                print(
                    f"{method:<6} {f'{dim}->{dim}':>11} {count:>8} {seconds:>9.2f} {seconds / count * 1000:>9.3f} "
                    f"{seconds / first:>10.2f}"
                )


if __name__ == "__main__":
    main()
