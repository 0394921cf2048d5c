"""Drift service: the model lifecycle. Checks the features each served champion sees against
the reference its training run logged (and each asset type's raw sensors against a baseline),
retrains on drift or on command, judges the challenger against the champion on the same
held-out machines, moves the `champion` / `previous` aliases, keeps the alias history, and
stores outcome labels (completed work orders, the simulator's truth)."""

#: The service's name: the `source` of its events, its logs' and metrics' `service`, its
#: Kafka client id (`pdm-<name>`), its dead letters' `pdm-service` header.
SERVICE = "drift"
