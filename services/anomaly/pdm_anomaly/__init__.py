"""Anomaly service: streaming detectors over validated readings, turned into alarms."""
