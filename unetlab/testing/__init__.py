"""Tools for plugin authors' own test suites: :func:`check_block` compares a block's PyTorch
and Jittor implementations, forward and backward, with every parameter random::

    from unetlab.testing import check_block

    def test_my_block():
        check_block("attention", "my_block")          # raises AssertionError when they differ
"""
from .block_check import FORWARD_RTOL, GRAD_RTOL, BlockCheck, TensorError, check_block, relative_error
from .variations import option_sets

__all__ = ["FORWARD_RTOL", "GRAD_RTOL", "BlockCheck", "TensorError", "check_block", "option_sets",
           "relative_error"]
