"""Noise schedules, training targets and samplers, written once for both frameworks.

The samplers only use arithmetic on tensors and the model call, so the same functions run on
PyTorch tensors, Jittor arrays, and numpy arrays for tests.
"""
from .ddim import ddim_sample, ddim_step, ddim_timesteps, ddpm_sample, predict_eps
from .losses import reduce_loss, training_loss
from .schedules import Schedule, make_betas, make_schedule
from .targets import noisy_inputs, sample_timesteps

__all__ = ["Schedule", "ddim_sample", "ddim_step", "ddim_timesteps", "ddpm_sample", "make_betas",
           "make_schedule", "noisy_inputs", "predict_eps", "reduce_loss", "sample_timesteps",
           "training_loss"]
