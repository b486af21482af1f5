"""What each cluster engine needs installed, and the one-line error when it is missing."""
from __future__ import annotations

import importlib

from ...errors import UnetlabError

#: engine -> (the module it needs, the extra that installs it)
NEEDS = {"slurm": ("submitit", "slurm"), "ray": ("ray", "ray")}


def require(engine: str):
    """Import what ``engine`` needs, or raise one line saying how to install it."""
    module, extra = NEEDS[engine]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UnetlabError(f"--engine {engine} needs {module}: pip install 'unetlab[{extra}]'") from None
