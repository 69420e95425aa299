"""PyTorch eager reference for `./build.sh bench`: the forward pass of a
vit_tiny_patch16_224-shaped timm model (or --arch) at batch 1 (or --batch), timed like `vitrine bench`
(median of N runs after warm-up, random weights, same thread count). With
--ceiling, PyTorch's own rate on a 2048² f32 product (best of 8), before and
after; with --json, one JSON line."""

import argparse
import json
import statistics
import time

import timm
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--arch", default="vit_tiny_patch16_224")
parser.add_argument("--runs", type=int, default=30)
parser.add_argument("--warmup", type=int, default=5)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--batch", type=int, default=1)
parser.add_argument("--ceiling", action="store_true")
parser.add_argument("--json", action="store_true")
args = parser.parse_args()


def matrix_ceiling(n=2048):
    a, b = torch.rand(n, n), torch.rand(n, n)
    best = float("inf")
    for _ in range(8):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


torch.set_num_threads(args.threads)
model = timm.create_model(args.arch, pretrained=False).eval()
x = torch.randn(args.batch, *model.pretrained_cfg["input_size"])
ceiling = matrix_ceiling() if args.ceiling else None
times = []
with torch.inference_mode():
    for i in range(args.warmup + args.runs):
        t0 = time.perf_counter()
        model(x)
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1000)
times.sort()
p90 = times[max(0, -(-len(times) * 9 // 10) - 1)]
if ceiling is not None:
    ceiling = max(ceiling, matrix_ceiling())
if args.json:
    print(json.dumps({"model": args.arch, "torch": torch.__version__, "batch": args.batch, "threads": args.threads,
                      "median_ms": statistics.median(times), "p90_ms": p90, "min_ms": times[0],
                      "ceiling_gflops": ceiling}))
    raise SystemExit
print(
    f"{args.arch} on PyTorch {torch.__version__} eager (batch {args.batch}, {args.runs} runs after {args.warmup} warm-up, "
    f"{args.threads} threads): median {statistics.median(times):.2f} ms, p90 {p90:.2f} ms, min {times[0]:.2f} ms"
)
