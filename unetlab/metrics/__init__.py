"""Measurements: model size and cost, FID and other scores of generated images, speed and memory.

The distances between feature sets are exported here: :func:`frechet_distance`, :func:`kid`
(returns :class:`KID`: mean and std over subsets) and :func:`prdc` (precision, recall, density,
coverage).
"""
from .distances import KID, frechet_distance, kid, prdc

__all__ = ["KID", "frechet_distance", "kid", "prdc"]
