"""Security headers on every gateway answer, as a pure ASGI middleware: only the start of an
answer is touched, so streamed answers (server-sent events, CSV exports) pass unbuffered and
WebSockets are left alone.

- `X-Content-Type-Options: nosniff` everywhere: a browser never guesses a type we did not send.
- `Cache-Control: no-store` on every `/v1/` answer: plant data must not stay in a browser's or
  a proxy's cache (a route that sets its own policy keeps it).
- HTML gets a frame policy (`X-Frame-Options: DENY`, `frame-ancestors 'none'`) and a CSP that
  allows nothing by default. A page with its own CSP (the sandboxed drift report) keeps it,
  with `frame-ancestors 'none'` added. The Swagger UI page gets exactly what FastAPI's page
  loads: its script and style sheet from the CDN, its icon, the inline bootstrap script by
  hash (no `'unsafe-inline'` for scripts), and requests to its own origin (the schema, "Try
  it out"); Swagger UI sets inline styles, so styles may be inline.

The server banner is not ours to strip here: uvicorn writes it below ASGI, so the gateway's
runner starts uvicorn with `server_header=False`.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastapi.openapi.docs import get_swagger_ui_html

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

FRAME_ANCESTORS = "frame-ancestors 'none'"
#: Any HTML page without a policy of its own (e.g. the OAuth2 redirect page, an error page).
HTML_CSP = f"default-src 'none'; base-uri 'none'; form-action 'none'; {FRAME_ANCESTORS}"
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def _swagger_default(name: str) -> str:
    """Where FastAPI's Swagger UI page loads `name` from (its CDN default), so the policy
    follows a FastAPI upgrade that moves the assets."""
    return str(inspect.signature(get_swagger_ui_html).parameters[name].default)


def swagger_csp(page: bytes) -> str:
    """The policy of FastAPI's Swagger UI page `page`: its inline scripts are allowed by
    hash. Only for a page FastAPI renders from the app's own settings (no request input
    reaches it), so hashing what it holds allows nothing an attacker wrote."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {_swagger_default('swagger_js_url')} {hashes}".rstrip(),
            f"style-src {_swagger_default('swagger_css_url')} 'unsafe-inline'",
            f"img-src 'self' data: {_swagger_default('swagger_favicon_url')}",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            FRAME_ANCESTORS,
        )
    )


def _get(headers: Headers, name: bytes) -> bytes | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _html_headers(headers: Headers, page: bytes | None) -> Headers:
    """`headers` of an HTML answer with its CSP and frame policy; `page` is the body of a
    Swagger UI page, None for any other page."""
    own = _get(headers, b"content-security-policy")
    rest = [(k, v) for k, v in headers if k.lower() != b"content-security-policy"]
    if page is not None:
        policy = swagger_csp(page)
    elif own is not None:
        policy = own.decode("latin-1")
        if "frame-ancestors" not in policy:
            policy = f"{policy.rstrip('; ')}; {FRAME_ANCESTORS}"
    else:
        policy = HTML_CSP
    rest.append((b"content-security-policy", policy.encode("latin-1")))
    if _get(rest, b"x-frame-options") is None:
        rest.append((b"x-frame-options", b"DENY"))
    return rest


class SecurityHeaders:
    """Adds the headers above to every HTTP answer. `docs_paths` are the paths of FastAPI's
    Swagger UI page: that small page is held until its body is known, to hash its inline
    script; every other answer is passed on as it comes."""

    def __init__(self, app: ASGIApp, docs_paths: Iterable[str | None] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(path for path in docs_paths if path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        plant_data = scope["path"].startswith("/v1/")
        docs = scope["path"] in self.docs_paths
        held: Message | None = None
        body = b""

        async def secure_send(message: Message) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start":
                headers: Headers = list(message.get("headers", []))
                if _get(headers, b"x-content-type-options") is None:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if plant_data and _get(headers, b"cache-control") is None:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
                if (_get(headers, b"content-type") or b"").startswith(b"text/html"):
                    if docs:
                        held = message  # sent with the whole page, once its hash is known
                        return
                    message["headers"] = _html_headers(headers, None)
            elif held is not None and message["type"] == "http.response.body":
                body += message.get("body", b"")
                if message.get("more_body", False):
                    return
                held["headers"] = _html_headers(held["headers"], body)
                await send(held)
                held = None
                message = {"type": "http.response.body", "body": body, "more_body": False}
            await send(message)

        await self.app(scope, receive, secure_send)
