#!/bin/bash
# unetlab on one CUDA GPU in one run of about 9 minutes: PyTorch throughput beside the reference
# network (issue: performance) and Jittor on a CUDA 13 toolkit (correctness, the illegal-address
# hunt, convolution paths, cuDNN 9, throughput).  Two pipelines run side by side:
#   torch   benchmarks/ddpm_throughput.py: bf16 at batch 128 (eager, compiled, CUDA graphs; then with
#           cuDNN's algorithm search and weight freezing), fp32 at 128 (beside Jittor's fp32), bf16
#           at 512, max-autotune with what time is left; fastest of 3 timed runs
#   jittor  install -> import (core build) -> tests/test_gpu.py (parity, training at 128) ->
#           bench (fp32, fp16) -> profile -> gemm convolutions under compute-sanitizer ->
#           cuDNN 9 convolutions -> training at 256 and 512
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
THROUGHPUT=("$PY" "$REPO/benchmarks/ddpm_throughput.py" --precision "${TORCH_PRECISION:-bf16}" --lock "$CHECK_LOCK" --steps 10 --warmup 3 --repeats 3)

# --- torch pipeline (background) ---------------------------------------------------------------
(
  TAIL=10 stage torch_b$TB1 220 env UNETLAB_QUIET=1 "${THROUGHPUT[@]}" --batch-sizes "$TB1" --out "$OUT/throughput_b$TB1" \
    --cases "${TORCH_CASES:-unetlab:reduce-overhead:cl,reference:off,reference:default,unetlab:off}"
  # cuDNN's per-shape algorithm search, and inductor's weight freezing for the no-grad (sampling) graph
  TAIL=6 stage torch_tuned 120 env UNETLAB_QUIET=1 TORCHINDUCTOR_FREEZING=1 "${THROUGHPUT[@]}" --cudnn-benchmark \
    --batch-sizes "$TB1" --out "$OUT/throughput_tuned" --cases "${TORCH_CASES:-unetlab:reduce-overhead:cl}"
  TAIL=6 stage torch_fp32 60 env UNETLAB_QUIET=1 "${THROUGHPUT[@]}" --precision fp32 --batch-sizes "$TB1" \
    --out "$OUT/throughput_fp32" --cases unetlab:off,reference:off
  TAIL=6 stage torch_b$TB2 150 env UNETLAB_QUIET=1 "${THROUGHPUT[@]}" --batch-sizes "$TB2" --out "$OUT/throughput_b$TB2" \
    --cases "${TORCH_CASES:-unetlab:reduce-overhead:cl,reference:off}"
  TAIL=6 stage torch_autotune 300 env UNETLAB_QUIET=1 "${THROUGHPUT[@]}" --batch-sizes "$TB1" \
    --out "$OUT/throughput_autotune" --cases "${TORCH_CASES:-unetlab:max-autotune:cl}"
) &
TORCH_PID=$!

# --- jittor pipeline ---------------------------------------------------------------------------
say "== jittor"
stage import 300 $PY "$STAGES" import
grep -q "jit_utils updated" "$LOGS/import.log" && stage import2 200 $PY "$STAGES" import
export UNETLAB_QUIET=1
# the project's GPU tests: parity with PyTorch (1e-4) and training at batch 128
TAIL=15 stage gpu_tests 240 $PY -m pytest -q -x -p no:cacheprovider tests/test_gpu.py
TAIL=6 stage jittor_bench 150 $PY "$STAGES" jittor_bench "$OUT/jittor_bench.json" "$JB" fp32,fp16
# cuDNN 9 for Jittor's own convolutions: build, check, time one conv, then the ddpm bench rows
# (into the logs: $OUT already holds 8 files)
TAIL=12 stage cudnn9 240 $PY "$STAGES" cudnn9 "$LOGS/jittor_bench_cudnn9.json" "$JB" fp32,fp16
TAIL=30 stage profile 80 $PY "$STAGES" profile "$JB"
for B in 256 512; do stage "train_B$B" 90 $PY "$STAGES" train "$B" 3 || break; done
# the gemm convolutions under compute-sanitizer (last: the illegal address is found and avoided)
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
TAIL=12 stage gemm_memcheck 90 "$SAN" --tool memcheck --print-limit 4 $PY "$STAGES" gemm_conv_memcheck 16

say "== waiting for the torch pipeline"
wait $TORCH_PID
for f in "$OUT"/throughput_*.md; do [ -f "$f" ] && { echo "$f"; cat "$f"; } | tee -a "$SUMMARY"; done
say "== results"
grep -h '"ok"\|"mode"\|"built_s"\|"kernel_s_per_step"' "$LOGS"/*.log 2>/dev/null | cut -c1-500 | tee -a "$SUMMARY"
say "done after $(( $(date +%s) - T0 ))s"
