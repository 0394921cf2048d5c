"""The prediction service: failure probability, RUL and health per asset, on request."""

#: The service's name, defined once for every module: the `source` of the events it publishes,
#: its logs' and metrics' `service`, its Kafka client id (`pdm-<name>`), its dead letters'
#: `pdm-service` header.
SERVICE = "prediction"
