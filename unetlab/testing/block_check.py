"""``check_block``: a block's PyTorch and Jittor implementations compute the same, forward and
backward, with every parameter random.

For each option set (:mod:`.variations`) the block is built in both frameworks
(``BuildContext``: dropout 0, GroupNorm with 4 groups, eps 1e-5, time embedding width 32), every
trainable parameter is drawn at random (:mod:`.weights`; zero-initialised ones included) and
loaded into both, and the same random inputs go through both: ``x`` (2, C, 8, 8) with C = 16,
and ``emb`` (2, 32) for a block that takes the time embedding; a ``time_embedding`` block gets
integer timesteps in [0, 50) instead.  The output, and the gradients of ``sum(y * P)`` (``P`` a
fixed random tensor) with respect to every float input and every parameter, are compared.

Error of a tensor: ``max|a - b| / max(max|a|, max|b|, floor)``, where ``floor`` is
:data:`NOISE_FLOOR` times the largest value of any compared tensor of that pass: a gradient
that is zero in exact arithmetic (e.g. of a key bias under softmax) holds only rounding noise,
which is not a difference.  Tolerances (float32 on the CPU): :data:`FORWARD_RTOL` for the
output, :data:`GRAD_RTOL` for gradients.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from tabulate import tabulate

from ..blocks.building import block_label, build_block
from ..blocks.contract import BuildContext, call_block
from ..errors import UnetlabError
from ..frameworks import FRAMEWORKS, backend_for, ops_for
from ..registry import BlockDef, Registry, get_registry
from .variations import changed_from_defaults, option_sets
from .weights import random_parameters

FORWARD_RTOL = 1e-4
GRAD_RTOL = 1e-4
NOISE_FLOOR = 1e-2
CHANNELS = 16
EMB_CHANNELS = 32
NORM_GROUPS = 4
NORM_EPS = 1e-5
MAX_TIMESTEP = 50


@dataclass(frozen=True)
class TensorError:
    """The relative error of one compared tensor under one option set."""

    options: str
    tensor: str
    error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.error <= self.tolerance


@dataclass
class BlockCheck:
    """The outcome of :func:`check_block`: every compared tensor's error, per option set."""

    slot: str
    name: str
    option_sets: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.errors)

    @property
    def worst(self) -> TensorError:
        """The tensor furthest over (or nearest to) its tolerance."""
        return max(self.errors, key=lambda e: e.error / e.tolerance)

    def per_tensor(self) -> list[TensorError]:
        """The worst error of each tensor over all option sets, in the order first compared."""
        worst: dict[str, TensorError] = {}
        for e in self.errors:
            if e.tensor not in worst or e.error / e.tolerance > worst[e.tensor].error / worst[e.tensor].tolerance:
                worst[e.tensor] = e
        return list(worst.values())

    def table(self) -> str:
        """One row per tensor: its worst relative error, the tolerance and the option set."""
        rows = [[e.tensor, f"{e.error:.2e}", f"{e.tolerance:.0e}", "ok" if e.ok else "FAIL", e.options]
                for e in self.per_tensor()]
        return tabulate(rows, headers=["tensor", "worst rel err", "tolerance", "", "options"], tablefmt="simple")

    def summary(self) -> str:
        worst = self.worst
        verdict = "ok" if self.ok else "FAILED"
        return (f"{self.slot}/{self.name}: {verdict}, {len(self.option_sets)} option sets, "
                f"{len(self.errors)} tensors compared; worst: {worst.tensor} rel err {worst.error:.2e} "
                f"(tolerance {worst.tolerance:.0e}) with {worst.options}")

    def assert_ok(self) -> None:
        """Raise AssertionError naming the worst tensor when any is over its tolerance."""
        if not self.ok:
            raise AssertionError(self.summary())


def relative_error(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> float:
    """``max|a - b| / max(max|a|, max|b|, floor)``, 0 when that is zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), floor)
    return float(np.abs(a - b).max(initial=0.0) / scale) if scale > 0 else 0.0


def check_block(slot: str, name: str, options: Mapping | None = None, *, registry: Registry | None = None,
                seed: int = 0, forward_rtol: float = FORWARD_RTOL, grad_rtol: float = GRAD_RTOL,
                strict: bool = True) -> BlockCheck:
    """Check that block ``slot``/``name`` computes the same in PyTorch and Jittor (module doc).

    ``options``: check this one option set; None: the defaults and the variations of
    :func:`unetlab.testing.variations.option_sets`.  ``registry``: where to find the block
    (default: the installed plugins).  ``strict``: raise AssertionError naming the worst tensor
    when one is over its tolerance (else only return the :class:`BlockCheck`).
    """
    block = (registry or get_registry()).block(slot, name)
    missing = [fw for fw in FRAMEWORKS if fw not in block.frameworks]
    if missing:
        raise UnetlabError(f"{slot}/{name} has no {' or '.join(missing)} implementation to compare")
    sets, notes = option_sets(block, options)
    result = BlockCheck(slot, name, sets, notes=notes)
    for index, resolved in enumerate(sets):
        label = str(changed_from_defaults(block, resolved) or "defaults")
        outputs = _run_both(block, resolved, seed + index)
        floor = NOISE_FLOOR * max(np.abs(a).max(initial=0.0) for a in outputs["torch"].values())
        for tensor, reference in outputs["torch"].items():
            tolerance = forward_rtol if tensor == "output" else grad_rtol
            error = relative_error(reference, outputs["jittor"][tensor], floor)
            result.errors.append(TensorError(label, tensor, error, tolerance))
    if strict:
        result.assert_ok()
    return result


def _widths(slot: str) -> tuple[int, int]:
    if slot == "resblock":
        return CHANNELS, 2 * CHANNELS  # a width change exercises the shortcut projection
    if slot == "time_embedding":
        return CHANNELS, EMB_CHANNELS
    return CHANNELS, CHANNELS


def _context(framework: str, slot: str) -> BuildContext:
    return BuildContext(ops_for(framework), emb_channels=EMB_CHANNELS, dropout=0.0, norm_groups=NORM_GROUPS,
                        norm_eps=NORM_EPS, slot=slot)


def _inputs(block: BlockDef, cls: type, seed: int) -> dict:
    rng = np.random.default_rng([seed, 1])
    if block.slot == "time_embedding":
        return {"t": rng.integers(0, MAX_TIMESTEP, size=2).astype(np.int64)}
    inputs = {"x": rng.standard_normal((2, CHANNELS, 8, 8)).astype(np.float32)}
    if getattr(cls, "takes_time_embedding", False):
        inputs["emb"] = rng.standard_normal((2, EMB_CHANNELS)).astype(np.float32)
    return inputs


def _call(block_instance, tensors: dict):
    if "t" in tensors:
        return block_instance(tensors["t"])
    return call_block(block_instance, tensors["x"], tensors.get("emb"))


def _run_both(block: BlockDef, options: dict, seed: int) -> dict:
    """``{framework: {tensor name: array}}`` for one option set, same weights and inputs."""
    in_ch, out_ch = _widths(block.slot)
    label = block_label(block.slot, block.name)
    built = {fw: build_block(block.implementation(fw), _context(fw, block.slot), in_ch, out_ch, options, label)
             for fw in FRAMEWORKS}
    states = {fw: backend_for(fw).state_dict(m) for fw, m in built.items()}
    _check_same_parameters(label, states)
    trainable = {n for n, _ in backend_for("torch").trainable(built["torch"])}
    shapes = {n: a.shape for n, a in states["torch"].items() if n in trainable}
    weights = {**states["torch"], **random_parameters(shapes, seed)}
    inputs = _inputs(block, block.implementation("torch"), seed)
    projection_rng = np.random.default_rng([seed, 2])
    projections: dict = {}

    def projection(shape):
        if shape not in projections:  # the same P in both frameworks
            projections[shape] = projection_rng.standard_normal(shape).astype(np.float32)
        return projections[shape]

    outputs = {}
    for fw, module in built.items():
        backend_for(fw).load_state_dict(module, weights)
        passes = importlib.import_module(f"unetlab.testing.{fw}_pass")
        outputs[fw] = passes.forward_and_grads(module, inputs, _call, projection)
    missing = sorted(set(outputs["torch"]) - set(outputs["jittor"]))
    if missing:
        raise AssertionError(f"{label}: jittor gives no {missing[0]} (its parameters are not trainable?)")
    return outputs


def _check_same_parameters(label: str, states: dict) -> None:
    torch_names, jittor_names = set(states["torch"]), set(states["jittor"])
    if torch_names != jittor_names:
        only_t, only_j = sorted(torch_names - jittor_names), sorted(jittor_names - torch_names)
        raise AssertionError(f"{label}: parameter names differ between frameworks "
                             f"(torch only: {', '.join(only_t) or '-'}; jittor only: {', '.join(only_j) or '-'})")
    for n in sorted(torch_names):
        if tuple(states["torch"][n].shape) != tuple(states["jittor"][n].shape):
            raise AssertionError(f"{label}: {n} has shape {tuple(states['torch'][n].shape)} in torch, "
                                 f"{tuple(states['jittor'][n].shape)} in jittor")
