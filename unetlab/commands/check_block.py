"""``unetlab check-block SLOT/NAME``: compare a block's PyTorch and Jittor implementations,
forward and gradients, with every parameter random (see :mod:`unetlab.testing`).  Prints the
worst relative error of each tensor; exits 1 when one is over its tolerance."""
from __future__ import annotations

import yaml

from ..errors import UnetlabError
from ..registry import get_registry
from .block_info import find_block


def add_parser(sub):
    p = sub.add_parser("check-block", help="compare a block's PyTorch and Jittor forward pass and gradients")
    p.add_argument("block", metavar="SLOT/NAME", help="the block, e.g. attention/multihead")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="check with this option (value parsed as YAML; repeatable); without any, the "
                        "defaults and the variations the block declares or that follow from its options")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, inputs and projection")
    return p


def parse_options(pairs: list[str]) -> dict | None:
    """``["heads=2", "fused=false"]`` -> ``{"heads": 2, "fused": False}``; None when empty."""
    if not pairs:
        return None
    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UnetlabError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UnetlabError(f"--option {pair!r}: not a YAML value ({' '.join(str(exc).split())})") from None
    return options


def run(args):
    from ..testing import check_block

    block = find_block(get_registry(), args.block)
    result = check_block(block.slot, block.name, parse_options(args.option), seed=args.seed, strict=False)
    print(result.table())
    for note in result.notes:
        print(f"note: {note}")
    print(result.summary())
    return 0 if result.ok else 1
