"""Where a pretrained UNet2DModel lives: a local folder, or a Hugging Face hub id."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnetlabError

CONFIG = "config.json"
SCHEDULER = "scheduler_config.json"
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
#: what a hub download fetches (flat model repos and pipeline repos with unet/ and scheduler/)
HUB_PATTERNS = [CONFIG, SCHEDULER, *WEIGHTS, "unet/" + CONFIG, *("unet/" + w for w in WEIGHTS),
                "scheduler/" + SCHEDULER]
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class PretrainedFiles:
    """The files of one pretrained UNet2DModel (``scheduler`` may be None)."""

    name: str
    config: Path
    weights: Path
    scheduler: Path | None


def is_hub_id(source: str) -> bool:
    """``owner/name`` where no folder ``owner`` exists here (``runs/typo`` stays a path)."""
    return bool(_HUB_ID.fullmatch(str(source))) and not Path(str(source).split("/")[0]).exists()


def is_model_folder(path: Path) -> bool:
    """A folder holding a UNet2DModel config (at its top or in ``unet/``)."""
    for folder in (path, path / "unet"):
        config = folder / CONFIG
        if config.is_file():
            try:
                data = json.loads(config.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("_class_name") == "UNet2DModel":
                return True
    return False


def is_pretrained_source(source) -> bool:
    """True for a UNet2DModel folder or a hub id (what ``locate`` accepts)."""
    path = Path(source)
    return is_model_folder(path) if path.is_dir() else is_hub_id(str(source))


def locate(source) -> PretrainedFiles:
    """The files of ``source``: a folder (flat, or a pipeline with ``unet/``), or a hub id,
    downloaded (or found in the hub's local cache) through ``huggingface_hub``."""
    path = Path(source)
    if not path.is_dir():
        if not is_hub_id(str(source)):
            raise UnetlabError(f"{source}: no such folder (expected a UNet2DModel folder or a hub id owner/name)")
        path = _download(str(source))
    model = path / "unet" if (path / "unet" / CONFIG).is_file() and not (path / CONFIG).is_file() else path
    if not (model / CONFIG).is_file():
        raise UnetlabError(f"{source}: no {CONFIG} (a diffusers UNet2DModel folder holds {CONFIG} and "
                           f"{WEIGHTS[0]})")
    weights = next((model / w for w in WEIGHTS if (model / w).is_file()), None)
    if weights is None:
        raise UnetlabError(f"{source}: no weights ({' or '.join(WEIGHTS)}) beside {model / CONFIG}")
    scheduler = next((p for p in (path / SCHEDULER, path / "scheduler" / SCHEDULER, model / SCHEDULER)
                      if p.is_file()), None)
    return PretrainedFiles(str(source), model / CONFIG, weights, scheduler)


def _offline_help(repo_id: str, why: str) -> str:
    return (f"{repo_id}: {why}; download {CONFIG}, {WEIGHTS[0]} (or .bin) and {SCHEDULER} from "
            f"https://huggingface.co/{repo_id} into the folder {repo_id}/ here (or any folder, passed "
            f"instead of the id)")


def _download(repo_id: str) -> Path:
    try:
        import huggingface_hub
    except ImportError:
        raise UnetlabError(_offline_help(repo_id, "not a local folder, and huggingface_hub is not installed "
                                                  "(pip install 'unetlab[pretrained]')")) from None
    try:  # the local cache first: works offline once downloaded
        return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # offline, unknown repo, gated repo: all end the same way for the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnetlabError(_offline_help(repo_id, f"cannot fetch it from the hub ({type(exc).__name__}: "
                                                  f"{reason[:160]})")) from None
