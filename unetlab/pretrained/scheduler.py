"""A diffusers scheduler_config.json -> unetlab's ``diffusion`` spec section (the betas)."""
from __future__ import annotations

from typing import Mapping

from ..errors import UnetlabError

#: diffusers' beta_schedule -> unetlab's schedule of the same betas
SCHEDULES = {"linear": "linear", "scaled_linear": "quadratic", "squaredcos_cap_v2": "cosine"}
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


def scheduler_to_diffusion(config: Mapping, where: str = "scheduler_config.json") -> dict:
    """``{T, schedule, beta_start, beta_end, prediction}`` of a DDPM/DDIM scheduler config."""
    if config.get("trained_betas") is not None:
        raise UnetlabError(f"{where}: trained_betas: explicit beta lists are not supported")
    schedule = config.get("beta_schedule", "linear")
    if schedule not in SCHEDULES:
        raise UnetlabError(f"{where}: beta_schedule: {schedule!r} is not supported "
                           f"(supported: {', '.join(SCHEDULES)})")
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise UnetlabError(f"{where}: prediction_type: {prediction!r} is not supported "
                           f"(supported: {', '.join(PREDICTIONS)})")
    return {"T": int(config.get("num_train_timesteps", 1000)), "schedule": SCHEDULES[schedule],
            "beta_start": float(config.get("beta_start", 0.0001)),
            "beta_end": float(config.get("beta_end", 0.02)), "prediction": PREDICTIONS[prediction]}
