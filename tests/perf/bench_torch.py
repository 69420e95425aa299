"""PyTorch eager reference for `./build.sh bench`: the forward pass of a
vit_tiny_patch16_224-shaped timm model (or --arch) at batch 1 (or --batch), timed like `vitrine bench`
(median of N runs after warm-up, random weights, same thread count)."""

import argparse
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
args = parser.parse_args()

torch.set_num_threads(args.threads)
model = timm.create_model(args.arch, pretrained=False).eval()
x = torch.randn(args.batch, *model.pretrained_cfg["input_size"])
times = []
with torch.inference_mode():
    for i in range(args.warmup + args.runs):
        t0 = time.perf_counter()
        model(x)
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1000)
times.sort()
p90 = times[max(0, -(-len(times) * 9 // 10) - 1)]
print(
    f"{args.arch} on PyTorch {torch.__version__} eager (batch {args.batch}, {args.runs} runs after {args.warmup} warm-up, "
    f"{args.threads} threads): median {statistics.median(times):.2f} ms, p90 {p90:.2f} ms, min {times[0]:.2f} ms"
)
