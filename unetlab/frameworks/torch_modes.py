"""PyTorch speed options named in specs and on the command line (importing torch not needed)."""

#: torch.compile modes: ``default``, and those that also capture CUDA graphs or autotune kernels.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: The modes that replay CUDA graphs (each call then starts a new graph step).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
