"""Fleet simulator: acts as IoT gateways for simulated machines and publishes ground truth."""

#: The service's name, defined once for every module: the `source` of the events it publishes,
#: its logs' and metrics' `service`, its Kafka client id (`pdm-<name>`), its dead letters'
#: `pdm-service` header.
SERVICE = "simulator"
