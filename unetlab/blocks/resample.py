"""Down- and upsampling blocks that keep the channel count."""
from __future__ import annotations


def make_conv_down(asymmetric: bool):
    """Stride-2 3x3 conv: DDPM's (pad right/bottom only) or symmetric padding 1."""

    def factory(ops):
        class ConvDown(ops.Module):
            takes_time_embedding = False

            def __init__(self, ctx, in_channels, out_channels):
                super().__init__()
                self.conv = ops.Conv2d(in_channels, out_channels, 3, stride=2, padding=0 if asymmetric else 1)

            def forward(self, x):
                if asymmetric:
                    x = ops.pad(x, (0, 1, 0, 1))
                return self.conv(x)

        ConvDown.__name__ = "AsymmetricConvDown" if asymmetric else "ConvDown"
        return ConvDown

    return factory


def make_avgpool_down(ops):
    class AvgPoolDown(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__()

        def forward(self, x):
            return ops.avg_pool2x(x)

    return AvgPoolDown


def make_nearest_conv_up(ops):
    class NearestConvUp(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__()
            self.conv = ops.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)

        def forward(self, x):
            return self.conv(ops.upsample_nearest2x(x))

    return NearestConvUp


def make_transposed_conv_up(ops):
    class TransposedConvUp(ops.Module):
        takes_time_embedding = False

        def __init__(self, ctx, in_channels, out_channels):
            super().__init__()
            self.conv = ops.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)

        def forward(self, x):
            return self.conv(x)

    return TransposedConvUp
