"""unetlab: a plugin-based U-Net architecture lab for diffusion models, in PyTorch and Jittor."""
from .errors import UnetlabError
from .hookspecs import hookimpl
from .model import build_model
from .options import Option
from .pretrained import load_pretrained
from .registry import BlockDef, get_registry, portable
from .spec import resolve_model_spec
from .weights import count_parameters, get_weights, load_ddpm_state_dict, set_weights

__version__ = "0.1.0"

__all__ = [
    "BlockDef", "UnetlabError", "build_model", "count_parameters", "get_registry", "get_weights",
    "hookimpl", "load_ddpm_state_dict", "load_pretrained", "Option", "portable", "resolve_model_spec",
    "set_weights",
]

# Jittor reads its environment at import time and crashes on machines with nvcc but no GPU:
# settle its environment now (no import), so ``import unetlab; import jittor`` works too.
# A problem found here (say, an unsupported Jittor) must not block PyTorch-only use: it is
# raised again when Jittor is first asked for.
from .frameworks import jittor_setup as _jittor_setup  # noqa: E402

try:
    _jittor_setup.prepare()
except UnetlabError:
    pass
