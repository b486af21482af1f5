#!/bin/bash
# unetlab's Jittor on a CUDA 13 GPU, in one run of about 8 minutes: installs the wheels in .whl/,
# then (each stage independent, logged under $OUT):
#   env          GPU, driver, toolkit and Python seen
#   install      .whl/*.whl into $SITE, unetlab's entry points registered for the checkout
#   prepare      jittor_setup.prepare("cuda") alone: the CUDA 13 overlay and environment
#   import       unetlab.frameworks.jittor_runtime.import_jittor("cuda") (builds Jittor's core)
#   parity_*     ddpm (dropout 0) forward+backward at batch 8: torch fp32 (TF32 off) vs jittor
#   train_B*     jittor training steps (Adam) at batch 32, 64, 128; the first failing batch is
#                run again with JT_SYNC=1 CUDA_LAUNCH_BLOCKING=1 lazy_execution=0, then with the
#                sfrl allocator off, to localise an illegal address
#   bench_*      unetlab bench ddpm --batch-sizes 128 --frameworks torch,jittor --compile both,
#                in three processes (torch eager, jittor, torch compiled), merged into one table
# Run from the repository root:  bash benchmarks/gpu/jittor_gpu_check.sh
# A dry run of the same stages on a CPU (no GPU, small sizes): see benchmarks/gpu/README.md.
set -u
export PYTHONUNBUFFERED=1
unset UNETLAB_QUIET                            # the logs show jittor_setup's summary line
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO" || exit 2
OUT=${OUT:-/tmp/jittor_gpu_check/out}
WORK=${CHECK_WORK:-/tmp/jittor_gpu_check/work}
SITE=${SITE:-/tmp/site}
export PY=${PY:-python3} SITE
WHEELS=${CHECK_WHEELS:-.whl}                   # CHECK_WHEELS=none: use what is installed
BUDGET=${CHECK_BUDGET_S:-470}                  # seconds for all stages together
export CHECK_DEVICE=${CHECK_DEVICE:-cuda}       # cpu: dry run of the stages without a GPU
export CHECK_SPEC=${CHECK_SPEC:-ddpm}           # preset name or model spec YAML
PARITY_BATCH=${CHECK_PARITY_BATCH:-8}
TRAIN_BATCHES=${CHECK_TRAIN_BATCHES:-32 64 128}
TRAIN_STEPS=${CHECK_TRAIN_STEPS:-6}
BENCH_BATCH=${CHECK_BENCH_BATCH:-128}
if [ -z "${JITTOR_HOME:-}" ]; then              # a fresh Jittor cache; HOME too, or Jittor records
  export JITTOR_HOME=/tmp/jt_home HOME=/tmp/jt_home   # the new home in ~/.cache/jittor/config.json
fi
export UNETLAB_JITTOR_DEVICE=$CHECK_DEVICE
mkdir -p "$OUT" "$WORK" "$SITE" "$JITTOR_HOME"
: > "$OUT/stages.txt"
T0=$(date +%s)
FAILED=()

left() { echo $(( BUDGET - ($(date +%s) - T0) )); }

# stage NAME LIMIT CMD...: CMD with at most LIMIT seconds (fewer when the budget runs out),
# its output in $OUT/NAME.log and a line in $OUT/stages.txt; returns CMD's status.
stage() {
  local name=$1 limit=$2 l t rc
  shift 2
  l=$(left)
  if [ "$l" -lt "$limit" ]; then limit=$l; fi
  if [ "$limit" -lt 15 ]; then
    echo "$name: skipped (budget spent)" | tee -a "$OUT/stages.txt"
    FAILED+=("$name")
    return 98
  fi
  t=$(date +%s)
  if declare -F "$1" > /dev/null; then         # a shell function: run it in a bash of its own
    timeout -k 10 "$limit" bash -c "$(declare -f "$1"); $*" > "$OUT/$name.log" 2>&1
  else
    timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  fi
  rc=$?
  local how="rc=$rc"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then how="TIMEOUT (rc=$rc)"; fi
  echo "$name: $how in $(( $(date +%s) - t ))s (limit ${limit}s)" | tee -a "$OUT/stages.txt"
  # the log without Jittor's compile progress lines, shortened
  tr '\r' '\n' < "$OUT/$name.log" | grep -v '^Compiling\|^\s*$\|^\[i ' | tail -"${TAIL:-12}" | cut -c1-400 | sed 's/^/    /'
  if [ $rc -ne 0 ]; then FAILED+=("$name"); fi
  return $rc
}

echo "== env (device $CHECK_DEVICE, budget ${BUDGET}s, OUT=$OUT)"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>&1 | head -2
  for n in "${nvcc_path:-}" "$(command -v nvcc)" /usr/local/cuda/bin/nvcc; do
    if [ -n "$n" ] && [ -x "$n" ]; then echo "nvcc $n: $("$n" --version | tail -2 | head -1)"; break; fi
  done
  for f in /usr/local/cuda/lib64/lib{cudart,cublas,cublasLt,curand,cudnn}.so; do
    if [ -e "$f" ]; then printf '%s ' "${f##*/}"; else printf 'MISSING:%s ' "${f##*/}"; fi
  done; echo
  ls /usr/local/cuda/include/npp.h /usr/local/cuda/include/cudnn_version.h /usr/include/cudnn_version.h 2>&1 | cut -c1-120
  g++ --version | head -1; $PY -V; echo "cores: $(nproc)"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1 | tail -1
} 2>&1 | tee "$OUT/env.log"

echo "== install"
install_wheels() {
  local expected="jittor-1.3.11 astunparse- six- numpy-1.26.4 pluggy- tabulate- pyyaml- einops- tqdm-"
  for w in $expected; do ls "$WHEELS/$w"*.whl > /dev/null 2>&1 || echo "MISSING $WHEELS/$w*.whl"; done
  if ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$SITE" "$WHEELS"/*.whl \
      || { echo "pip failed; unpacking the wheels instead"
           $PY -c "import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]" "$SITE" "$WHEELS"/*.whl; }
  fi
  # unetlab's blocks are entry points: register them for this checkout (no build, no setuptools)
  $PY - "$SITE" <<'EOF'
import pathlib, sys, tomllib
project = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path(sys.argv[1]) / f"unetlab-{project['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: unetlab\nVersion: {project['version']}\n")
points = project.get("entry-points", {}).get("unetlab", {})
(info / "entry_points.txt").write_text("[unetlab]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
print("entry points:", ", ".join(points))
EOF
  $PY -c "
import importlib
for m in ('numpy', 'torch', 'jittor_utils', 'astunparse', 'tqdm', 'PIL', 'pluggy', 'tabulate', 'yaml', 'einops'):
    try:
        mod = importlib.import_module(m); print(m, getattr(mod, '__version__', ''), getattr(mod, '__file__', ''))
    except Exception as e:
        print('MISSING', m, type(e).__name__, e)
from unetlab import get_registry
print('presets:', sorted(get_registry().presets))"
}
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}" WHEELS
stage install 120 install_wheels

# --- the Python side of the stages -------------------------------------------------------------
cat > "$WORK/gpu_stages.py" <<'EOF'
"""Stages of benchmarks/gpu/jittor_gpu_check.sh.  Usage: gpu_stages.py STAGE [ARGS]; one JSON
line per result.  $CHECK_DEVICE (cuda or cpu) and $CHECK_SPEC (preset or YAML) choose what runs."""
import copy
import json
import os
import sys
import time

import numpy as np

DEVICE = os.environ.get("CHECK_DEVICE", "cuda")
SPEC = os.environ.get("CHECK_SPEC", "ddpm")


def emit(**fields):
    print(json.dumps(fields), flush=True)


def spec(dropout=None):
    """The spec as a mapping; ``dropout=0.0`` makes both frameworks compute the same."""
    from unetlab import get_registry

    registry = get_registry()
    if SPEC in registry.presets:
        mapping = copy.deepcopy(registry.preset(SPEC))
    else:
        import yaml

        with open(SPEC) as f:
            mapping = yaml.safe_load(f)
    if dropout is not None:
        mapping["dropout"] = dropout
    return mapping


def batch(mapping, size, seed=0):
    from unetlab import resolve_model_spec

    m = resolve_model_spec(mapping)
    rng = np.random.default_rng(seed)
    shape = (size, m.in_channels, m.image_size, m.image_size)
    return (rng.standard_normal(shape, dtype=np.float32), rng.integers(0, 1000, size).astype(np.int64),
            rng.standard_normal(shape, dtype=np.float32))


def rel_err(ref, got, floor=1e-30):
    """max|ref - got| / max|ref|, the denominator at least ``floor``."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return float(np.abs(ref - got).max() / max(np.abs(ref).max(), floor))


def import_check():
    from unetlab.frameworks.jittor_runtime import import_jittor

    t0 = time.time()
    jt = import_jittor(DEVICE)
    loaded = {lib: getattr(jt.compile_extern, f"{lib}_ops", None) is not None
              for lib in ("cublas", "curand", "cub", "cudnn")}
    emit(stage="import", s=round(time.time() - t0, 1), jittor=jt.__version__, use_cuda=int(jt.flags.use_cuda),
         cuda_archs=list(getattr(jt.flags, "cuda_archs", [])), **loaded)
    a = np.random.default_rng(0).standard_normal((64, 48)).astype(np.float32)
    err = rel_err(a @ a.T, (jt.array(a) @ jt.array(a).transpose()).numpy())
    emit(stage="import", matmul_rel_err=err, ok=err < 1e-4 and (DEVICE != "cuda" or jt.flags.use_cuda == 1))


def parity_torch(size, path):
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    from unetlab import build_model, get_weights

    mapping = spec(dropout=0.0)
    x, t, target = batch(mapping, size)
    model = build_model(mapping, "torch", seed=0)
    model.train()
    dev = next(model.parameters()).device
    t0 = time.time()
    out = model(torch.from_numpy(x).to(dev), torch.from_numpy(t).to(dev))
    loss = ((out - torch.from_numpy(target).to(dev)) ** 2).mean()
    loss.backward()
    torch.cuda.synchronize() if dev.type == "cuda" else None
    grads = {f"g/{n}": p.grad.detach().cpu().numpy() for n, p in model.named_parameters()}
    weights = get_weights(model)
    np.savez(path, x=x, t=t, target=target, out=out.detach().cpu().numpy(), loss=loss.item(),
             weight_sum=sum(float(np.abs(w).sum()) for w in weights.values()), **grads)
    emit(stage="parity_torch", device=str(dev), batch=size, s=round(time.time() - t0, 2), loss=loss.item(),
         params=len(grads))


def parity_jittor(path):
    from unetlab import build_model, get_weights
    from unetlab.frameworks import jittor_backend as b

    jt = b.jt
    ref = np.load(path)
    model = build_model(spec(dropout=0.0), "jittor", seed=0)  # same seed: the same weights
    model.train()
    weight_sum = sum(float(np.abs(w).sum()) for w in get_weights(model).values())
    named = b.trainable(model)
    t0 = time.time()
    out = model(jt.array(ref["x"]), jt.array(ref["t"]))
    loss = ((out - jt.array(ref["target"])) ** 2).mean()
    grads = jt.grad(loss, [p for _, p in named])
    jt.sync_all(True)
    seconds = round(time.time() - t0, 2)
    names = [n for n, _ in named]
    # a gradient that is zero in exact arithmetic (e.g. an attention key bias: softmax ignores
    # it) holds only rounding noise; relative to the largest gradient it does not count
    floor = 1e-4 * max(float(np.abs(ref[f"g/{n}"]).max()) for n in names)
    errs = {n: rel_err(ref[f"g/{n}"], g.numpy(), floor) for n, g in zip(names, grads)}
    matrices = [n for n in names if ref[f"g/{n}"].ndim >= 2]
    few = dict.fromkeys([matrices[0], next((n for n in matrices if "attn" in n), matrices[1]),
                         next((n for n in matrices if "emb" in n), matrices[2]), matrices[-1]])
    worst = sorted(errs, key=errs.get)[-3:]
    out_err = rel_err(ref["out"], out.numpy())
    emit(stage="parity_jittor", device=b.device_name(), s=seconds,
         weight_sum_rel_err=abs(weight_sum - float(ref["weight_sum"])) / float(ref["weight_sum"]),
         loss_torch=float(ref["loss"]), loss_jittor=float(loss.item()), out_rel_err=out_err,
         grad_rel_err={n: errs[n] for n in few}, worst_grads={n: errs[n] for n in worst})
    ok = out_err <= 1e-4 and max(errs.values()) <= 1e-3
    emit(stage="parity_jittor", ok=ok, tolerance="outputs 1e-4, gradients 1e-3 (max|a-b|/max|a|)")
    return 0 if ok else 1


def train(size, steps):
    from unetlab import build_model
    from unetlab.frameworks import jittor_backend as b

    jt = b.jt
    flags = {k: getattr(jt.flags, k) for k in ("use_cuda", "lazy_execution", "use_sfrl_allocator",
                                               "use_temp_allocator", "use_cuda_managed_allocator")
             if hasattr(jt.flags, k)}
    emit(stage="train", batch=size, flags=flags)
    mapping = spec()
    model = build_model(mapping, "jittor", seed=0)
    b.set_train(model, True)
    opt = b.Optimizer(model, "adam", 2e-4, grad_clip=1.0)
    x, t, target = (b.tensor(a) for a in batch(mapping, size))
    times, losses = [], []
    for step in range(steps):
        t0 = time.perf_counter()
        out = model(x, t)
        loss = ((out - target) ** 2).mean()
        opt.step(loss)
        losses.append(b.item(loss))
        b.synchronize()
        times.append(time.perf_counter() - t0)
        emit(stage="train", batch=size, step=step, loss=round(losses[-1], 5), s=round(times[-1], 3))
    timed = times[1:] or times
    step_s = float(np.median(timed))
    ok = bool(np.isfinite(losses).all())
    emit(stage="train", batch=size, ok=ok, first_step_s=round(times[0], 2), step_s=round(step_s, 4),
         img_s=round(size / step_s, 1), loss_first=losses[0], loss_last=losses[-1])
    return 0 if ok else 1


def merge_bench(out_md, *parts):
    from tabulate import tabulate

    rows = []
    for part in parts:
        if os.path.exists(part):
            with open(part) as f:
                rows += json.load(f)
        else:
            rows.append({"error": f"no result: {os.path.basename(part)}"})
    table = tabulate(rows, headers="keys", tablefmt="github")
    with open(out_md, "w") as f:
        f.write(table + "\n")
    print(table)
    return 0 if rows and not any("error" in r for r in rows) else 1


if __name__ == "__main__":
    name, args = sys.argv[1], sys.argv[2:]
    try:
        rc = {"import": lambda: import_check(),
              "parity_torch": lambda: parity_torch(int(args[0]), args[1]),
              "parity_jittor": lambda: parity_jittor(args[0]),
              "train": lambda: train(int(args[0]), int(args[1])),
              "merge_bench": lambda: merge_bench(*args)}[name]()
    except Exception as exc:  # the traceback goes to the log; the JSON line to the summary
        import traceback

        traceback.print_exc()
        emit(stage=name, ok=False, error=f"{type(exc).__name__}: {str(exc)[-1500:]}")
        rc = 1
    sys.exit(rc or 0)
EOF
cp "$WORK/gpu_stages.py" "$OUT/gpu_stages.py"
STAGES="$WORK/gpu_stages.py"

echo "== prepare (the CUDA 13 overlay, no import)"
stage prepare 60 $PY -c "
import os
from unetlab.frameworks import jittor_setup
print(jittor_setup.prepare('$CHECK_DEVICE'))
for k in ('nvcc_path', 'cc_flags', 'CPLUS_INCLUDE_PATH', 'NVCC_APPEND_FLAGS', 'conv_opt', 'use_mkl', 'use_cutt', 'use_cutlass', 'use_nccl', 'use_mpi'):
    print(f'{k}={os.environ.get(k)!r}')
"

echo "== import jittor for $CHECK_DEVICE, torch parity reference alongside"
TAIL=4 stage parity_torch 150 $PY "$STAGES" parity_torch "$PARITY_BATCH" "$WORK/parity_torch.npz" &
PARITY_TORCH_PID=$!
for _ in 1 2; do   # Jittor exits 0 asking for a rerun when it rebuilt jit_utils
  stage import 300 $PY "$STAGES" import
  grep -q "jit_utils updated" "$OUT/import.log" || break
done
wait $PARITY_TORCH_PID
grep -q '^parity_torch: rc=0' "$OUT/stages.txt" || FAILED+=(parity_torch)  # it ran in a subshell

echo "== parity: ddpm forward+backward, batch $PARITY_BATCH, fp32"
if [ -f "$WORK/parity_torch.npz" ]; then
  stage parity_jittor 150 $PY "$STAGES" parity_jittor "$WORK/parity_torch.npz"
else
  echo "parity_jittor: skipped (no torch reference)" | tee -a "$OUT/stages.txt"; FAILED+=(parity_jittor)
fi

echo "== jittor training steps"
DIAGNOSED=
for B in $TRAIN_BATCHES; do
  if stage "train_B$B" 100 $PY "$STAGES" train "$B" "$TRAIN_STEPS"; then continue; fi
  [ -n "$DIAGNOSED" ] && continue
  DIAGNOSED=$B
  if [ "$(left)" -gt 200 ]; then   # localise: synchronous launches, eager execution
    TAIL=40 stage "train_B${B}_sync" 90 env JT_SYNC=1 CUDA_LAUNCH_BLOCKING=1 lazy_execution=0 \
      $PY "$STAGES" train "$B" 3
    grep -n -i -m 20 -B 2 -A 8 "illegal\|cudaError\|Op(\|error" "$OUT/train_B${B}_sync.log" | cut -c1-400 > "$OUT/train_B${B}_sync.errors" || true
  fi
  if [ "$(left)" -gt 170 ]; then   # does the caching allocator matter?
    stage "train_B${B}_nosfrl" 80 env use_sfrl_allocator=0 $PY "$STAGES" train "$B" 3
  fi
done

echo "== unetlab bench ddpm --batch-sizes $BENCH_BATCH --frameworks torch,jittor --compile both"
BENCH=("$PY" -m unetlab.cli bench "$CHECK_SPEC" --batch-sizes "$BENCH_BATCH")
TAIL=6 stage bench_torch 90 "${BENCH[@]}" --frameworks torch --compile off --out "$OUT/bench_torch"
TAIL=6 stage bench_jittor 120 "${BENCH[@]}" --frameworks jittor --compile off --out "$OUT/bench_jittor"
TAIL=6 stage bench_torch_compiled 240 "${BENCH[@]}" --frameworks torch --compile on --out "$OUT/bench_torch_compiled"
$PY "$STAGES" merge_bench "$OUT/bench.md" "$OUT/bench_torch.json" "$OUT/bench_jittor.json" \
  "$OUT/bench_torch_compiled.json" > "$OUT/bench_merge.log" 2>&1
echo "bench (all rows, $OUT/bench.md):"; sed 's/^/    /' "$OUT/bench.md" 2>/dev/null

echo "== results"
grep -h '"ok"' "$OUT"/*.log 2>/dev/null | cut -c1-600 | tee "$OUT/results.jsonl"
if [ ${#FAILED[@]} -eq 0 ]; then
  echo "RESULT: PASS after $(( $(date +%s) - T0 ))s"
else
  echo "RESULT: FAIL (${FAILED[*]}) after $(( $(date +%s) - T0 ))s"
  exit 1
fi
