"""unetlab: a plugin-based U-Net architecture lab for diffusion models, in PyTorch and Jittor."""
from .errors import UnetlabError
from .hookspecs import hookimpl
from .model import build_model
from .options import Option
from .pretrained import load_pretrained
from .registry import BlockDef, get_registry, portable
from .run.loading import LoadedRun, load_run
from .spec import resolve_model_spec
from .weights import count_parameters, get_weights, load_ddpm_state_dict, set_weights

__version__ = "0.1.0"

__all__ = [
    "BlockDef", "UnetlabError", "build_model", "count_parameters", "get_registry", "get_weights",
    "hookimpl", "LoadedRun", "load_ddpm_state_dict", "load_pretrained", "load_run", "Option", "portable", "resolve_model_spec",
    "set_weights",
]
