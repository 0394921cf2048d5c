"""Detectors: pure, separately tested, causal (no look-ahead). The service and the NAB
benchmark run the same code."""
