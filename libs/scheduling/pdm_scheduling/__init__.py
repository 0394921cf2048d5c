"""Maintenance schedule optimisation (OR-Tools CP-SAT): pure functions, no I/O."""
