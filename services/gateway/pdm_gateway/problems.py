"""Errors as RFC 9457 problem details (`application/problem+json`), for every failure path:
our own `Problem`s, FastAPI's validation errors, Starlette's HTTP errors and crashes."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)
MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://pdm.dev/problems/"


class ProblemDetail(BaseModel):
    """RFC 9457 problem details; `errors` lists field errors of a 422."""

    type: str = Field("about:blank", description="URI naming the problem type.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class Problem(Exception):
    """Raise to answer with a problem document; `slug` becomes the problem type URI."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    request: Request | None,
    status: int,
    detail: str | None,
    *,
    slug: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug if slug else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


#: Documented on every route that can answer with a problem (OpenAPI `responses`).
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {
            "model": ProblemDetail,
            "description": HTTPStatus(s).phrase,
            "content": {MEDIA_TYPE: {}},
        }
        for s in statuses
    }


def install(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(
            request,
            exc.status,
            exc.detail,
            slug=exc.slug,
            title=exc.title,
            headers=exc.headers,
            **exc.extra,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return problem_response(
            request,
            422,
            f"{where}: {first['msg']}" if where else str(first["msg"]),
            slug="validation",
            title="Invalid request",
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(
            request, exc.status_code, str(exc.detail), headers=dict(exc.headers or {})
        )

    async def on_database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable", path=request.url.path, error=repr(exc))
        return problem_response(
            request,
            503,
            "the database is unavailable; nothing was changed, retry shortly",
            slug="database-unavailable",
            headers={"Retry-After": "5"},
        )

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed", path=request.url.path, error=repr(exc))
        return problem_response(
            request,
            500,
            "the gateway failed to answer; the error is logged (see the gateway's logs)",
            slug="internal",
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(psycopg.OperationalError, on_database_down)
    app.add_exception_handler(PoolTimeout, on_database_down)
    app.add_exception_handler(Exception, on_crash)
