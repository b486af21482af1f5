"""Which plugins load: autoload on or off (UNETLAB_DISABLE_PLUGIN_AUTOLOAD, --disable-plugin-autoload),
plugins named with -p, hooks called through pluggy, and a broken plugin that costs one line."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest
import yaml

import unetlab
from unetlab import UnetlabError
from unetlab.registry import (DISABLE_AUTOLOAD_ENV, PLUGINS_ENV, PluginSelection, Registry,
                              make_plugin_manager)

from conftest import tiny_model_spec
from test_registry import EXAMPLE_PROVIDER, _unetlab_command

BROKEN_DIST = "unetlab-broken-plugin"


def _registry(selection: PluginSelection, extra=()) -> Registry:
    return Registry(make_plugin_manager(extra_plugins=extra, selection=selection))


def test_autoload_off_keeps_the_builtins_and_loads_only_named_plugins(example_plugin_installed):
    assert ("attention", "example_linear") in _registry(PluginSelection()).blocks
    off = _registry(PluginSelection(autoload=False))
    assert ("attention", "example_linear") not in off.blocks
    assert ("resblock", "ddpm") in off.blocks and "ddpm" in off.presets
    for name in ("example_linear", example_plugin_installed):  # entry-point or distribution name
        named = _registry(PluginSelection(autoload=False, named=(name,)))
        assert named.block("attention", "example_linear").provider == EXAMPLE_PROVIDER
    skipped = _registry(PluginSelection(named=(), skipped=("example_linear",)))
    assert ("attention", "example_linear") not in skipped.blocks


def test_selection_from_the_environment():
    env = {DISABLE_AUTOLOAD_ENV: "1", PLUGINS_ENV: "mypkg, no:other ,"}
    assert PluginSelection.from_environment(env) == PluginSelection(False, ("mypkg",), ("other",))
    assert PluginSelection.from_environment({DISABLE_AUTOLOAD_ENV: "0"}).autoload
    assert PluginSelection.from_environment({}) == PluginSelection()


def test_a_named_module_is_loaded_and_an_unknown_name_is_one_error(example_plugin_installed):
    registry = _registry(PluginSelection(autoload=False, named=("unetlab_example_plugin",)))
    assert registry.block("attention", "example_linear").provider == "unetlab_example_plugin"
    with pytest.raises(UnetlabError, match=r"^plugin 'no_such_plugin': no unetlab entry point, distribution "
                                           r"or module of that name \(ModuleNotFoundError"):
        make_plugin_manager(selection=PluginSelection(autoload=False, named=("no_such_plugin",)))


class _Watcher:
    """A pluggy hook wrapper: it sees every call of ``unetlab_blocks``, which only happens when
    unetlab calls its hooks through pluggy."""

    def __init__(self):
        self.seen = []

    @unetlab.hookimpl(wrapper=True)
    def unetlab_blocks(self):
        result = yield
        self.seen.extend(b.name for blocks in result for b in blocks or [])
        return result


def test_hooks_are_called_through_pluggy():
    watcher = _Watcher()
    registry = _registry(PluginSelection(autoload=False), extra=[watcher])
    assert sorted(set(watcher.seen)) == sorted({name for _, name in registry.blocks})


@pytest.fixture(scope="module")
def broken_plugin_path(tmp_path_factory):
    """A plugin whose entry point names a module that does not exist, pip-installed into a
    private folder (put on a child's PYTHONPATH, never into the environment)."""
    from conftest import pip_install

    root = tmp_path_factory.mktemp("broken")
    source = root / "broken"
    (source / "unetlab_broken_plugin").mkdir(parents=True)
    (source / "unetlab_broken_plugin" / "__init__.py").write_text("")
    (source / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "{BROKEN_DIST}"
        version = "0.1.0"
        [project.entry-points.unetlab]
        broken = "unetlab_broken_plugin.blocks"
        [tool.setuptools]
        packages = ["unetlab_broken_plugin"]
        """))
    target = root / "site"
    pip_install(source, root / "build", "--target", str(target))
    return target


def _cli(args, path, **env):
    base = {k: v for k, v in os.environ.items() if k not in (DISABLE_AUTOLOAD_ENV, PLUGINS_ENV)}
    env = {**base, "PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")])), **env}
    return subprocess.run([*_unetlab_command(), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_a_broken_plugin_beside_a_good_one_costs_one_line(example_plugin_installed, broken_plugin_path, tmp_path):
    done = _cli(["plugins"], broken_plugin_path)
    assert done.returncode == 0, done.stderr
    expected = (f"plugin {BROKEN_DIST} (entry point broken = unetlab_broken_plugin.blocks) failed to load, "
                f"its blocks are unavailable: ModuleNotFoundError: No module named 'unetlab_broken_plugin.blocks'")
    assert done.stderr.splitlines() == [f"unetlab: {expected}"]
    assert f"not loaded: {expected}" in done.stdout.splitlines()
    assert "example_linear" in done.stdout  # the good plugin still works

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"model": tiny_model_spec(blocks={"attention": "example_linear"})}))
    done = _cli(["report", str(spec), "--json"], broken_plugin_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"] > 0

    # a spec that needs a block nobody provides says which plugin failed
    spec.write_text(yaml.safe_dump({"model": tiny_model_spec(blocks={"attention": "gated"})}))
    done = _cli(["report", str(spec)], broken_plugin_path)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith(f"; plugin {BROKEN_DIST} failed to load")

    # skipped, or autoload off: not even tried
    for args, env in ((["-p", "no:broken", "plugins"], {}), (["plugins"], {DISABLE_AUTOLOAD_ENV: "1"}),
                      (["--disable-plugin-autoload", "plugins"], {})):
        done = _cli(args, broken_plugin_path, **env)
        assert done.returncode == 0 and done.stderr == "", (args, done.stderr)
    done = _cli(["--disable-plugin-autoload", "-p", "unetlab-example-plugin", "plugins"], broken_plugin_path)
    assert done.returncode == 0 and done.stderr == "" and "example_linear" in done.stdout

    # named explicitly, a broken plugin is an error
    done = _cli(["-p", "broken", "plugins"], broken_plugin_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"unetlab plugins: error: {expected}"]
