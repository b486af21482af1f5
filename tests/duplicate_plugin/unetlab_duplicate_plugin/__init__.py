"""A deliberately broken unetlab plugin: it claims ``resblock/ddpm``, which unetlab already has.

Installing it makes every registry load fail; the tests install it only into a temporary
folder that a child process puts on its path, never into the environment.
"""
from __future__ import annotations

import unetlab
from unetlab.blocks.residual import RESBLOCK_OPTIONS, ResBlock


@unetlab.hookimpl
def unetlab_blocks():
    return [unetlab.BlockDef("resblock", "ddpm", ResBlock, RESBLOCK_OPTIONS,
                             "a second resblock/ddpm")]
