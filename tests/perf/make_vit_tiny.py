"""A vit_tiny_patch16_224 with seeded random weights, for the web bench:
model.safetensors + config.json (timm hub layout, f32) for vitrine and
model.onnx for onnxruntime-web, the same weights in both.

    python3 tests/perf/make_vit_tiny.py OUT_DIR
"""
import json
import os
import sys

import timm
import torch
from safetensors.torch import save_file


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "model.safetensors"))
    cfg = model.pretrained_cfg
    config = {
        "architecture": "vit_tiny_patch16_224",
        "num_classes": 1000,
        "pretrained_cfg": {k: cfg[k] for k in ["input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std"] if k in cfg},
    }
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=1)
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(model, (x,), os.path.join(out, "model.onnx"), input_names=["pixel_values"],
                      output_names=["logits"], opset_version=18, dynamo=True, external_data=False)
    print(f"vit_tiny_patch16_224 written to {out}")


if __name__ == "__main__":
    main()
