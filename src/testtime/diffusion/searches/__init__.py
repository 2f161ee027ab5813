"""Searches over a diffusion model's samples, one file each, registered by name."""

from testtime.diffusion.searches import evolution, paths, random_search, smc, steps, zero_order
from testtime.diffusion.searches.base import Search, make_search

__all__ = ["Search", "evolution", "make_search", "paths", "random_search", "smc", "steps",
           "zero_order"]
