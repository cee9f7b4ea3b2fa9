"""Experiments built on the steps: the ablation (two-stage vs single-stage, with the leaky control)."""
