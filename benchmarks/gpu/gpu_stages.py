"""Stages of benchmarks/gpu/gpu_check.sh.  Usage: gpu_stages.py STAGE [ARGS]; one JSON
line per result.  $CHECK_DEVICE (cuda or cpu) and $CHECK_SPEC (preset or YAML) choose what runs."""
import copy
import json
import os
import sys
import time

import numpy as np

DEVICE = os.environ.get("CHECK_DEVICE", "cuda")
LOCK = os.environ.get("CHECK_LOCK")  # held around timed parts, shared with the torch pipeline


def exclusive():
    import contextlib

    from unetlab.bench import file_lock

    return file_lock(LOCK)() if LOCK else contextlib.nullcontext()
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
    from unetlab.frameworks.jittor.runtime import import_jittor

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
    ok = out_err <= 1e-4 and max(errs.values()) <= 1e-4
    emit(stage="parity_jittor", ok=ok, tolerance="outputs and gradients 1e-4 (max|a-b|/max|a|)")
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


def small_net(size, steps=6):
    """A two-conv net with Jittor's own Conv2d and Adam: the smallest known failing case on
    CUDA 13 (batch 64).  Run under compute-sanitizer to name the kernel that faults."""
    from unetlab.frameworks.jittor.runtime import import_jittor

    jt = import_jittor(DEVICE)
    from jittor import nn

    class Net(nn.Module):
        def __init__(self):
            self.c1, self.g1 = nn.Conv2d(3, 32, 3, padding=1), nn.GroupNorm(8, 32)
            self.c2, self.g2 = nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64)
            self.fc = nn.Linear(64, 10)

        def execute(self, x):
            x = nn.silu(self.g1(self.c1(x)))
            x = nn.silu(self.g2(self.c2(x)))
            return self.fc(x.mean([2, 3]))

    jt.set_global_seed(0)
    net = Net()
    opt = nn.Adam(net.parameters(), 3e-3)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        x = jt.array(rng.standard_normal((size, 3, 32, 32), dtype=np.float32))
        y = jt.array(rng.integers(0, 10, size).astype(np.int32))
        loss = nn.cross_entropy_loss(net(x), y)
        opt.step(loss)
        losses.append(loss.item())
    ok = bool(np.isfinite(losses).all())
    emit(stage="small_net", batch=size, ok=ok, loss_first=losses[0], loss_last=losses[-1])
    return 0 if ok else 1


def _conv_case(n, c, size):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, size, size), dtype=np.float32)
    w = (rng.standard_normal((c, c, 3, 3), dtype=np.float32) * 0.05)
    return x, w


def conv_bench(modes, batches):
    """fp32 3x3 conv 128->128 on 32x32, forward+backward: Jittor's modes vs PyTorch (cuDNN, TF32 off)."""
    import torch

    torch.backends.cudnn.allow_tf32 = False
    from unetlab.frameworks.jittor import conv as jittor_conv
    from unetlab.frameworks.jittor.runtime import import_jittor

    jt = import_jittor(DEVICE)
    from jittor import nn

    for n in [int(b) for b in batches.split(",")]:
        x, w = _conv_case(n, 128, 32)
        tx = torch.from_numpy(x).cuda().requires_grad_()
        tw = torch.from_numpy(w).cuda().requires_grad_()

        def torch_step():
            y = torch.nn.functional.conv2d(tx, tw, padding=1)
            gx, gw = torch.autograd.grad(y.square().mean(), (tx, tw))
            return y, gx, gw
        ref = [a.detach().cpu().numpy() for a in torch_step()]
        torch.cuda.synchronize()
        with exclusive():
            t0 = time.perf_counter()
            for _ in range(5):
                torch_step()
            torch.cuda.synchronize()
        emit(stage="conv_bench", mode="torch-cudnn", batch=n, ms=round((time.perf_counter() - t0) / 5 * 1e3, 2))
        for mode in modes.split(","):
            jx, jw = jt.array(x), jt.array(w)

            def jt_step():
                if mode == "gemm":
                    y = jittor_conv.conv2d_gemm(jx, jw, None, 1, 1)
                else:
                    y = nn.conv2d(jx, jw, None, 1, 1)
                gx, gw = jt.grad(y.sqr().mean(), [jx, jw])
                jt.sync([y, gx, gw])
                return y, gx, gw
            try:
                t0 = time.perf_counter()
                got = [a.numpy() for a in jt_step()]
                first = time.perf_counter() - t0
                errs = [rel_err(r, g) for r, g in zip(ref, got)]
                jt.sync_all(True)
                with exclusive():
                    t0 = time.perf_counter()
                    for _ in range(5):
                        jt_step()
                    jt.sync_all(True)
                emit(stage="conv_bench", mode=mode, batch=n, ms=round((time.perf_counter() - t0) / 5 * 1e3, 2),
                     first_s=round(first, 2), rel_err_y_gx_gw=[float(f"{e:.2e}") for e in errs])
            except Exception as exc:  # noqa: BLE001
                emit(stage="conv_bench", mode=mode, batch=n, error=f"{type(exc).__name__}: {str(exc)[-300:]}")
    return 0


def cudnn9(out=None, batches="", precisions="fp32,fp16"):
    """Build only Jittor's cuDNN convolution ops against the cuDNN 9 that PyTorch ships, register
    them (Jittor's conv tuner then relays convolutions to them), and check and time them; with
    ``out``, the ``ddpm`` bench rows at ``batches`` follow (written to ``out`` as measured)."""
    import ctypes
    import glob

    import nvidia.cudnn as pkg

    root = list(pkg.__path__)[0]
    inc, lib = os.path.join(root, "include"), os.path.join(root, "lib")
    emit(stage="cudnn9", include=inc, libs=sorted(os.path.basename(f) for f in glob.glob(lib + "/libcudnn*")))
    for so in sorted(glob.glob(lib + "/libcudnn*.so.9"), key=lambda f: ("graph" not in f, f)):
        try:
            ctypes.CDLL(so, os.RTLD_GLOBAL | os.RTLD_NOW)
        except OSError as exc:
            emit(stage="cudnn9", load_failed=os.path.basename(so), error=str(exc)[:200])
    from unetlab.frameworks.jittor.runtime import import_jittor

    jt = import_jittor(DEVICE)
    jroot = os.path.dirname(jt.__file__)
    ops = os.path.join(jroot, "extern", "cuda", "cudnn", "ops")
    files = [os.path.join(ops, f"cudnn_conv{k}_op.{e}") for k in ("", "_backward_x", "_backward_w") for e in ("cc", "h")]
    files += [os.path.join(jroot, "extern", "cuda", "cudnn", "src", f) for f in ("cudnn_wrapper.cc", "helper_cudnn.cc")]
    # the JIT compilations of these ops need cuDNN's headers too: for every compiler Jittor runs
    os.environ["CPLUS_INCLUDE_PATH"] = inc + ":" + os.environ.get("CPLUS_INCLUDE_PATH", "")
    jt.flags.cc_flags += f' -I"{inc}" -I"{jroot}/extern/cuda/cudnn/inc" '
    cache_cuda = os.path.join(jt.compiler.cache_path, "cuda")
    # Jittor rewrites "-lNAME" as "-l:libNAME.so" (it mangled "-l:libcudnn.so.9"): give it a
    # folder where libcudnn.so names the pip wheel's libcudnn.so.9
    links = os.path.join(jt.compiler.cache_path, "unetlab-cudnn9")
    os.makedirs(links, exist_ok=True)
    if not os.path.lexists(os.path.join(links, "libcudnn.so")):
        os.symlink(os.path.join(lib, "libcudnn.so.9"), os.path.join(links, "libcudnn.so"))
    flags = (f' -I"{jroot}/extern/cuda/inc" -I"{jroot}/extern/cuda/cudnn/inc" -I"{inc}" '
             f' -L"{links}" -lcudnn -L"{cache_cuda}" -llibcuda_extern ')
    t0 = time.time()
    module = jt.compile_extern.compile_custom_ops(files, return_module=True, extra_flags=flags)
    jt.compile_extern.cudnn_ops, jt.compile_extern.cudnn = module.ops, module
    emit(stage="cudnn9", built_s=round(time.time() - t0, 1), ops=[o for o in dir(module.ops) if "conv" in o])
    os.environ["UNETLAB_JITTOR_CONV"] = "jittor"  # Jittor's Conv2d; its tuner now picks cuDNN
    conv_bench("jittor", "8,128")
    if out and batches:
        return jittor_bench(out, batches, precisions)
    return 0


def jittor_bench(out, batches, precisions):
    """unetlab.bench rows for Jittor (the current conv mode), written as they are measured."""
    from unetlab.bench import BenchCase, file_lock, measure

    rows = []
    for n in [int(b) for b in batches.split(",")]:
        for prec in precisions.split(","):
            try:
                row = measure("ddpm", BenchCase("jittor", prec, n), steps=5, warmup=2, repeats=2,
                              exclusive=file_lock(LOCK) if LOCK else None)
                row["conv"] = os.environ.get("UNETLAB_JITTOR_CONV", "auto")
            except Exception as exc:  # noqa: BLE001
                row = {"framework": "jittor", "precision": prec, "batch": n, "error": f"{type(exc).__name__}: {str(exc)[-300:]}"}
            rows.append(row)
            emit(stage="jittor_bench", **row)
            with open(out, "w") as f:
                json.dump(rows, f, indent=1)
    return 0 if rows and not any("error" in r for r in rows) else 1


def profile(size, top=25):
    """Where a Jittor training step's time goes: Jittor's profiler over two steps (after two
    warm-up steps), the ops with the most total time, and the step's wall time beside them."""
    from unetlab import build_model
    from unetlab.frameworks import jittor_backend as b

    jt = b.jt
    mapping = spec()
    model = build_model(mapping, "jittor", seed=0)
    b.set_train(model, True)
    opt = b.Optimizer(model, "adam", 2e-4, grad_clip=1.0)
    x, t, target = (b.tensor(a) for a in batch(mapping, size))

    def step():
        opt.step(((model(x, t) - target) ** 2).mean())
        b.synchronize()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    with jt.profile_scope() as report:
        for _ in range(2):
            step()
    wall = (time.perf_counter() - t0) / 2
    header, rows = report[0], report[1:]
    col = {name: i for i, name in enumerate(header)}
    total_ns = sum(float(r[col["TotalTime"]]) for r in rows)
    rows.sort(key=lambda r: -float(r[col["TotalTime"]]))
    emit(stage="profile", batch=size, step_s=round(wall, 3), ops=len(rows),
         kernel_s_per_step=round(total_ns / 2 / 1e9, 3))
    for r in rows[:top]:
        emit(stage="profile", ms_per_step=round(float(r[col["TotalTime"]]) / 2 / 1e6, 2),
             count=int(r[col["Count"]]) // 2, name=str(r[col["Name"]])[:160])
    return 0


def gemm_conv_memcheck(size):
    """A padded stride-1 and stride-2 convolution through unetlab's gemm path, forward and both
    gradients: run under compute-sanitizer to show the path writes inside its buffers."""
    from unetlab.frameworks.jittor import conv as jittor_conv
    from unetlab.frameworks.jittor.runtime import import_jittor

    jt = import_jittor(DEVICE)
    rng = np.random.default_rng(0)
    x = jt.array(rng.standard_normal((size, 32, 32, 32), dtype=np.float32))
    for stride in (1, 2):
        w = jt.array(rng.standard_normal((64, 32, 3, 3), dtype=np.float32))
        y = jittor_conv.conv2d_gemm(x, w, None, stride, 1)
        gx, gw = jt.grad(y.sqr().mean(), [x, w])
        jt.sync([y, gx, gw])
        ok = all(bool(np.isfinite(a.numpy()).all()) for a in (y, gx, gw))
        emit(stage="gemm_conv_memcheck", batch=size, stride=stride, ok=ok)
    return 0


def _ddpm_torch(net):
    """The ``ddpm`` preset (unetlab) or the independent reference network, on the GPU."""
    from unetlab import build_model
    from unetlab.frameworks import torch_backend as b

    if net == "reference":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        from reference_ddpm import Reference

        return b.prepare_model(Reference())
    return build_model("ddpm", "torch", seed=0)


def torch_profile(net, precision, compile_mode, size, top=20):
    """Where a PyTorch training step's time goes: CUDA kernel time by name over 3 steps (after
    warm-up), beside the step's wall time; ``compile_mode`` off or a torch.compile mode
    (channels-last when compiled, as the fastest measured mode)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from unetlab.frameworks import torch_backend as b

    model = _ddpm_torch(net)
    b.set_train(model, True)
    mode = None if compile_mode == "off" else compile_mode
    forward = b.fast_forward(model, mode, mode is not None)
    opt = b.Optimizer(model, "adam", 2e-4, grad_clip=1.0)
    x, t, target = (b.tensor(a) for a in batch(spec(), size))

    def step():
        with b.autocast(precision):
            out = forward(x, t)
        opt.step(((out.float() - target) ** 2).mean())

    for _ in range(4):
        step()
    torch.cuda.synchronize()
    with exclusive():
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / 3
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA" or getattr(e, "self_device_time_total", 0)]
    kernel_us = sum(getattr(e, "self_device_time_total", 0) for e in events) / 3
    emit(stage="torch_profile", net=net, precision=precision, compile=compile_mode, batch=size,
         step_s=round(wall, 4), kernel_s_per_step=round(kernel_us / 1e6, 4), kernels=len(events))
    buckets = {}
    for e in events:
        key = _kernel_kind(e.key)
        buckets[key] = buckets.get(key, 0) + getattr(e, "self_device_time_total", 0) / 3
    emit(stage="torch_profile", net=net, by_kind_ms={k: round(v / 1e3, 2) for k, v in
                                                   sorted(buckets.items(), key=lambda kv: -kv[1])})
    for e in sorted(events, key=lambda e: -getattr(e, "self_device_time_total", 0))[:top]:
        emit(stage="torch_profile", net=net, ms_per_step=round(e.self_device_time_total / 3 / 1e3, 3),
             count=e.count // 3, name=e.key[:140])
    return 0


def _kernel_kind(name):
    """A coarse class of a CUDA kernel by its name (convolution, GEMM, norm, elementwise, ...)."""
    low = name.lower()
    for kind, marks in (("conv", ("conv", "implicit", "dgrad", "wgrad", "fprop", "sm90_xmma", "cudnn")),
                        ("attention", ("flash", "fmha", "attention", "efficient")),
                        ("gemm", ("gemm", "cutlass", "matmul", "sm90", "ampere")),
                        ("norm", ("group_norm", "groupnorm", "batch_norm", "layer_norm", "welford")),
                        ("optimizer", ("adam", "foreach", "multi_tensor", "norm_kernel", "lerp")),
                        ("triton", ("triton",)),
                        ("copy/layout", ("copy", "transpose", "nchwtonhwc", "nhwctonchw", "cat"))):
        if any(m in low for m in marks):
            return kind
    return "elementwise/other"


def ddim_wall(n, size, steps):
    """Wall time of DDIM sampling as ``unetlab sample``/``fid`` run it (compiled with CUDA graphs,
    channels-last, bf16): one batch to compile, then ``n`` samples timed; the 50,000-sample time
    for FID is extrapolated from the measured rate, compilation counted once."""
    from unetlab import build_model
    from unetlab.sampling import generate
    from unetlab.spec import resolve_run_spec

    run = resolve_run_spec({"model": {"preset": "ddpm"},
                            "sample": {"sampler": "ddim", "steps": steps, "eta": 0.0, "skip": "quadratic",
                                       "batch_size": size, "precision": "bf16", "compile": True,
                                       "compile_mode": "reduce-overhead", "channels_last": True}})
    model = build_model(run["model"], "torch", seed=0)
    t0 = time.perf_counter()
    generate(model, run, size, seed=1, batch_size=size)  # compiles
    first = time.perf_counter() - t0
    with exclusive():
        t0 = time.perf_counter()
        images, timing = generate(model, run, n, seed=2, batch_size=size)
        wall = time.perf_counter() - t0
    per_image = wall / n
    emit(stage="ddim_wall", steps=steps, batch=size, samples=n, first_batch_s=round(first, 1),
         wall_s=round(wall, 2), images_per_s=round(n / wall, 1), nfe_img_s=round(timing["sample_img_s"], 1),
         est_50k_s=round(first + 50000 * per_image, 1), finite=bool(np.isfinite(images).all()))
    return 0


def train_step(framework, precision, size, steps=2):
    """``steps`` training steps of ``ddpm`` at batch ``size`` (eager); memory as each framework
    reports it: PyTorch's peak allocated and held (reserved), Jittor's peak of live arrays (its
    memory profiler, in the last step) and, for both, what NVML says the process holds."""
    from unetlab import build_model
    from unetlab.frameworks import backend_for

    b = backend_for(framework)
    model = _ddpm_torch("unetlab") if framework == "torch" else build_model("ddpm", "jittor", seed=0)
    b.set_train(model, True)
    opt = b.Optimizer(model, "adam", 2e-4, grad_clip=1.0)
    x, t, target = (b.tensor(a) for a in batch(spec(), size))
    b.reset_peak_memory()
    times, losses = [], []
    jt = getattr(b, "jt", None)
    for i in range(steps):
        profiled = jt is not None and i == steps - 1
        if profiled:
            jt.flags.profile_memory_enable = 1
        t0 = time.perf_counter()
        with b.autocast(precision):
            out = model(x, t)
        loss = ((out.float() if framework == "torch" else out.float32()) - target) ** 2
        opt.step(loss.mean())
        losses.append(b.item(loss.mean()))
        b.synchronize()
        times.append(time.perf_counter() - t0)
    peak = b.peak_memory_bytes()
    if jt is not None:
        info = jt.get_max_memory_info()
        jt.flags.profile_memory_enable = 0
        peak = _jittor_max_var_bytes(info)
    held = _nvml_process_bytes()
    gib = lambda v: None if v is None else round(v / 2 ** 30, 2)  # noqa: E731
    ok = bool(np.isfinite(losses).all())
    emit(stage="train_step", framework=framework, precision=precision, batch=size, ok=ok,
         step_s=round(min(times[1:] or times), 3), peak_alloc_gib=gib(peak),
         held_gib=gib(b.held_memory_bytes()), nvml_gib=gib(held), loss=losses[-1])
    return 0 if ok else 1


def _jittor_max_var_bytes(info):
    """Jittor's ``get_max_memory_info()`` string starts with the peak bytes of live arrays."""
    import re

    match = re.match(r"\d+", str(info))
    return int(match.group()) if match else None


def _nvml_process_bytes():
    from unetlab.frameworks.jittor.nvml import process_gpu_bytes

    return process_gpu_bytes()


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
              "small_net": lambda: small_net(int(args[0])),
              "conv_bench": lambda: conv_bench(args[0], args[1]),
              "cudnn9": lambda: cudnn9(*args),
              "profile": lambda: profile(int(args[0])),
              "gemm_conv_memcheck": lambda: gemm_conv_memcheck(int(args[0])),
              "jittor_bench": lambda: jittor_bench(args[0], args[1], args[2]),
              "merge_bench": lambda: merge_bench(*args),
              "torch_profile": lambda: torch_profile(args[0], args[1], args[2], int(args[3])),
              "ddim_wall": lambda: ddim_wall(int(args[0]), int(args[1]), int(args[2])),
              "train_step": lambda: train_step(args[0], args[1], int(args[2]))}[name]()
    except Exception as exc:  # the traceback goes to the log; the JSON line to the summary
        import traceback

        traceback.print_exc()
        emit(stage=name, ok=False, error=f"{type(exc).__name__}: {str(exc)[-1500:]}")
        rc = 1
    sys.exit(rc or 0)
