"""Pruning schedules (re-exported from :mod:`dc_keras.train.schedules`)."""
from dc_keras.train.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule, StdThreshold

__all__ = ["ConstantSparsity", "PolynomialDecay", "StdThreshold", "PruningSchedule"]
