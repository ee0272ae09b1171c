"""Estimators: BTYD (BG/NBD, Pareto/NBD, Gamma-Gamma), propensity, tiers, and the scoring bundle."""
