"""Developer and operator tools: the `pdm` CLI, the embedded stack, replay, DLQ tools."""
