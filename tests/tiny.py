"""Tiny specs shared by the tests: small enough for a 2-core CPU, large enough to use every slot."""

#: The smallest U-Net that still fills every slot (8x8, two levels): each registered block is
#: swapped into it for the PyTorch/Jittor parity test.  (conftest.TINY_MODEL is a 16x16 one.)
PARITY_MODEL = {
    "image_size": 8, "in_channels": 3, "out_channels": 3, "base_channels": 16,
    "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4], "norm_groups": 4,
    "dropout": 0.0,
}

DIGITS_MODEL = {
    "image_size": 16, "in_channels": 1, "out_channels": 1, "base_channels": 32,
    "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [8], "norm_groups": 8,
    "dropout": 0.0,
}


def digits_run(steps=20, **train):
    """A digits run spec with a step budget and a short schedule."""
    return {
        "model": dict(DIGITS_MODEL),
        "diffusion": {"T": 100},
        "data": {"dataset": "digits"},
        "train": {"steps": steps, "batch_size": 32, "lr": 2e-4, "log_every": 1, "checkpoint_every": 5, **train},
        "sample": {"steps": 5, "num_images": 4},
    }


def rel_err(a, b) -> float:
    """max |a - b| / max |a|: the relative error the parity tests bound."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
