#!/usr/bin/env python3
"""Loads each model of the page's Hub gallery (www/models/hub.json) in vitrine
as it would come from huggingface.co, and holds its output to timm's or
transformers' own.

The Hub cannot be reached from the machines this project runs on, so each
repo is rebuilt in a temporary folder: the files the real repo has (same
names), its config.json and preprocessor_config.json with the real repo's
content (written below from the Hub's files: their byte sizes are printed
beside the Hub's), and same-shaped random weights (fixed seed) written the
way the Hub's are: timm's `save_for_hf` for timm repos (model.safetensors and
pytorch_model.bin), transformers' `save_pretrained` of the repo's class for
the others (pytorch_model.bin only for facebook/deit-small-distilled, as that
repo has). Tensors that init leaves constant (LayerNorm weights and biases,
zero biases, layer scales of 1e-5) get noise, so that no weight goes
untested. The README, .gitattributes and the TF/Flax weights of the real
repos are not written: vitrine reads none of them.

For each repo it runs

    vitrine classify tests/fixtures/images/chelsea.png --model DIR --json --top 5
    vitrine walkthrough tests/fixtures/images/chelsea.png --model DIR   (its `input`)

and the reference in PyTorch: timm's `create_model("local-dir:DIR")` with
`resolve_data_config` + `create_transform`, or transformers' model class and
AutoImageProcessor (PIL backend) read from DIR. It prints one line per repo:
the files and their sizes, vitrine's notes, how far vitrine's input is from
the reference's (in levels of 255), whether top-1 and top-5 agree, and the
max |Δ| of logits or features relative to their largest magnitude, both on
vitrine's own input (the same input: tolerance 1e-3) and end to end; and,
for a repo with both weight files, that pytorch_model.bin alone gives the
same output (vitrine, like the page, takes model.safetensors when both are
there).

Run by hand from the repository root (CI has no Python dependencies; about
1.5 minutes on 2 cores, and 0.7 GB of temporary disk, one repo at a time):

    pip install torch timm transformers safetensors pillow
    python3 tests/hub/check_gallery.py [--only SUBSTRING] [--keep DIR] [--timm-config saved]

`--keep DIR` leaves the rebuilt repos in DIR; `--timm-config saved` keeps
the config.json today's timm writes (with `model_args`) instead of the Hub's.
VITRINE names the binary (default ~/.cache/vitrine/target/release/vitrine).
Exit status 1 when a model fails to load or disagrees: top-1 differs, or
the relative error on the same input exceeds 1e-3, or vitrine's input is
more than 2 levels of 255 from the reference's (a misread preprocessing).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "tests" / "fixtures" / "images" / "chelsea.png"
VITRINE = os.environ.get("VITRINE", str(Path.home() / ".cache/vitrine/target/release/vitrine"))
LABELS = (ROOT / "src" / "checkpoint" / "imagenet-1k.txt").read_text().splitlines()
IMNET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
SEED = 0
SAME_INPUT_TOL = 1e-3
INPUT_LEVELS_TOL = 2.0


def timm_hub_config(arch, tag, num_classes, num_features, size, crop_pct, license=None):
    """A timm repo's config.json as timm's push of March–October 2023 wrote it."""
    cfg = {"tag": tag, "custom_load": False, "input_size": [3, size, size], "fixed_input_size": True,
           "interpolation": "bicubic", "crop_pct": crop_pct, "crop_mode": "center", **IMNET,
           "num_classes": num_classes, "pool_size": None, "first_conv": "patch_embed.proj",
           "classifier": "head"}
    if license:
        cfg["license"] = license
    return {"architecture": arch, "num_classes": num_classes, "num_features": num_features,
            "global_pool": "token", "pretrained_cfg": cfg}


def hf_config(arch, model_type, hidden, heads, patch, version, labels=False, **extra):
    """A transformers repo's config.json (ViT-family keys, sorted as transformers writes them)."""
    cfg = {"architectures": [arch], "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.0, "hidden_size": hidden, "image_size": 224,
           "initializer_range": 0.02, "intermediate_size": 4 * hidden, "layer_norm_eps": 1e-12,
           "model_type": model_type, "num_attention_heads": heads, "num_channels": 3,
           "num_hidden_layers": 12, "patch_size": patch, **extra, "transformers_version": version}
    if labels:
        cfg["id2label"] = {str(i): name for i, name in enumerate(LABELS)}
        cfg["label2id"] = {name: i for i, name in enumerate(LABELS)}
    return dict(sorted(cfg.items()))


DINOV2_CONFIG = {
    "architectures": ["Dinov2Model"], "attention_probs_dropout_prob": 0.0, "drop_path_rate": 0.0,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 384, "image_size": 518,
    "initializer_range": 0.02, "layer_norm_eps": 1e-06, "layerscale_value": 1.0, "mlp_ratio": 4,
    "model_type": "dinov2", "num_attention_heads": 6, "num_channels": 3, "num_hidden_layers": 12,
    "patch_size": 14, "qkv_bias": True, "torch_dtype": "float32",
    "transformers_version": "4.31.0.dev0", "use_swiglu_ffn": False}

# Each repo: how its weights are made, the JSON files it holds, the weight files it
# holds, and the Hub's sizes of its JSON files (bytes) for comparison.
REPOS = {
    "timm/deit_tiny_patch16_224.fb_in1k": dict(
        timm="deit_tiny_patch16_224.fb_in1k",
        json={"config.json": timm_hub_config("deit_tiny_patch16_224", "fb_in1k", 1000, 192, 224, 0.9)},
        weights=["model.safetensors", "pytorch_model.bin"], hub_bytes={"config.json": 587}),
    "facebook/dino-vits8": dict(
        hf="ViTModel",
        json={"config.json": hf_config("ViTModel", "vit", 384, 6, 8, "4.10.0.dev0", torch_dtype="float32"),
              # "Fix image mean and std" (Aug 2021): ImageNet's statistics, 224 px, bilinear.
              "preprocessor_config.json": {"do_normalize": True, "do_resize": True,
                                           "feature_extractor_type": "ViTFeatureExtractor",
                                           "image_mean": IMNET["mean"], "image_std": IMNET["std"],
                                           "resample": 2, "size": 224}},
        weights=["model.safetensors", "pytorch_model.bin"],
        hub_bytes={"config.json": 452, "preprocessor_config.json": 244}),
    "timm/vit_small_patch16_224.dino": dict(
        timm="vit_small_patch16_224.dino",
        json={"config.json": timm_hub_config("vit_small_patch16_224", "dino", 0, 384, 224, 0.9)},
        weights=["model.safetensors", "pytorch_model.bin"], hub_bytes={}),
    "facebook/dinov2-small": dict(
        hf="Dinov2Model",
        json={"config.json": DINOV2_CONFIG,
              "preprocessor_config.json": {
                  "crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
                  "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
                  "image_mean": IMNET["mean"], "image_processor_type": "BitImageProcessor",
                  "image_std": IMNET["std"], "resample": 3, "rescale_factor": 0.00392156862745098,
                  "size": {"shortest_edge": 256}}},
        weights=["model.safetensors", "pytorch_model.bin"],
        hub_bytes={"config.json": 547, "preprocessor_config.json": 436}),
    "timm/vit_small_patch14_reg4_dinov2.lvd142m": dict(
        timm="vit_small_patch14_reg4_dinov2.lvd142m",
        json={"config.json": timm_hub_config("vit_small_patch14_reg4_dinov2", "lvd142m", 0, 384, 518,
                                             1.0, license="apache-2.0")},
        weights=["model.safetensors", "pytorch_model.bin"], hub_bytes={"config.json": 618}),
    "facebook/deit-small-distilled-patch16-224": dict(
        hf="DeiTForImageClassificationWithTeacher",
        json={"config.json": hf_config("DeiTForImageClassificationWithTeacher", "deit", 384, 6, 16,
                                       "4.6.0.dev0", labels=True),
              "preprocessor_config.json": {"crop_size": 224, "do_center_crop": True, "do_normalize": True,
                                           "do_resize": True,
                                           "feature_extractor_type": "DeiTFeatureExtractor",
                                           "image_mean": IMNET["mean"], "image_std": IMNET["std"],
                                           "resample": 3, "size": 256}},
        weights=["pytorch_model.bin"], hub_bytes={"preprocessor_config.json": 287}),
    "google/vit-base-patch16-224": dict(
        hf="ViTForImageClassification",
        json={"config.json": hf_config("ViTForImageClassification", "vit", 768, 12, 16, "4.13.0.dev0",
                                       labels=True, qkv_bias=True),
              # 160 bytes: no resample (bilinear by default) and no processor type.
              "preprocessor_config.json": {"do_normalize": True, "do_resize": True,
                                           "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": 224}},
        weights=["model.safetensors", "pytorch_model.bin"], hub_bytes={"preprocessor_config.json": 160}),
}


def randomize_constants(model, gen):
    """Adds noise to each float tensor that init left constant, so every weight counts."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and tensor.numel() > 0 and bool((tensor == tensor.flatten()[0]).all()):
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=gen))


def build_timm(spec, folder, keep_saved_config):
    import timm
    from timm.models._hub import save_for_hf
    torch.manual_seed(SEED)
    model = timm.create_model(spec["timm"], pretrained=False).eval()
    randomize_constants(model, torch.Generator().manual_seed(SEED))
    save_for_hf(model, str(folder), safe_serialization="both")
    if not keep_saved_config:
        (folder / "config.json").unlink()


def build_hf(spec, folder):
    import transformers
    transformers.logging.disable_progress_bar()
    cls = getattr(transformers, spec["hf"])
    config = transformers.AutoConfig.for_model(**{k: v for k, v in spec["json"]["config.json"].items()
                                                 if k not in ("architectures", "transformers_version")})
    torch.manual_seed(SEED)
    kwargs = {"add_pooling_layer": False} if spec["hf"] == "ViTModel" else {}  # DINO's conversion has none
    model = cls(config, **kwargs).eval()
    randomize_constants(model, torch.Generator().manual_seed(SEED))
    model.save_pretrained(str(folder))
    (folder / "config.json").unlink()  # today's form; the repo's own is written instead
    state = load_file(str(folder / "model.safetensors"))  # the names save_pretrained writes
    if "pytorch_model.bin" in spec["weights"]:
        torch.save(state, folder / "pytorch_model.bin")
    if "model.safetensors" not in spec["weights"]:
        (folder / "model.safetensors").unlink()


def build(repo, spec, folder, keep_saved_config):
    if "timm" in spec:
        build_timm(spec, folder, keep_saved_config)
    else:
        build_hf(spec, folder)
    for name, content in spec["json"].items():
        if name == "config.json" and "timm" in spec and keep_saved_config:
            continue
        # timm's json.dump leaves no newline at the end; transformers' to_json_string adds one.
        (folder / name).write_text(json.dumps(content, indent=2) + ("" if "timm" in spec else "\n"))
    for extra in set(p.name for p in folder.iterdir()) - set(spec["json"]) - set(spec["weights"]):
        (folder / extra).unlink()  # e.g. generation_config.json: not in the repo


def describe_files(folder, spec):
    out = []
    for path in sorted(folder.iterdir()):
        size = path.stat().st_size
        text = f"{size / 1e6:.1f} MB" if size > 1e6 else (f"{size / 1e3:.1f} kB" if size > 1e4 else f"{size} B")
        hub = spec["hub_bytes"].get(path.name)
        if hub is not None:
            text += " (= Hub's)" if hub == size else f" (Hub's: {hub} B)"
        out.append(f"{path.name} {text}")
    return ", ".join(out)


def run_vitrine(args):
    proc = subprocess.run([VITRINE, *args], capture_output=True, text=True)
    notes = [line for line in proc.stderr.splitlines() if line.strip()]
    return proc.returncode, proc.stdout, notes


def reference_timm(folder, vitrine_input):
    import timm
    from timm.data import create_transform, resolve_data_config
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    data_config = resolve_data_config(model=model)
    x = create_transform(**data_config)(Image.open(IMAGE).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        run = lambda t: model(t)[0].double().numpy()
        return x, run(x), run(vitrine_input.reshape(x.shape)), data_config["mean"], data_config["std"]


def reference_hf(folder, spec, vitrine_input):
    import transformers
    cls = getattr(transformers, spec["hf"])
    kwargs = {"add_pooling_layer": False} if spec["hf"] == "ViTModel" else {}
    model = cls.from_pretrained(str(folder), **kwargs).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(str(folder), backend="pil")
    x = processor(images=Image.open(IMAGE).convert("RGB"), return_tensors="pt")["pixel_values"]

    def run(t):
        out = model(pixel_values=t)
        value = out.logits if hasattr(out, "logits") else out.last_hidden_state[:, 0]
        return value[0].double().numpy()

    with torch.no_grad():
        return x, run(x), run(vitrine_input.reshape(x.shape)), processor.image_mean, processor.image_std


def top(values, k=5):
    return [int(i) for i in np.argsort(-values, kind="stable")[:k]]


def relative(a, b):
    delta = float(np.abs(a - b).max())
    return delta, delta / max(float(np.abs(b).max()), 1e-12)


def check(repo, spec, folder, keep_saved_config):
    build(repo, spec, folder, keep_saved_config)
    files = describe_files(folder, spec)
    image = str(IMAGE.relative_to(ROOT))
    rc, stdout, notes = run_vitrine(["classify", image, "--model", str(folder), "--json", "--top", "5"])
    if rc != 0:
        return False, f"{repo}: FAIL, vitrine did not load it (exit {rc}) | files: {files}", notes
    result = json.loads(stdout.splitlines()[0])
    backbone = "features" in result
    output = np.array(result["features"] if backbone else result["logits"], dtype=np.float64)
    rc, walk, _ = run_vitrine(["walkthrough", image, "--model", str(folder)])
    if rc != 0:
        return False, f"{repo}: FAIL, vitrine walkthrough failed (exit {rc}) | files: {files}", notes
    vitrine_input = torch.tensor(json.loads(walk)["input"], dtype=torch.float32)
    if "timm" in spec:
        x, ref, ref_same, mean, std = reference_timm(folder, vitrine_input)
    else:
        x, ref, ref_same, mean, std = reference_hf(folder, spec, vitrine_input)
    if vitrine_input.numel() != x.numel():
        return False, (f"{repo}: FAIL, vitrine's input has {vitrine_input.numel()} values, the "
                       f"reference's {tuple(x.shape)} | files: {files}"), notes
    scale = torch.tensor(std).view(1, -1, 1, 1) * 255
    levels = float(((vitrine_input.reshape(x.shape) - x).abs() * scale).max())
    same_delta, same_rel = relative(output, ref_same)
    e2e_delta, e2e_rel = relative(output, ref)
    ok = same_rel <= SAME_INPUT_TOL and levels <= INPUT_LEVELS_TOL and output.shape == ref.shape
    what = "features" if backbone else "logits"
    line = (f"{repo}: {{verdict}} | files: {files} | input {tuple(x.shape[1:])}: max |Δ| {levels:.2f}/255 "
            f"(mean {[round(m, 3) for m in mean]}) | ")
    if not backbone:
        v_top = [t["index"] for t in result["top"]]
        top1_same, top1_e2e = v_top[0] == top(ref_same)[0], v_top[0] == top(ref)[0]
        ok = ok and top1_same and top1_e2e
        line += (f"top-1 agree: {'yes' if top1_e2e else 'no'} ({v_top[0]} "
                 f"{LABELS[v_top[0]].split(',')[0]!r}; same input: {'yes' if top1_same else 'no'}), "
                 f"top-5 same: {'yes' if v_top == top(ref) else 'no'} | ")
    else:
        line += "top-1: n/a (backbone) | "
    line += (f"{what}[{output.size}] max |Δ| same input {same_delta:.2e} (rel {same_rel:.1e}), "
             f"end to end {e2e_delta:.2e} (rel {e2e_rel:.1e})")
    if {"model.safetensors", "pytorch_model.bin"} <= set(spec["weights"]):
        # The page takes model.safetensors; a folder with only the pickle must give the same.
        aside = folder.parent / f"{folder.name}.safetensors"
        (folder / "model.safetensors").rename(aside)
        try:
            rc, stdout, bin_notes = run_vitrine(["classify", image, "--model", str(folder), "--json"])
        finally:
            aside.rename(folder / "model.safetensors")
        if rc != 0:
            ok, bin_text = False, f"not loaded: {bin_notes[-1] if bin_notes else rc}"
        else:
            bin_result = json.loads(stdout.splitlines()[0])
            bin_delta = float(np.abs(np.array(bin_result[what]) - output).max())
            ok = ok and bin_delta <= 1e-6 * max(float(np.abs(output).max()), 1.0)
            bin_text = "same output" if bin_delta == 0 else f"max |Δ| {bin_delta:.1e}"
        line += f" | pytorch_model.bin alone: {bin_text}"
    return ok, line.format(verdict="ok" if ok else "FAIL"), notes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="check only the repos whose name contains this")
    parser.add_argument("--keep", help="build the repos in this folder and leave them there")
    parser.add_argument("--timm-config", choices=["hub", "saved"], default="hub")
    args = parser.parse_args()
    torch.set_num_threads(2)
    gallery = [m["repo"] for m in json.loads((ROOT / "www/models/hub.json").read_text())["models"]]
    unknown = [r for r in gallery if r not in REPOS]
    if unknown:
        sys.exit(f"no recipe for {unknown}: add them to REPOS in {Path(__file__).name}")
    if not Path(VITRINE).exists():
        sys.exit(f"{VITRINE} not found: build it (./build.sh) or set VITRINE")
    failed = []
    for repo in gallery:
        if args.only and args.only not in repo:
            continue
        base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="vitrine-hub-"))
        folder = base / repo.replace("/", "--")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            ok, line, notes = check(repo, REPOS[repo], folder, args.timm_config == "saved")
        except Exception as e:  # a broken reference is a failure of this check, said in one line
            ok, line, notes = False, f"{repo}: FAIL, {type(e).__name__}: {e}", []
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
        print(line)
        for note in notes:
            print(f"    vitrine: {note}")
        sys.stdout.flush()
        if not ok:
            failed.append(repo)
    print(f"{len(failed)} of the gallery's models failed" + (f": {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
