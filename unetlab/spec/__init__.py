"""Typed, validated specs: the model section and the run sections around it."""
from .loading import deep_merge, expand_dotted, load_mapping, load_yaml, set_dotted
from .model import ModelSpec, SlotChoice, resolve_model_spec
from .run import SECTIONS, budget_steps, resolve_run_spec

__all__ = ["ModelSpec", "SECTIONS", "SlotChoice", "budget_steps", "deep_merge", "expand_dotted",
           "load_mapping", "load_yaml", "resolve_model_spec", "resolve_run_spec", "set_dotted"]
