"""Seeds: the one range every seed must lie in, for specs, ablation ``seeds:`` and ``--seed``.

numpy, torch and Jittor all take a seed in [0, 2**32); a larger one overflows in one of them
(or is silently folded), so it is refused where it is given.
"""
from __future__ import annotations

from .errors import UnetlabError
from .options import check_number

#: Seeds lie in ``[0, SEED_LIMIT)``.
SEED_LIMIT = 2**32
#: The largest seed.
MAX_SEED = SEED_LIMIT - 1


def check_seed(value, where: str = "seed") -> int:
    """``value`` if it is an integer seed in [0, 2**32), else a one-line error naming ``where``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise UnetlabError(f"{where}: expected an integer seed, got {type(value).__name__} {value!r}")
    return check_number(value, where, 0, MAX_SEED)
