"""The error a server start raises, with the tail of the server's log and a hint."""

from __future__ import annotations

from pathlib import Path

from pdm_tools.stack.processes.logs import log_tail


class ServerStartError(RuntimeError):
    """A server did not come up; the message says where its log is and what to try."""


def _start_error(what: str, log_file: Path | None, hint: str) -> ServerStartError:
    parts = [what]
    if log_file is not None:
        tail = log_tail(log_file)
        parts.append(f"Its log is {log_file}" + (f"; last lines:\n{tail}" if tail else " (empty)."))
    parts.append(hint)
    return ServerStartError("\n".join(parts))
