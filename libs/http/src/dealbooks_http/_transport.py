"""An httpx transport that sends requests with aiohttp.

Our clients speak httpx (requests, responses, errors, `MockTransport` in tests); only the wire
underneath changes. httpx's default transport (httpcore, h11, anyio) cost about 1 ms of CPU
per request on a loopback call; aiohttp's C parser and connection pool cost about 0.4 ms, and
an invoice's path makes several calls in each of three services. Errors come out as httpx's
own (`httpx.ConnectError`, `httpx.ReadTimeout`, ...), so retry policies see no difference.

Each call is a client span (OpenTelemetry) under the current one, naming the method, host and
status, never the path's query or a header; the request carries the W3C trace context
(`traceparent`) so a dealbooks service called continues the trace. Without a tracer provider
(tracing off) the span is OpenTelemetry's no-op one.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import certifi
import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from dealbooks_http._metrics import count_call

_tracer = trace.get_tracer("dealbooks_http")
_propagator = TraceContextTextMapPropagator()  # the trace context only, never baggage

# Below the 5 s keep-alive of common servers (uvicorn's default), so a pooled connection is
# dropped by us before the server closes it under a request.
KEEPALIVE_SECONDS = 4.0


def _client_timeout(extensions: dict[str, Any]) -> aiohttp.ClientTimeout:
    timeout = extensions.get("timeout") or {}
    pool, connect = timeout.get("pool"), timeout.get("connect")
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if pool is None or connect is None else pool + connect,
        sock_connect=connect,
        sock_read=timeout.get("read"),
    )


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends each request through one aiohttp session, made on first use (it belongs to the
    event loop it was made on)."""

    def __init__(self, *, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=KEEPALIVE_SECONDS,
                ssl=ssl.create_default_context(cafile=certifi.where()),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes the body from its headers
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),  # httpx's
                # Not HTTP(S)_PROXY or ~/.netrc: with it aiohttp reads ~/.netrc in a worker
                # thread on every request.
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        with _tracer.start_as_current_span(
            f"{request.method} {url.host}",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": request.method,
                "server.address": url.host,
                "server.port": url.port or (443 if url.scheme == "https" else 80),
                "url.scheme": url.scheme,
            },
            # An error's message may quote the URL, query string included: its type only.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                response = await self._send(request, span.is_recording())
            except httpx.TransportError as exc:
                count_call(url.host, None)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            count_call(url.host, response.status_code)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_status(Status(StatusCode.ERROR))
            return response

    async def _send(self, request: httpx.Request, traced: bool = False) -> httpx.Response:
        body = await request.aread()
        headers = list(request.headers.multi_items())
        if traced:
            carrier: dict[str, str] = {}
            _propagator.inject(carrier)
            headers += carrier.items()
        try:
            async with self._open().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,  # httpx follows them if asked
                timeout=_client_timeout(request.extensions),
            ) as response:
                content = await response.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except (TimeoutError, aiohttp.SocketTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientResponseError,  # a malformed response
        ) as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:  # OS errors on an open connection and the rest
            raise httpx.ReadError(str(exc), request=request) from exc
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            content=content,
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def async_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx client on `AiohttpTransport` (unless a `transport` is given)."""
    kwargs.setdefault("transport", AiohttpTransport())
    return httpx.AsyncClient(**kwargs)
