"""Response and request bodies of the HTTP API, one module per domain (their JSON Schemas
are in the OpenAPI document). Events that already have a model in `pdm_common.events` are
reused as they are, not restated."""
