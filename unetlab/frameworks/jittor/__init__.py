"""Jittor's set-up and workarounds: compiler and cache set-up, the lazy runtime import, CUDA 13
support, convolution and matmul paths, array layout, einops support and NVML memory readings."""
