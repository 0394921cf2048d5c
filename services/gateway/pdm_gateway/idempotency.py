"""What an `Idempotency-Key` means for one write request, apart from any route.

The first request with a key claims it with the fingerprint of its body; it then either
finishes (its answer is stored) or, when it failed before publishing, abandons the claim so a
retry can go through. A later request with the key is answered from the stored answer (same
body), refused with 422 (another body) or with 409 while the first is still in flight. A
request without a key runs as is: every step is then a no-op.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from pydantic import BaseModel

from pdm_gateway.problems import Problem
from pdm_gateway.store.idempotency_keys import Claim


class ClaimBook(Protocol):
    """Where claims are kept (`store.idempotency_keys.IdempotencyStore`)."""

    async def begin(self, key_id: str, idem_key: str, request_sha256: str) -> Claim: ...

    async def finish(self, key_id: str, idem_key: str, status: int, response: Any) -> None: ...

    async def abandon(self, key_id: str, idem_key: str) -> None: ...


class IdempotentRequest:
    """One request's use of its (optional) key: `begin`, then `finish` or `abandon`."""

    def __init__(self, book: ClaimBook, key_id: str, key: str | None, body: bytes) -> None:
        self.book = book
        self.key_id = key_id
        self.key = key
        self.fingerprint = hashlib.sha256(body).hexdigest() if key is not None else ""

    async def begin(self) -> dict[str, Any] | None:
        """None: go ahead (no key, or the key is now ours). Otherwise the answer stored by
        the first request with this key and body, to be given again. Raises `Problem` 422
        when the key came with another body, 409 while the first request is in flight."""
        if self.key is None:
            return None
        claim = await self.book.begin(self.key_id, self.key, self.fingerprint)
        if claim.state == "replay":
            stored: dict[str, Any] = claim.response
            return stored
        if claim.state == "mismatch":
            raise Problem(
                422,
                "this Idempotency-Key was used with a different body; use a new key for "
                "new readings",
                slug="idempotency-mismatch",
            )
        if claim.state == "in_flight":
            raise Problem(
                409,
                "a request with this Idempotency-Key is still being processed; retry later",
                slug="idempotency-in-flight",
                headers={"Retry-After": "1"},
            )
        return None

    async def finish(self, status: int, answer: BaseModel) -> None:
        """Keep the answer for the retries to come."""
        if self.key is not None:
            await self.book.finish(self.key_id, self.key, status, answer.model_dump(mode="json"))

    async def abandon(self) -> None:
        """The request failed before anything was published: free the key for a retry."""
        if self.key is not None:
            await self.book.abandon(self.key_id, self.key)
