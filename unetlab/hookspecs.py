"""The hooks a unetlab plugin may implement.

A plugin is any module or object with functions marked ``@unetlab.hookimpl`` and named as
below; unetlab calls them through pluggy (so hook wrappers see every call).  unetlab's own blocks are plugins too: they are listed in the ``unetlab`` entry-point
group of unetlab's ``pyproject.toml``, exactly as a third-party package lists its own::

    [project.entry-points.unetlab]
    myblocks = "mypackage.blocks"
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("unetlab")
hookimpl = pluggy.HookimplMarker("unetlab")


@hookspec
def unetlab_blocks():
    """Return a list of :class:`unetlab.registry.BlockDef`, the blocks this plugin provides.

    Each block names its slot (``resblock``, ``attention``, ``time_embedding``, ``downsample``,
    ``upsample`` or ``norm``), its name, its declared options and one implementation per
    framework (typically a :func:`unetlab.portable` class; the contract a block fulfils is in
    :mod:`unetlab.blocks.contract`).  A slot and name pair may be provided by one plugin only.
    """


@hookspec
def unetlab_presets():
    """Return a mapping of preset name to model spec (a mapping), e.g. ``{"ddpm": {...}}``.

    A preset is a complete ``model`` section; ``build_model("ddpm")`` and ``preset: ddpm`` in a
    spec file refer to it.  A preset name may be provided by one plugin only.
    """
