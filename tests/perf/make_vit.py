"""A timm ViT with seeded random weights, for the benches: model.safetensors
+ config.json (timm hub layout) for vitrine and model.onnx for
onnxruntime-web, the same weights in both (the ONNX file in float32, as
onnxruntime-web's wasm backend computes).

    python3 tests/perf/make_vit.py OUT_DIR [--arch vit_tiny_patch16_224] [--f16] [--no-onnx]

--f16 stores the safetensors weights in float16, as the hub's files of
large models often are; the ONNX file then holds the same f16-rounded
values in float32.
"""
import argparse
import json
import os

import timm
import torch
from safetensors.torch import save_file


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--arch", default="vit_tiny_patch16_224")
    p.add_argument("--f16", action="store_true")
    p.add_argument("--no-onnx", action="store_true")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    model = timm.create_model(a.arch, pretrained=False).eval()
    if a.f16:
        # Round the weights through f16, so both files hold the same values.
        model = model.half().float()
    dtype = torch.float16 if a.f16 else torch.float32
    save_file({k: v.to(dtype).contiguous() for k, v in model.state_dict().items()},
              os.path.join(a.out, "model.safetensors"))
    cfg = model.pretrained_cfg
    config = {
        "architecture": a.arch,
        "num_classes": model.num_classes,
        "pretrained_cfg": {k: cfg[k] for k in ["input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std"] if k in cfg},
    }
    json.dump(config, open(os.path.join(a.out, "config.json"), "w"), indent=1)
    if not a.no_onnx:
        size = cfg["input_size"][1:]
        x = torch.randn(1, 3, *size)
        # Over 2 GB (ViT-L in f32 is 1.2 GB, ViT-H more) the weights must go beside the graph.
        big = sum(p.numel() for p in model.parameters()) * 4 > 1.9e9
        torch.onnx.export(model, (x,), os.path.join(a.out, "model.onnx"), input_names=["pixel_values"],
                          output_names=["logits"], opset_version=18, dynamo=True, external_data=big)
    params = sum(p.numel() for p in model.parameters())
    print(f"{a.arch} ({params / 1e6:.1f} M parameters, {'f16' if a.f16 else 'f32'}) written to {a.out}")


if __name__ == "__main__":
    main()
