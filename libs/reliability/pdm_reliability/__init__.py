"""Reliability analytics: censored Weibull fits, PM intervals, risk, Pareto, FMEA: pure functions."""
