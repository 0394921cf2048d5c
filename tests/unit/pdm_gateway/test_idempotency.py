"""The Idempotency-Key rules on their own (no route, no database): a new key runs the
request, the same body is replayed, another body is refused, an unfinished first request
makes a retry wait, a failure frees the key, and no key means no bookkeeping at all."""

from __future__ import annotations

from typing import Any

import pytest

from pdm_gateway.api.schemas.readings import ReadingsAccepted
from pdm_gateway.idempotency import IdempotentRequest
from pdm_gateway.problems import Problem
from pdm_gateway.store.idempotency_keys import Claim


class Book:
    """In-memory claims with the store's semantics."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[str, int | None, Any]] = {}
        self.calls: list[str] = []

    async def begin(self, key_id: str, idem_key: str, request_sha256: str) -> Claim:
        self.calls.append("begin")
        row = self.rows.get((key_id, idem_key))
        if row is None:
            self.rows[(key_id, idem_key)] = (request_sha256, None, None)
            return Claim("new")
        if row[0] != request_sha256:
            return Claim("mismatch")
        return Claim("in_flight") if row[1] is None else Claim("replay", row[1], row[2])

    async def finish(self, key_id: str, idem_key: str, status: int, response: Any) -> None:
        self.calls.append("finish")
        self.rows[(key_id, idem_key)] = (self.rows[(key_id, idem_key)][0], status, response)

    async def abandon(self, key_id: str, idem_key: str) -> None:
        self.calls.append("abandon")
        self.rows.pop((key_id, idem_key), None)


ANSWER = ReadingsAccepted(messages=1, readings=2, idempotency_key="k")


async def test_first_request_runs_and_its_answer_is_replayed() -> None:
    book = Book()
    first = IdempotentRequest(book, "key1", "k", b"body")
    assert await first.begin() is None
    await first.finish(202, ANSWER)
    again = IdempotentRequest(book, "key1", "k", b"body")
    assert await again.begin() == ANSWER.model_dump(mode="json")


async def test_another_body_is_refused_and_an_unfinished_first_makes_a_retry_wait() -> None:
    book = Book()
    assert await IdempotentRequest(book, "key1", "k", b"body").begin() is None
    with pytest.raises(Problem) as busy:
        await IdempotentRequest(book, "key1", "k", b"body").begin()
    assert busy.value.status == 409 and busy.value.headers == {"Retry-After": "1"}
    with pytest.raises(Problem) as other:
        await IdempotentRequest(book, "key1", "k", b"other body").begin()
    assert other.value.status == 422 and other.value.slug == "idempotency-mismatch"


async def test_abandon_frees_the_key() -> None:
    book = Book()
    request = IdempotentRequest(book, "key1", "k", b"body")
    assert await request.begin() is None
    await request.abandon()
    assert book.rows == {}


async def test_without_a_key_nothing_is_recorded() -> None:
    book = Book()
    request = IdempotentRequest(book, "key1", None, b"body")
    assert await request.begin() is None
    await request.finish(202, ANSWER)
    await request.abandon()
    assert book.calls == []
