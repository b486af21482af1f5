"""Down- and upsampling blocks that keep the channel count."""
from __future__ import annotations

from ..portable import portable


@portable
def ConvDown(ops):
    """Stride-2 3x3 conv, padding 1."""

    class ConvDown(ops.Module):
        takes_time_embedding = False
        padding = 1

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__()
            self.conv = ops.Conv2d(in_channels, out_channels, 3, stride=2, padding=self.padding)

        def forward(self, x):
            return self.conv(x)

    return ConvDown


@portable
def AsymmetricConvDown(ops):
    """DDPM's stride-2 3x3 conv: zero padding on the right and bottom only."""

    class AsymmetricConvDown(ConvDown.of(ops)):
        padding = 0

        def forward(self, x):
            return self.conv(ops.pad(x, (0, 1, 0, 1)))

    return AsymmetricConvDown


@portable
def AvgPoolDown(ops):
    """2x2 average pooling, no parameters."""

    class AvgPoolDown(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__()

        def forward(self, x):
            return ops.avg_pool2x(x)

    return AvgPoolDown


@portable
def NearestConvUp(ops):
    """Nearest-neighbour x2, then a 3x3 conv."""

    class NearestConvUp(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__()
            self.conv = ops.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)

        def forward(self, x):
            return self.conv(ops.upsample_nearest2x(x))

    return NearestConvUp


@portable
def TransposedConvUp(ops):
    """A 4x4 stride-2 transposed conv."""

    class TransposedConvUp(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__()
            self.conv = ops.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)

        def forward(self, x):
            return self.conv(x)

    return TransposedConvUp
