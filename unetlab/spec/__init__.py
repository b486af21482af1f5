"""Typed, validated specs: the model section and the run sections around it."""
from .loading import load_mapping
from .model import ModelSpec, SlotChoice, resolve_model_spec

__all__ = ["ModelSpec", "SlotChoice", "load_mapping", "resolve_model_spec"]
