"""The API gateway: the one HTTP (REST + WebSocket) entry of the platform for clients."""

#: The service's name, defined once for every module: its logs' and metrics' `service`, its
#: Kafka client id (`pdm-<name>`), its database connections' `application_name`.
SERVICE = "gateway"
