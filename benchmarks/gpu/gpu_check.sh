#!/bin/bash
# unetlab on one CUDA GPU in one run of about 9 minutes: a like-for-like PyTorch table beside the
# reference network, and Jittor on a CUDA 13 toolkit (cuDNN 9, speed, memory, correctness, the
# out-of-bounds convolution gradient).  Two pipelines run side by side:
#   torch   warm inductor's cache -> benchmarks/ddpm_throughput.py at batch 128 and 512, both nets
#           in every mode (eager fp32/TF32/bf16, compiled, CUDA graphs + channels-last), fastest
#           of 3 -> profiles (eager, CUDA graphs) -> DDIM-100 wall time -> cuDNN autotuning ->
#           memory and the largest batch
#   jittor  install -> import (core build) -> cuDNN 9 convolutions + bench -> gemm bench (fp32,
#           fp16) -> profile -> memory and the largest batch -> tests/test_gpu.py -> the
#           out-of-bounds reproducer and the gemm path under compute-sanitizer
# Timed parts on either side hold $LOCK (flock), so no two timings overlap; untimed work (compiling,
# correctness checks) runs freely, and can only slow a timed run, hence the fastest of 3.
# Logs go to $WORK/logs (packed into $OUT/logs.tgz at the end); $OUT gets summary.txt, the
# throughput tables and Jittor's bench rows.  Run from anywhere:  bash benchmarks/gpu/gpu_check.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore::SyntaxWarning   # Jittor 1.3.11 on Python 3.12
unset UNETLAB_QUIET
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO" || exit 2
OUT=${OUT:-/tmp/gpu_check/out}
WORK=${CHECK_WORK:-/tmp/gpu_check/work}
LOGS=$WORK/logs
SITE=${SITE:-/tmp/site}
export PY=${PY:-python3}
WHEELS=${CHECK_WHEELS:-.whl}
BUDGET=${CHECK_BUDGET_S:-510}
export CHECK_DEVICE=${CHECK_DEVICE:-cuda} CHECK_SPEC=${CHECK_SPEC:-ddpm}
export CHECK_LOCK=$WORK/gpu.lock
if [ -z "${JITTOR_HOME:-}" ]; then
  export JITTOR_HOME=/tmp/jt_home HOME=/tmp/jt_home
fi
export UNETLAB_JITTOR_DEVICE=$CHECK_DEVICE
mkdir -p "$OUT" "$LOGS" "$SITE" "$JITTOR_HOME"
SUMMARY=$LOGS/summary.txt
: > "$SUMMARY"
T0=$(date +%s)
# at the end: the markdown tables join the logs, so that $OUT holds at most 8 files
pack() { mv "$OUT"/*.md "$LOGS"/ 2>/dev/null; cp "$SUMMARY" "$OUT/summary.txt"; tar czf "$OUT/logs.tgz" -C "$WORK" logs 2>/dev/null; }
trap pack EXIT

left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
say() { echo "$*" | tee -a "$SUMMARY"; }

# stage NAME LIMIT CMD...: CMD with at most LIMIT seconds, fewer
# when the budget runs short; output in $LOGS/NAME.log, a line in the summary; CMD's status.
stage() {
  local name=$1 limit=$2 l t rc
  shift 2
  l=$(left)
  if [ "$l" -lt "$limit" ]; then limit=$l; fi
  if [ "$limit" -lt 15 ]; then say "$name: skipped (budget spent)"; return 98; fi
  t=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  local how="rc=$rc"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then how="TIMEOUT (rc=$rc)"; fi
  say "$name: $how in $(( $(date +%s) - t ))s (limit ${limit}s, t=$(( $(date +%s) - T0 ))s)"
  tr '\r' '\n' < "$LOGS/$name.log" | grep -v '^Compiling\|^\s*$\|^\[i \|^\[w ' | tail -"${TAIL:-8}" | cut -c1-600 \
    | sed 's/^/    /' | tee -a "$SUMMARY"
  return $rc
}

say "== env (device $CHECK_DEVICE, budget ${BUDGET}s)"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 | head -2
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -2 | head -1)"
  $PY -V; echo "cores: $(nproc)"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" 2>&1 | tail -1
  command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer
} 2>&1 | tee -a "$SUMMARY"

install_wheels() {
  if ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$SITE" "$WHEELS"/*.whl || return 1
  fi
  $PY - "$SITE" <<'EOF'
import pathlib, sys, tomllib
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path(sys.argv[1]) / f"unetlab-{project['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: unetlab\nVersion: {project['version']}\n")
points = project.get("entry-points", {}).get("unetlab", {})
(info / "entry_points.txt").write_text("[unetlab]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
from unetlab import get_registry
print("presets:", sorted(get_registry().presets))
EOF
}
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export -f install_wheels
export WHEELS SITE
stage install 120 bash -c install_wheels

STAGES="$REPO/benchmarks/gpu/gpu_stages.py"
# a CPU dry run of the stages: CHECK_DEVICE=cpu TORCH_PRECISION=fp32 TORCH_BATCHES="2 2" JT_BATCH=2 \
#   TORCH_CASES=unetlab:off,reference:off CHECK_WHEELS=none bash benchmarks/gpu/gpu_check.sh
read -r TB1 TB2 <<< "${TORCH_BATCHES:-128 512}"
JB=${JT_BATCH:-128}
THROUGHPUT=("$PY" "$REPO/benchmarks/ddpm_throughput.py" --precision "${TORCH_PRECISION:-bf16}" --lock "$CHECK_LOCK" --steps "${TORCH_STEPS:-8}" --warmup 3 --repeats 3)

# --- torch pipeline (background) ---------------------------------------------------------------
# Like for like: the reference network (the DDPM network with its dropout) and unetlab's ddpm
# preset in every mode: eager fp32 (TF32 off), TF32 and bf16; compiled (default); compiled with
# CUDA graphs + channels-last; at batch $TB1 and $TB2.  Compilation is slow (about a minute a
# case, cold), so an untimed stage first fills inductor's cache with every compiled case at once.
COMPILED="reference:default unetlab:default reference:reduce-overhead:cl unetlab:reduce-overhead:cl"
LIKE="${TORCH_CASES:-reference:off,unetlab:off,reference:reduce-overhead:cl,unetlab:reduce-overhead:cl,reference:default,unetlab:default,reference:off:tf32,unetlab:off:tf32,reference:off:fp32,unetlab:off:fp32}"
warm() {
  local pids=() b c
  for b in $TB1 $TB2; do for c in $COMPILED; do
    UNETLAB_QUIET=1 "${THROUGHPUT[@]}" --steps 1 --warmup 1 --repeats 1 --batch-sizes "$b" --cases "$c" > "$LOGS/warm_${b}_${c//:/_}.log" 2>&1 &
    pids+=($!)
  done; done
  wait "${pids[@]}"
  grep -h '"error"' "$LOGS"/warm_*.log | cut -c1-300
  return 0
}
export -f warm
export COMPILED TB1 TB2 LOGS
(
  if [ "${TORCH_WARM:-1}" = 1 ]; then TAIL=4 stage torch_warm 200 bash -c 'THROUGHPUT=("${@}"); warm' _ "${THROUGHPUT[@]}"; fi
  TAIL=14 stage torch_b$TB1 260 env UNETLAB_QUIET=1 "${THROUGHPUT[@]}" --batch-sizes "$TB1" --out "$OUT/throughput_b$TB1" --cases "$LIKE" &
  TAIL=14 stage torch_b$TB2 260 env UNETLAB_QUIET=1 "${THROUGHPUT[@]}" --batch-sizes "$TB2" --out "$OUT/throughput_b$TB2" --cases "$LIKE" &
  wait
  # where the time goes: eager bf16 at $TB1 (the eager gap), CUDA graphs at $TB2 (the 8,000 img/s target)
  TAIL=12 stage torch_profile_eager 60 env UNETLAB_QUIET=1 $PY "$STAGES" torch_profile unetlab bf16 off "$TB1"
  TAIL=6 stage torch_profile_eager_ref 60 env UNETLAB_QUIET=1 $PY "$STAGES" torch_profile reference bf16 off "$TB1"
  TAIL=12 stage torch_profile_graphs 90 env UNETLAB_QUIET=1 $PY "$STAGES" torch_profile unetlab bf16 reduce-overhead "$TB2"
  # what a user waits for: DDIM-100 samples for FID (compiled, CUDA graphs, bf16), 50k extrapolated
  TAIL=3 stage ddim_wall 90 env UNETLAB_QUIET=1 $PY "$STAGES" ddim_wall "${DDIM_SAMPLES:-4096}" "${DDIM_BATCH:-1024}" 100
  # cuDNN's per-shape algorithm search with CUDA graphs, both batches
  TAIL=6 stage torch_tuned 120 env UNETLAB_QUIET=1 TORCHINDUCTOR_FREEZING=1 "${THROUGHPUT[@]}" --cudnn-benchmark \
    --batch-sizes "$TB1,$TB2" --out "$OUT/throughput_tuned" --cases "${TORCH_CASES:-unetlab:reduce-overhead:cl}"
  # memory, measured the same way as Jittor's (eager fp32, batch $JB), and the largest batch that trains
  TAIL=2 stage torch_memory 60 env UNETLAB_QUIET=1 $PY "$STAGES" train_step torch fp32 "$JB"
  for B in ${TORCH_LARGEST:-2048 4096 8192}; do TAIL=2 stage "torch_largest_B$B" 60 env UNETLAB_QUIET=1 $PY "$STAGES" train_step torch fp32 "$B" || break; done
) &
TORCH_PID=$!

# --- jittor pipeline ---------------------------------------------------------------------------
say "== jittor"
stage import 300 $PY "$STAGES" import
grep -q "jit_utils updated" "$LOGS/import.log" && stage import2 200 $PY "$STAGES" import
export UNETLAB_QUIET=1
# cuDNN 9 for Jittor's own convolutions: build, check, time one conv, then the ddpm bench rows
TAIL=12 stage cudnn9 240 $PY "$STAGES" cudnn9 "$OUT/jittor_bench_cudnn9.json" "$JB" fp32,fp16
# unetlab's gemm convolutions (no cuDNN): fp32 and fp16 bench rows
TAIL=6 stage jittor_bench 150 $PY "$STAGES" jittor_bench "$OUT/jittor_bench.json" "$JB" fp32,fp16
TAIL=30 stage profile 80 $PY "$STAGES" profile "$JB"
# memory as PyTorch's is measured (peak of live arrays, held), and the largest batch that trains
TAIL=2 stage jittor_memory 90 $PY "$STAGES" train_step jittor fp32 "$JB"
for B in ${JT_LARGEST:-256 512 1024}; do TAIL=2 stage "jittor_largest_B$B" 90 $PY "$STAGES" train_step jittor fp32 "$B" || break; done
# the project's GPU tests: parity with PyTorch (1e-4) and training at batch 128
TAIL=15 stage gpu_tests 240 $PY -m pytest -q -x -p no:cacheprovider tests/test_gpu.py
# the upstream report's reproducer (Jittor's own convolution, no cuDNN) under compute-sanitizer
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
$SAN --version > "$LOGS/sanitizer_version.log" 2>&1
TAIL=20 stage conv_oob_memcheck 90 env REPRO_PREPARE=unetlab "$SAN" --tool memcheck --print-limit 6 $PY "$REPO/benchmarks/gpu/jittor_conv_oob/repro.py"
TAIL=8 stage gemm_memcheck 60 "$SAN" --tool memcheck --print-limit 4 $PY "$STAGES" gemm_conv_memcheck 16

say "== waiting for the torch pipeline"
wait $TORCH_PID
for f in "$OUT"/throughput_*.md; do [ -f "$f" ] && { echo "$f"; cat "$f"; } | tee -a "$SUMMARY"; done
say "== results"
grep -h '"ok"\|"mode"\|"built_s"\|"kernel_s_per_step"' "$LOGS"/*.log 2>/dev/null | cut -c1-500 | tee -a "$SUMMARY"
say "done after $(( $(date +%s) - T0 ))s"
