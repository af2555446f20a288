#!/usr/bin/env bash
# GPU check for amgp on a fresh CUDA machine (no network needed), run from anywhere:
#   bash bench/gpu_check.sh            # logs and results go to $OUT (default ./gpu_out)
# Stages: environment, build (pip install -e, MAX_JOBS=16), the test suite with the GPU tests, the long
# fuzz (FUZZ_EXAMPLES cases per backend, default 1000; counts in $OUT/fuzz_counts.json; Triton on one
# fixed tile, AMGP_TRITON_TILE, since autotuning ~150 new shapes does not fit), compute-sanitizer memcheck
# over small forward/backward runs of every dtype, the kernel benchmark (amgp.bench), the whole-MLP training
# step benchmark (MLPerf top MLP, B=2048 and 8192), `amgp-dlrm --compare --use-gpu` at a GPU-sized setting,
# then a compute-sanitizer racecheck. Every stage runs even if an earlier one failed (the ones that need the
# build are skipped when it failed), has its own time cap, and leaves its log (and JSON) in $OUT as it ends,
# so a run cut short still returns what ran; a table of stage results prints last; the exit status is
# non-zero when any stage failed. The whole run is held to a time budget (BUDGET_S, default 470 s).
set -u

cd "$(dirname "$0")/.." || exit 2
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
BUDGET_S="${BUDGET_S:-470}"
START=$(date +%s)
export PYTHONUNBUFFERED=1
# torch.compile's parallel compile workers shut down after 300 s idle and can hang a later compile: compile
# in-process instead.
export TORCHINDUCTOR_COMPILE_THREADS=1

# The interpreter that holds torch (some images only have python3).
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" >/dev/null 2>&1; then
      PYTHON="$candidate"
      break
    fi
  done
fi
PYTHON="${PYTHON:-python3}"

if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then export CUDA_HOME=/usr/local/cuda; fi

STAGES=()
declare -A STATUS SECS NOTE

# run_stage NAME TIMEOUT_S COMMAND... : runs with its log in $OUT/NAME.log, within the budget.
run_stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET_S - ($(date +%s) - START)))
  STAGES+=("$name")
  if [ "$left" -le 5 ]; then
    STATUS[$name]=skip; SECS[$name]=0; NOTE[$name]="time budget spent"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s)"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  SECS[$name]=$(($(date +%s) - t0))
  if [ "$rc" -eq 0 ]; then
    STATUS[$name]=ok
  else
    STATUS[$name]=FAIL
    NOTE[$name]="exit $rc$([ "$rc" -eq 124 ] && echo ' (timeout)')"
  fi
  tail -n 3 "$OUT/$name.log" | sed 's/^/   /'
}

skip_stage() {
  STAGES+=("$1"); STATUS[$1]=skip; SECS[$1]=0; NOTE[$1]="$2"
}

# --- environment -------------------------------------------------------------------------------
# Every check must pass (set -e): a missing GPU, torch without CUDA or no nvcc fails the stage.
run_stage env 60 bash -eo pipefail -c "nvidia-smi; $PYTHON -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0))'; echo CUDA_HOME=\${CUDA_HOME:-}; \"\${CUDA_HOME:+\$CUDA_HOME/bin/}nvcc\" --version | tail -1"

# --- build ---------------------------------------------------------------------------------------
run_stage build 240 env MAX_JOBS=16 "$PYTHON" -m pip install --no-build-isolation --no-deps -e .
run_stage build_info 60 "$PYTHON" -c "
import json, torch, amgp_kernels
assert torch.cuda.is_available(), 'torch sees no CUDA GPU: the GPU tests would all be skipped'
info = amgp_kernels.build_info()
print(json.dumps(info, indent=1, default=str))
assert 'cuda' in info['compiled_backends'], 'the CUDA backend was not built'
assert 'cuda' in info['available_backends'], 'the CUDA backend is not usable'
"
built=${STATUS[build_info]}

# --- tests ---------------------------------------------------------------------------------------
# The fuzz runs in its own stage, so that a slow one (the Triton backend compiles and autotunes its kernels
# for every new shape) cannot use up the time of the stages after it.
if [ "$built" = ok ]; then
  run_stage tests 150 "$PYTHON" -m pytest tests -q --ignore=tests/test_fuzz_block_linear.py \
    --junitxml="$OUT/tests.xml"
  run_stage fuzz 90 env AMGP_FUZZ_LONG_EXAMPLES="${FUZZ_EXAMPLES:-1000}" AMGP_FUZZ_COUNTS="$OUT/fuzz_counts.json" \
    AMGP_TRITON_TILE="${FUZZ_TRITON_TILE:-64,64,32,4,4}" \
    "$PYTHON" -m pytest tests/test_fuzz_block_linear.py -q --runslow -k long
else
  skip_stage tests "no usable CUDA build or GPU (build_info)"
  skip_stage fuzz "no usable CUDA build or GPU (build_info)"
fi

# --- compute-sanitizer ---------------------------------------------------------------------------
cat >"$OUT/sanitizer_case.py" <<'EOF'
# Small forward + backward runs of every dtype through the CUDA kernels, for compute-sanitizer:
# odd block sizes and tails (element-wise loads), aligned shapes (16-byte cp.async), split-K dW.
import torch
import amgp_kernels
from amgp_kernels.blocks import num_blocks
from amgp_kernels.testing import random_blocks

gen = torch.Generator().manual_seed(0)
cases = [((37,), 75, 52, 16, 0.5, 0.5), ((2, 9), 64, 96, 32, "all", 0.5), ((300,), 256, 136, 24, 0.5, "single"),
         ((1024,), 64, 64, 32, "none", 0.5), ((2048,), 128, 64, 64, 0.5, "all")]
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    for batch, in_f, out_f, bs, in_kind, out_kind in cases:
        in_b = random_blocks(num_blocks(in_f, bs), in_kind, gen, device="cuda")
        out_b = random_blocks(num_blocks(out_f, bs), out_kind, gen, device="cuda")
        x = torch.randn(*batch, in_f, generator=gen).to("cuda", dtype).requires_grad_()
        w = torch.randn(out_f, in_f, generator=gen).to("cuda", dtype).requires_grad_()
        b = torch.randn(out_f, generator=gen).to("cuda", dtype).requires_grad_()
        y = amgp_kernels.block_linear(x, w, b, in_b, out_b, bs, "relu", backend="cuda")
        y.backward(torch.randn_like(y))
torch.cuda.synchronize()
print("sanitizer case done")
EOF
SANITIZER=""
for candidate in "${CUDA_HOME:-/nonexistent}/bin/compute-sanitizer" /usr/local/cuda/bin/compute-sanitizer \
                 "$(command -v compute-sanitizer 2>/dev/null)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then SANITIZER=$candidate; break; fi
done
# sanitize TOOL LIMIT_S: one compute-sanitizer pass over the small case.
sanitize() {
  local tool=$1 limit=$2
  if [ "$built" != ok ]; then skip_stage "$tool" "no usable CUDA build or GPU (build_info)"; return; fi
  if [ -z "$SANITIZER" ]; then
    echo "compute-sanitizer not found under \$CUDA_HOME/bin, /usr/local/cuda/bin or PATH: skipping $tool"
    skip_stage "$tool" "compute-sanitizer not found"
    return
  fi
  run_stage "$tool" "$limit" "$SANITIZER" --tool "$tool" --error-exitcode 1 "$PYTHON" "$OUT/sanitizer_case.py"
  if [ "${STATUS[$tool]}" = FAIL ] && grep -q "Device not supported" "$OUT/$tool.log"; then
    STATUS[$tool]=skip; NOTE[$tool]="compute-sanitizer does not support this device/runtime"
  fi
}
sanitize memcheck 60

# --- benchmarks ----------------------------------------------------------------------------------
if [ "$built" = ok ]; then
  run_stage bench 90 "$PYTHON" -m amgp.bench --device cuda --dtype bfloat16 \
    --shapes 8192x1024x1024,8192x4096x4096 --passes fwd,fwd_bwd --no-progress \
    --json "$OUT/bench_gpu.json" --plot "$OUT/bench_gpu.png"
  echo
  echo "== benchmark table ($OUT/bench.log)"
  grep '^|' "$OUT/bench.log" || echo "(no table in the benchmark output)"
  run_stage training 45 "$PYTHON" -m amgp.bench --training --training-model mlp --device cuda --dtype bfloat16 \
    --preset mlperf --batch 2048,8192 --densities 1,0.5 --no-progress --json "$OUT/bench_training_gpu.json"
  grep '^|' "$OUT/training.log" || true
  # MLPerf DLRM widths (embedding dim 128) at a GPU batch: AUC, MLP FLOPs saved, wall clock saved.
  run_stage dlrm 60 "$PYTHON" -m amgp.cli.dlrm --compare --use-gpu --mini-batch-size 8192 --num-batches 100 \
    --arch-sparse-feature-size 128 --arch-mlp-bot 13-512-256-128 --arch-mlp-top 1024-1024-512-256-1 \
    --no-progress --report-json "$OUT/dlrm_compare_gpu.json"
else
  skip_stage bench "no usable CUDA build or GPU (build_info)"
  skip_stage training "no usable CUDA build or GPU (build_info)"
  skip_stage dlrm "no usable CUDA build or GPU (build_info)"
fi

# Shared-memory race check of the cp.async pipeline: last, as the budget allows.
sanitize racecheck 45

# --- summary (last) ------------------------------------------------------------------------------
failed=0
echo
echo "== GPU check summary ($(date -u +%Y-%m-%dT%H:%MZ), total $(($(date +%s) - START)) s, logs in $OUT)"
printf '| %-11s | %-6s | %6s | %s\n' stage status time note
printf '|-------------|--------|--------|------\n'
for name in "${STAGES[@]}"; do
  printf '| %-11s | %-6s | %5ss | %s\n' "$name" "${STATUS[$name]}" "${SECS[$name]}" "${NOTE[$name]:-}"
  [ "${STATUS[$name]}" = FAIL ] && failed=1
done
exit $failed
