"""Why a migration run stops (the messages say what to do)."""

from __future__ import annotations


class MigrationError(RuntimeError):
    """A migration run cannot proceed; the message says what to do."""


class DatabaseUnreachable(MigrationError):
    """PostgreSQL could not be reached."""
