#!/usr/bin/env bash
# vitrine's one entry point.
#   ./build.sh serve   build, then (until the web app lands) classify the sample photos with the CLI
#   ./build.sh test    every test: unit, golden (vs timm/transformers), checkpoint errors, wgpu
#   ./build.sh bench   forward-pass timings: vitrine cpu and wgpu vs PyTorch eager, same machine
# Each installs what it needs on a fresh Debian machine (run as root, or have it installed).
set -euo pipefail
cd "$(dirname "$0")"

# A target directory outside the checkout, so fresh clones (CI) reuse compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vitrine/target}"
BIN="$CARGO_TARGET_DIR/release/vitrine"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    say "please install: ${missing[*]}"; return 1
  fi
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

native_deps() {
  command -v cargo >/dev/null || { say "cargo not found: install Rust from rustup"; exit 1; }
  # Mesa's lavapipe: a Vulkan driver on the CPU, so the wgpu backend runs without a GPU.
  apt_install mesa-vulkan-drivers
}

build_cli() {
  native_deps
  say "building the native CLI (release)"
  cargo build --release --bin vitrine
}

cmd_test() {
  native_deps
  say "running every test (release build)"
  cargo test --release -- --test-threads=1
}

cmd_serve() {
  build_cli
  say "the web app is not built yet; classifying the sample photos with the CLI instead"
  mkdir -p test-output
  "$BIN" classify tests/fixtures/images/*.png --model tests/fixtures/models/hf_vit \
    --overlay test-output/overlay.png
  say "overlays written to test-output/ (random-weight test model: labels are not meaningful)"
}

cmd_bench() {
  build_cli
  python3 -c 'import torch, timm' 2>/dev/null || { say "installing torch and timm for the reference"; pip install -q torch timm; }
  local threads; threads=$(nproc)
  say "vit_tiny_patch16_224, batch 1, $threads threads"
  "$BIN" bench --backend cpu --runs 30 --warmup 5 | tee /tmp/vitrine-bench-cpu.txt
  "$BIN" bench --backend wgpu --runs 20 --warmup 3 || say "wgpu bench failed (no adapter?)"
  python3 bench/bench_torch.py --runs 30 --warmup 5 --threads "$threads" | tee /tmp/vitrine-bench-torch.txt
  python3 - <<'PY'
import re
ours = float(re.search(r"median ([\d.]+) ms", open("/tmp/vitrine-bench-cpu.txt").read()).group(1))
torch = float(re.search(r"median ([\d.]+) ms", open("/tmp/vitrine-bench-torch.txt").read()).group(1))
print(f"vitrine cpu / PyTorch eager = {ours / torch:.2f}x")
PY
}

case "${1:-}" in
  serve) cmd_serve ;;
  test) cmd_test ;;
  bench) cmd_bench ;;
  *) echo "usage: ./build.sh serve|test|bench" >&2; exit 2 ;;
esac
