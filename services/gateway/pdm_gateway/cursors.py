"""Opaque page cursors: the keyset position of the last row a client received.

Keyset (not OFFSET) pagination, so a page costs the same however deep it is and rows inserted
meanwhile neither repeat nor vanish. The cursor is URL-safe base64 of JSON; a cursor that does
not decode is the client's error (400), not ours.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any


class BadCursor(ValueError):
    pass


def encode(*parts: Any) -> str:
    values = [p.isoformat() if isinstance(p, datetime) else p for p in parts]
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, kinds: tuple[type, ...]) -> tuple[Any, ...]:
    """The parts of `cursor`, converted to `kinds` (datetime parts are ISO strings)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(kinds):
            raise BadCursor("cursor has the wrong shape")
        out: list[Any] = []
        for value, kind in zip(values, kinds, strict=True):
            if kind is datetime:
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    raise BadCursor("cursor time has no time zone")
                out.append(parsed)
            elif isinstance(value, kind):
                out.append(value)
            else:
                raise BadCursor("cursor has the wrong shape")
        return tuple(out)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadCursor(
            "invalid cursor: pass back the `next_cursor` of a previous answer unchanged"
        ) from exc
