#!/usr/bin/env bash
# vitrine's one entry point.
#   ./build.sh serve   build the web app (wasm + static site) and serve it on http://127.0.0.1:8080
#   ./build.sh dist    write the static site to dist/ (works from any static host, under any sub-path;
#                      VITRINE_HUB_MODELS="org/name ..." bundles those Hub models into it)
#   ./build.sh bundle [DIR]  bundle VITRINE_HUB_MODELS into a site already built (default dist/)
#   ./build.sh test    every test: unit, golden (vs timm/transformers), checkpoint errors, CLI, wgpu, browser
#   ./build.sh fuzz [SECONDS]  the parsers' mutation fuzzer for SECONDS (default 600) from a fresh seed
#   ./build.sh bench [--quick] [--avx2]  every figure of docs/benchmark.md: module sizes, the first result after
#                      navigation, the page beside onnxruntime-web, native beside PyTorch and the machine's matrix ceiling
#   ./build.sh bench-web  the page's latency (bench.html) beside onnxruntime-web, and the memory check
# Each installs what it needs on a fresh Debian machine (run as root, or have it installed).
set -euo pipefail
cd "$(dirname "$0")"

# A target directory outside the checkout, so fresh clones (CI) reuse compiled dependencies.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vitrine/target}"
BIN="${VITRINE_BIN:-$CARGO_TARGET_DIR/release/vitrine}"

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
  # Mesa's lavapipe: a Vulkan driver on the CPU, so the wgpu backend runs without a GPU;
  # Fashion-MNIST for training and evaluating the default model.
  apt_install mesa-vulkan-drivers dataset-fashion-mnist
}

build_cli() {
  native_deps
  say "building the native CLI (release)"
  cargo build --release --bin vitrine
}

browser_deps() {
  # Debian's Chromium (headless, with WebGPU on SwiftShader) driven by npm's playwright-core.
  apt_install chromium
  command -v npm >/dev/null || apt_install npm
  (cd tests/e2e && npm ci --silent --no-audit --no-fund)
}

# Runs one test step, its output teed to test-output/NAME.log, and adds
# what it counted to the totals (cargo's "test result:" lines, node's
# "pass"/"fail" lines). A step that fails without counting a failure (a
# build error, a crash) counts as one failure, so it cannot pass unseen.
TOTAL_PASSED=0 TOTAL_FAILED=0 FAILED_STEPS=()
test_step() {
  local name=$1; shift
  local log="test-output/$name.log" status=0
  mkdir -p test-output
  "$@" 2>&1 | tee "$log" || status=$?
  local counts; counts=$(python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
cargo = re.findall(r"^test result: \w+\. (\d+) passed; (\d+) failed", text, re.M)
node_pass = re.findall(r"^(?:# |\u2139 )pass (\d+)$", text, re.M)
node_fail = re.findall(r"^(?:# |\u2139 )fail (\d+)$", text, re.M)
passed = sum(int(p) for p, _ in cargo) + sum(map(int, node_pass))
failed = sum(int(f) for _, f in cargo) + sum(map(int, node_fail))
print(passed, failed)
PY
)
  local passed=${counts% *} failed=${counts#* }
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  TOTAL_PASSED=$((TOTAL_PASSED + passed)) TOTAL_FAILED=$((TOTAL_FAILED + failed))
  [ "$failed" -eq 0 ] || FAILED_STEPS+=("$name")
  say "$name: $passed passed, $failed failed (log: $log)"
}

cmd_test() {
  native_deps
  # --no-fail-fast: one failing test binary must not hide the others.
  # First on the AVX2/FMA kernels, which AVX2-only CPUs run: a build
  # without the avx512 feature takes that path on every x86-64 (only gemm,
  # burn-flex and vitrine are compiled a second time). Then the default
  # build, which leaves the CLI ($BIN) as `./build.sh serve` builds it.
  say "running the Rust tests on the AVX2/FMA kernels"
  test_step rust-avx2 cargo test --release --no-fail-fast --no-default-features --features cpu,wgpu,train -- --test-threads=1
  say "running the Rust tests again (default build; AVX-512 kernels where the CPU has them)"
  test_step rust cargo test --release --no-fail-fast -- --test-threads=1
  # The site is built by a second ./build.sh, so that its first failing
  # command stops it (set -e does not apply inside an `if` condition).
  if ./build.sh dist; then
    browser_deps
    say "running the browser tests (headless Chromium)"
    test_step browser bash -c 'cd tests/e2e && VITRINE_BIN="$0" node --test --test-concurrency=1 --test-reporter=spec' "$BIN"
  else
    TOTAL_FAILED=$((TOTAL_FAILED + 1)); FAILED_STEPS+=("site build")
  fi
  [ ${#FAILED_STEPS[@]} -eq 0 ] || say "failed: ${FAILED_STEPS[*]}"
  # One line for the whole run, Rust and browser tests together.
  echo "tests: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
  [ "$TOTAL_FAILED" -eq 0 ]
}

# tests/fuzz.rs for longer than the test suite's 20 s, from a new seed each
# time (VITRINE_FUZZ_SEED=N repeats a run). Findings land in test-output/fuzz/.
cmd_fuzz() {
  native_deps
  local seconds=${1:-600} seed=${VITRINE_FUZZ_SEED:-$(date +%s)}
  say "fuzzing the parsers for $seconds s from seed $seed"
  VITRINE_FUZZ_SECONDS=$seconds VITRINE_FUZZ_SEED=$seed \
    cargo test --release --test fuzz -- --nocapture
}

# The wasm-bindgen CLI must be exactly the version in Cargo.lock.
wasm_bindgen_cli() {
  local want
  want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print}' Cargo.lock)
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $want\$"; then
    say "installing wasm-bindgen-cli $want"
    cargo install wasm-bindgen-cli --version "$want"
  fi
}

# wasm-opt from npm's binaryen (Debian's is too old for this module).
wasm_opt() {
  local bin=.tools/node_modules/.bin/wasm-opt
  if [ ! -x "$bin" ]; then
    command -v npm >/dev/null || apt_install npm
    say "installing binaryen (wasm-opt) from npm"
    npm install --silent --prefix .tools binaryen@132 >/dev/null
  fi
  echo "$bin"
}

build_site() {
  local out=$1
  command -v cargo >/dev/null || { say "cargo not found: install Rust from rustup"; exit 1; }
  rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  wasm_bindgen_cli
  local wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/vitrine.wasm"
  rm -rf "$out" && mkdir -p "$out"
  cp -r www/. "$out/"
  # The CPU modules (pkg/): two with the same JavaScript glue; the second
  # one's matrix kernel uses relaxed SIMD's fused multiply-add, and the
  # worker loads it where the browser validates relaxed SIMD (Chromium does;
  # see docs/performance.md, "Why the hand-written kernels"). Only the
  # vitrine crate differs between the two builds, so the second one takes
  # seconds. The WebGPU module (pkg-webgpu/, which carries the CPU backend
  # too, for a fallback) is fetched only by a page with a WebGPU adapter.
  say "building the wasm modules (CPU: SIMD128, and SIMD128 + relaxed SIMD; WebGPU)"
  cargo build --lib --target wasm32-unknown-unknown --profile wasm-release --no-default-features --features cpu,relaxed-simd
  wasm-bindgen --target web --out-dir "$out/pkg-relaxed" "$wasm"
  cargo build --lib --target wasm32-unknown-unknown --profile wasm-release --no-default-features --features cpu
  wasm-bindgen --target web --out-dir "$out/pkg" "$wasm"
  cmp -s "$out/pkg/vitrine.js" "$out/pkg-relaxed/vitrine.js" ||
    { say "the two CPU modules got different JavaScript glue: they cannot share vitrine.js"; exit 1; }
  mv "$out/pkg-relaxed/vitrine_bg.wasm" "$out/pkg/vitrine_relaxed_bg.wasm"
  rm -r "$out/pkg-relaxed"
  cargo build --lib --target wasm32-unknown-unknown --profile wasm-release --no-default-features --features cpu,webgpu
  wasm-bindgen --target web --out-dir "$out/pkg-webgpu" "$wasm"
  # VITRINE_WASM_OPT=0 skips wasm-opt (it takes minutes) while iterating,
  # and says so to the size budget's test (tests/e2e/size.test.mjs).
  if [ "${VITRINE_WASM_OPT:-1}" = 0 ]; then
    touch "$out/pkg/.unoptimised"
  else
    local opt; opt=$(wasm_opt)
    # -ocimfs=20: a function of more than 20 expressions is not inlined into
    # its one caller. By default wasm-opt inlines every such function, which
    # here merged a model's whole load into one 88 kB function and Burn's
    # from_data into a 136 kB one; V8 counts a function's calls and loops by
    # its size and soon compiles it again with its optimising compiler,
    # 100-190 ms of a core each, during the page's first result
    # (docs/performance.md). Kept apart, the module is also 14% smaller
    # gzipped.
    local flags=(-Os -ocimfs=20 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals)
    "$opt" "${flags[@]}" "$out/pkg/vitrine_bg.wasm" -o "$out/pkg/vitrine_bg.wasm"
    "$opt" "${flags[@]}" --enable-relaxed-simd "$out/pkg/vitrine_relaxed_bg.wasm" -o "$out/pkg/vitrine_relaxed_bg.wasm"
    "$opt" "${flags[@]}" "$out/pkg-webgpu/vitrine_bg.wasm" -o "$out/pkg-webgpu/vitrine_bg.wasm"
  fi
  local f
  for f in pkg/vitrine_bg pkg/vitrine_relaxed_bg pkg-webgpu/vitrine_bg; do
    say "site in $out: $f.wasm $(du -h "$out/$f.wasm" | cut -f1) raw, $(gzip -9c "$out/$f.wasm" | wc -c | awk '{printf "%.1f MB", $1/1e6}') gzip"
  done
}

# VITRINE_HUB_MODELS="ORG/NAME[@REVISION] ...": those Hub models copied
# into the site (dist/models/ORG--NAME/, listed in its manifest), so that
# it serves them itself and never sends its visitors to the Hub for them.
bundle_hub_models() {
  [ -n "${VITRINE_HUB_MODELS:-}" ] || return 0
  [ -f "$1/models/manifest.json" ] || { say "$1 is not a site (no models/manifest.json): run ./build.sh dist"; exit 1; }
  [ -n "${VITRINE_BIN:-}" ] || build_cli
  local m folder
  for m in $VITRINE_HUB_MODELS; do
    folder=${m#hf:}; folder=${folder%%@*}; folder=${folder//\//--}
    say "bundling $m from the Hub into $1/models/$folder"
    "$BIN" fetch "$m" --out "$1/models/$folder" --manifest "$1/models/manifest.json"
  done
}

cmd_dist() {
  build_site dist
  bundle_hub_models dist
}

cmd_serve() {
  build_site dist
  bundle_hub_models dist
  say "serving http://127.0.0.1:8080 (Ctrl-C to stop)"
  python3 -m http.server 8080 --bind 127.0.0.1 --directory dist
}

# The site, Chromium, the references (PyTorch, timm, ONNX export) and onnxruntime-web.
bench_deps() {
  build_site dist
  apt_install chromium
  command -v npm >/dev/null || apt_install npm
  python3 -c 'import torch, timm, onnx, onnxscript' 2>/dev/null || { say "installing torch, timm and onnx for the references"; pip install -q torch timm onnx onnxscript; }
  (cd tests/perf && npm ci --silent --no-audit --no-fund)
}

cmd_bench_web() {
  bench_deps
  say "web bench: vitrine (CPU wasm, WebGPU) beside onnxruntime-web, headless Chromium"
  node tests/perf/bench_web.mjs "$@"
}

cmd_bench() {
  local avx2=() rest=()
  for a in "$@"; do [ "$a" = --avx2 ] && avx2=(--avx2-bin "$CARGO_TARGET_DIR/release/vitrine-avx2") || rest+=("$a"); done
  if [ ${#avx2[@]} -gt 0 ]; then
    # The AVX2 kernels on every x86-64, as an AVX2-only machine runs them.
    native_deps
    say "building the native CLI without AVX-512 (release)"
    cargo build --release --bin vitrine --no-default-features --features cpu,wgpu,train
    cp "$CARGO_TARGET_DIR/release/vitrine" "$CARGO_TARGET_DIR/release/vitrine-avx2"
  fi
  build_cli
  bench_deps
  say "bench: sizes, first result, the page beside onnxruntime-web, native beside PyTorch (docs/benchmark.md)"
  VITRINE_BIN="$BIN" node tests/perf/bench.mjs "${avx2[@]}" "${rest[@]}"
}

case "${1:-}" in
  serve) cmd_serve ;;
  dist) cmd_dist ;;
  bundle) bundle_hub_models "${2:-dist}" ;;
  test) cmd_test ;;
  fuzz) shift; cmd_fuzz "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  bench-web) shift; cmd_bench_web "$@" ;;
  *) echo "usage: ./build.sh serve|dist|bundle [DIR]|test|fuzz [SECONDS]|bench [--quick] [--avx2]|bench-web" >&2; exit 2 ;;
esac
