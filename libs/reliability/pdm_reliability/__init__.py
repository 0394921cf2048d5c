"""Reliability analytics: censored Weibull fits, PM intervals, risk, Pareto, FMEA: pure functions.

Modules (import them directly; nothing is re-exported here, so that using `risk` or `fmea`
does not pay for importing lifelines):

- `weibull`: 2-parameter Weibull fits of right-censored lifetimes (B-x life, MTBF, bounds),
  and lifetimes per (asset type, failure mode) from an event history.
- `pm_interval`: the optimal age-replacement (preventive maintenance) interval and its cost
  rate against running to failure.
- `risk`: probability x consequence, a configurable 5x5 risk matrix, asset ranking, Pareto.
- `fmea`: PFMEA rows with RPN and the AIAG & VDA (2019) action priority.
- `rootcause`: validated 5-whys records with a JSON round trip.

No I/O; results are frozen dataclasses with a JSON-ready `to_dict()`.
"""
