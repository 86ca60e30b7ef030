"""Experiments: the CPU recipe, the data-efficiency benchmark, recipe tuning, the GPU benchmark, timing, quickstart."""
