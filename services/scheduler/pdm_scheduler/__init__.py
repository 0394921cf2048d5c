"""Scheduler service: work orders from predictions, alarms, plans and people, placed by the
optimiser (`pdm_scheduling`) before the predicted failure; completions with findings are the
platform's ground-truth labels."""

#: The service's name: the `source` of its events, its logs' and metrics' `service`, its
#: Kafka client id (`pdm-<name>`), its dead letters' `pdm-service` header.
SERVICE = "scheduler"
