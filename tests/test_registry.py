"""The block registry: built-ins, third-party plugins through entry points, and spec errors."""
from __future__ import annotations

import importlib.metadata
import inspect
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

import unetlab
from unetlab import UnetlabError, build_model, hookspecs, resolve_model_spec
from unetlab.blocks.contract import BuildContext
from unetlab.blocks.residual import RESBLOCK_OPTIONS, ResBlock
from unetlab.frameworks import backend_for
from unetlab.registry import (FRAMEWORKS, SLOTS, BlockDef, Registry, get_registry,
                              make_plugin_manager, portable)

BUILTIN_BLOCKS = {
    ("resblock", "ddpm"), ("resblock", "adm"),
    ("attention", "ddpm"), ("attention", "multihead"),
    ("time_embedding", "ddpm"), ("time_embedding", "adm"),
    ("time_embedding", "fourier"), ("time_embedding", "learned"),
    ("downsample", "ddpm"), ("downsample", "conv"), ("downsample", "avgpool"), ("downsample", "resblock"),
    ("upsample", "ddpm"), ("upsample", "convtranspose"), ("upsample", "resblock"),
    ("norm", "groupnorm"), ("norm", "rmsnorm"),
}
DDPM_PROVIDER = "unetlab (unetlab.plugins.ddpm)"
EXAMPLE_PROVIDER = "unetlab-example-plugin (unetlab_example_plugin)"


def _hook_names() -> list[str]:
    return sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
                  if hasattr(fn, "unetlab_spec"))


def _unetlab_command() -> list[str]:
    """The ``unetlab`` console script of this interpreter's environment (else the one on PATH,
    else ``python -m unetlab.cli``)."""
    beside = os.path.join(os.path.dirname(sys.executable), "unetlab")
    script = beside if os.path.isfile(beside) else shutil.which("unetlab")
    return [script] if script else [sys.executable, "-m", "unetlab.cli"]


def _forward(model, framework: str, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    backend = backend_for(framework)
    backend.set_train(model, False)
    out = model(backend.tensor(x), backend.tensor(t))
    return backend.numpy(out.detach() if framework == "torch" else out)


def _inputs(spec: dict, n: int = 2):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, spec["in_channels"], spec["image_size"], spec["image_size"])).astype(np.float32)
    return x, np.arange(1, n + 1, dtype=np.int64) * 100


# --- built-ins -----------------------------------------------------------------------------

def test_builtin_blocks_fill_every_slot_in_both_frameworks():
    registry = get_registry()
    assert BUILTIN_BLOCKS <= set(registry.blocks)
    for slot in SLOTS:
        builtins = [b for b in registry.blocks_in(slot) if b.provider.startswith("unetlab (unetlab.plugins.")]
        assert builtins, f"no built-in {slot} block"
        for block in builtins:
            assert block.frameworks == FRAMEWORKS, block.key
            for framework in FRAMEWORKS:
                cls = block.implementation(framework)
                assert isinstance(cls, type) and callable(getattr(cls, "forward", None)), (block.key, framework)
            assert block.doc, block.key
    assert {"ddpm", "adm"} <= set(registry.presets)
    assert registry.block("resblock", "ddpm").provider == DDPM_PROVIDER


def test_portable_builds_one_class_per_framework_against_its_ops():
    impls = portable(lambda ops: type(f"Block_{ops.NAME}", (ops.Module,), {}))
    assert impls.frameworks == FRAMEWORKS
    block = BlockDef("attention", "probe", impls)
    assert sorted(block.impls) == sorted(FRAMEWORKS)
    torch_cls = block.implementation("torch")
    assert torch_cls.__name__ == "Block_torch"
    assert block.implementation("torch") is torch_cls is impls.torch  # built once per framework
    assert block.implementation("jittor").__name__ == "Block_jittor"


def test_every_hook_is_documented_and_implemented_by_a_builtin_plugin():
    names = _hook_names()
    assert {"unetlab_blocks", "unetlab_presets"} <= set(names)
    pm = get_registry().pm
    assert set(names) == {name for name, caller in vars(pm.hook).items() if getattr(caller, "spec", None)}
    for name in names:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 40, f"hook {name} has no real docstring"
        caller = getattr(pm.hook, name)
        assert caller.spec is not None, f"hook {name} is not registered as a hookspec"
        implementers = [impl.plugin.__name__ for impl in caller.get_hookimpls()
                        if getattr(impl.plugin, "__name__", "").startswith("unetlab.plugins.")]
        assert implementers, f"no built-in plugin implements {name}"


def test_blockdef_rejects_unknown_slot_and_framework():
    with pytest.raises(UnetlabError, match=r"block 'x': unknown slot 'middle' \(slots: resblock, attention, "):
        BlockDef("middle", "x", {})
    with pytest.raises(UnetlabError, match=r"block attention/x: unknown framework 'tf' \(frameworks: torch, jittor\)"):
        BlockDef("attention", "x", {"tf": object})


# --- a third-party plugin installed by pip ------------------------------------------------

def test_example_plugin_registers_through_its_entry_point(example_plugin_installed):
    eps = importlib.metadata.distribution(example_plugin_installed).entry_points
    assert [(ep.group, ep.name, ep.value) for ep in eps] == [
        ("unetlab", "example_linear", "unetlab_example_plugin")]
    block = get_registry().block("attention", "example_linear")
    assert block.provider == EXAMPLE_PROVIDER
    assert block.frameworks == ("torch", "jittor")
    assert [(o.name, o.type, o.default) for o in block.options] == [("gain", float, 1.0)]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_yaml_spec_uses_the_plugin_block(example_plugin_installed, make_tiny_spec, tmp_path, framework):
    spec = make_tiny_spec(blocks={"attention": {"name": "example_linear", "gain": 2}})
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"model": spec}))
    model = build_model(str(path), framework)
    assert model.unetlab_config["blocks"]["attention"] == {"name": "example_linear", "gain": 2.0}
    assert type(model.mid.attn_1).__name__ == "ExampleLinear"
    assert model.mid.attn_1.gain == 2.0
    assert len(model.down[1].attn) == 1 and len(model.up[1].attn) == 2  # 8x8 level only
    x, t = _inputs(spec)
    out = _forward(model, framework, x, t)
    assert out.shape == x.shape
    assert np.isfinite(out).all()


def test_plugin_block_gives_the_same_model_in_both_frameworks(example_plugin_installed, make_tiny_spec):
    spec = make_tiny_spec(blocks={"attention": {"name": "example_linear", "gain": 0.5}})
    x, t = _inputs(spec)
    outs = {fw: _forward(build_model(spec, fw, seed=3), fw, x, t) for fw in FRAMEWORKS}
    np.testing.assert_allclose(outs["jittor"], outs["torch"], rtol=1e-4, atol=1e-4)


def test_plugin_block_gain_scales_its_residual_branch(example_plugin_installed):
    import torch

    from unetlab.frameworks import torch_ops

    cls = get_registry().block("attention", "example_linear").implementation("torch")
    ctx = BuildContext(torch_ops, emb_channels=64, dropout=0.0, norm_groups=4, norm_eps=1e-6)
    assert cls.takes_time_embedding is False
    torch.manual_seed(0)
    block = cls(ctx, 16, 16, gain=0.0)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), x)
        block.gain = 1.0
        one = block(x) - x
        block.gain = 3.0
        three = block(x) - x
    assert one.abs().max() > 1e-3
    torch.testing.assert_close(three, 3 * one)
    with pytest.raises(UnetlabError, match="example_linear keeps its width: in_channels 16 != out_channels 32"):
        cls(ctx, 16, 32)


# --- duplicates ----------------------------------------------------------------------------

class _DuplicateDDPM:
    """Claims ``resblock/ddpm`` and the ``ddpm`` preset, which the built-in ddpm plugin provides."""

    @unetlab.hookimpl
    def unetlab_blocks(self):
        return [BlockDef("resblock", "ddpm", ResBlock, RESBLOCK_OPTIONS)]


class _DuplicatePreset:
    @unetlab.hookimpl
    def unetlab_presets(self):
        return {"ddpm": {"base_channels": 64}}


def test_duplicate_block_is_rejected_naming_both_providers():
    with pytest.raises(UnetlabError) as info:
        Registry(make_plugin_manager(extra_plugins=[_DuplicateDDPM()]))
    message = str(info.value)
    assert message.startswith("block resblock/ddpm is registered twice: by ")
    assert DDPM_PROVIDER in message and "_DuplicateDDPM" in message


def test_duplicate_preset_is_rejected_naming_both_providers():
    with pytest.raises(UnetlabError) as info:
        Registry(make_plugin_manager(extra_plugins=[_DuplicatePreset()]))
    message = str(info.value)
    assert message.startswith("preset 'ddpm' is registered twice: by ")
    assert DDPM_PROVIDER in message and "_DuplicatePreset" in message


@pytest.mark.parametrize("entry_point", [
    "duplicate",
    "ddpm",  # the same entry-point name as the built-in plugin must not shadow it silently
])
def test_installed_duplicate_plugin_is_rejected(tmp_path, duplicate_plugin_source, pip_installer, entry_point):
    """The broken plugin goes into a private folder on a child's PYTHONPATH, never the environment."""
    pyproject = duplicate_plugin_source / "pyproject.toml"
    text = pyproject.read_text()
    assert '\nduplicate = "unetlab_duplicate_plugin"' in text
    pyproject.write_text(text.replace('\nduplicate = "', f'\n{entry_point} = "'))
    target = tmp_path / "site"
    pip_installer(duplicate_plugin_source, tmp_path / "build", "--target", str(target))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([*_unetlab_command(), "plugins"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("unetlab plugins: error: block resblock/ddpm is registered twice: by ")
    assert DDPM_PROVIDER in error
    assert "unetlab-duplicate-plugin (unetlab_duplicate_plugin)" in error


# --- spec errors ---------------------------------------------------------------------------

def test_unknown_block_name_lists_the_valid_names(make_tiny_spec):
    with pytest.raises(UnetlabError) as info:
        resolve_model_spec(make_tiny_spec(blocks={"attention": "linear"}))
    match = re.fullmatch(r"model\.blocks\.attention: unknown attention block 'linear' "
                         r"\(valid attention blocks: (.*)\)", str(info.value))
    assert match, str(info.value)
    names = match.group(1).split(", ")
    assert {"ddpm", "multihead"} <= set(names) and names == sorted(names)
    assert set(names) == {n for s, n in get_registry().blocks if s == "attention"}

    with pytest.raises(UnetlabError, match=r"^model\.level_blocks\.0\.downsample: unknown downsample block "
                                           r"'maxpool' \(valid downsample blocks: avgpool, conv, ddpm, resblock"):
        resolve_model_spec(make_tiny_spec(level_blocks={0: {"downsample": "maxpool"}}))
    with pytest.raises(UnetlabError, match=r"^model\.blocks: unknown slot 'bottleneck' \(slots: resblock, "):
        resolve_model_spec(make_tiny_spec(blocks={"bottleneck": "ddpm"}))


def test_unknown_option_lists_the_valid_options(make_tiny_spec):
    with pytest.raises(UnetlabError) as info:
        resolve_model_spec(make_tiny_spec(blocks={"attention": {"name": "ddpm", "heads": 4}}))
    assert str(info.value) == "model.blocks.attention: unknown option 'heads' (valid options: fp32_softmax, fused)"
    with pytest.raises(UnetlabError) as info:
        resolve_model_spec(make_tiny_spec(blocks={"upsample": {"name": "ddpm", "mode": "bilinear"}}))
    assert str(info.value) == "model.blocks.upsample: unknown option 'mode' (valid options: none)"
    with pytest.raises(UnetlabError) as info:
        resolve_model_spec(make_tiny_spec(widht=64))
    assert str(info.value).startswith("model: unknown option 'widht' (valid options: attn_resolutions, "
                                      "base_channels, blocks, ")


@pytest.mark.parametrize("override, message", [
    ({"blocks": {"attention": {"name": "ddpm", "fused": "yes"}}},
     "model.blocks.attention.fused: expected bool, got str 'yes'"),
    ({"blocks": {"attention": {"name": "multihead", "heads": True}}},
     "model.blocks.attention.heads: expected int, got bool True"),
    ({"level_blocks": {1: {"attention": {"name": "multihead", "heads": 2.5}}}},
     "model.level_blocks.1.attention.heads: expected int, got float 2.5"),
    ({"blocks": {"resblock": {"name": "ddpm", "conditioning": "film"}}},
     "model.blocks.resblock.conditioning: 'film' is not one of 'add', 'scale_shift'"),
    ({"base_channels": "wide"}, "model.base_channels: expected int, got str 'wide'"),
    ({"channel_mult": [1, "2"]}, "model.channel_mult[1]: expected int, got str '2'"),
])
def test_bad_option_type_names_the_key_path(make_tiny_spec, override, message):
    with pytest.raises(UnetlabError) as info:
        resolve_model_spec(make_tiny_spec(**override))
    assert str(info.value) == message


def test_int_is_accepted_for_a_float_option(make_tiny_spec):
    spec = resolve_model_spec(make_tiny_spec(blocks={"resblock": {"name": "adm", "output_scale": 1}}))
    scale = spec.choice("resblock").options["output_scale"]
    assert scale == 1.0 and type(scale) is float


def test_heads_and_head_channels_together_are_rejected(make_tiny_spec):
    both = {"name": "multihead", "heads": 2, "head_channels": 16}
    with pytest.raises(UnetlabError) as info:
        resolve_model_spec(make_tiny_spec(blocks={"attention": both}))
    assert str(info.value) == "model.blocks.attention: give heads or head_channels, not both"
    with pytest.raises(UnetlabError) as info:
        build_model(make_tiny_spec(level_blocks={1: {"attention": both}}), "torch")
    assert str(info.value) == "model.level_blocks.1.attention: give heads or head_channels, not both"
    # either one alone is fine
    for options in ({"heads": 2}, {"head_channels": 16}):
        model = build_model(make_tiny_spec(blocks={"attention": {"name": "multihead", **options}}), "torch")
        assert model.mid.attn_1.heads == (2 if "heads" in options else 64 // 16)


# --- a block that lacks a framework --------------------------------------------------------

class _TorchOnly:
    @unetlab.hookimpl
    def unetlab_blocks(self):
        from unetlab.blocks.attention import COMMON_OPTIONS, Attention
        return [BlockDef("attention", "torch_only", portable(Attention.factory, frameworks=("torch",)),
                         COMMON_OPTIONS, "single-head attention, PyTorch only")]


def test_block_missing_a_framework_fails_clearly_on_build(make_tiny_spec):
    registry = Registry(make_plugin_manager(extra_plugins=[_TorchOnly()]))
    assert registry.block("attention", "torch_only").frameworks == ("torch",)
    # the spec carries the blocks of the registry it was resolved against to the build
    spec = resolve_model_spec(make_tiny_spec(blocks={"attention": "torch_only"}), registry=registry)
    x, t = _inputs(make_tiny_spec())
    assert _forward(build_model(spec, "torch"), "torch", x, t).shape == x.shape
    with pytest.raises(UnetlabError) as info:
        build_model(spec, "jittor")
    assert str(info.value) == "block attention/torch_only has no jittor implementation (it has: torch)"


# --- the plugins command -------------------------------------------------------------------

def test_plugins_command_lists_slots_frameworks_and_the_plugin_block(example_plugin_installed):
    done = subprocess.run([*_unetlab_command(), "plugins"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["slot", "name", "frameworks", "options", "provider"]
    rows = [line.split() for line in lines[2:] if line.split() and line.split()[0] in SLOTS]
    assert {r[0] for r in rows} == set(SLOTS)
    assert {(r[0], r[1]) for r in rows} >= BUILTIN_BLOCKS | {("attention", "example_linear")}
    assert all(r[2] == "torch,jittor" for r in rows)
    example = next(line for line in lines if line.split()[:2] == ["attention", "example_linear"])
    assert "gain=1.0" in example and EXAMPLE_PROVIDER in example
    assert re.search(r"^presets: (.*, )?adm, (.*, )?ddpm(, .*)?$", done.stdout, re.M)


def test_plugins_command_filters_by_slot(example_plugin_installed, capsys):
    from unetlab import cli

    assert cli.main(["plugins", "--slot", "attention"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:] if line.strip()]
    slots = {r[0] for r in rows if r[0] in SLOTS}
    names = {r[1] for r in rows if r[0] in SLOTS}
    assert slots == {"attention"}
    assert {"ddpm", "multihead", "example_linear"} <= names
