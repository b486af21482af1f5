"""Measurements: model size and cost, FID, speed and memory."""
