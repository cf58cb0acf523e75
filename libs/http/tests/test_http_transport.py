"""`AiohttpTransport` behaves as httpx's own transport does for everything our clients use:
methods, bodies, headers, gzip, redirects left to httpx, and httpx's errors on failures."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from dealbooks_http import async_client


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path_qs,
            "body": body.decode(),
            "authorization": request.headers.get("Authorization"),
            "x_twice": request.headers.getall("X-Twice", []),
        },
        headers={"X-Request-Id": "abc"},
    )


async def gzipped(request: web.Request) -> web.Response:
    return web.Response(
        body=gzip.compress(b'{"zipped": true}'),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.Response(text="late")


async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/echo")


async def rate_limited(request: web.Request) -> web.Response:
    return web.Response(status=429, headers={"Retry-After": "3"}, text="slow down")


@pytest.fixture
async def server(serve: Any) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/slow", slow)
    app.router.add_get("/moved", moved)
    app.router.add_get("/limited", rate_limited)
    yield await serve(app)


async def test_a_request_goes_out_and_its_response_comes_back_as_httpx_gives_them(
    server: str,
) -> None:
    async with async_client(base_url=server, headers={"Authorization": "Bearer t"}) as client:
        response = await client.post(
            "/echo?minorversion=75", json={"a": 1}, headers=[("X-Twice", "1"), ("X-Twice", "2")]
        )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc"
    assert response.json() == {
        "method": "POST",
        "path": "/echo?minorversion=75",
        "body": json.dumps({"a": 1}, separators=(",", ":")),
        "authorization": "Bearer t",
        "x_twice": ["1", "2"],
    }


async def test_gzip_bodies_are_decoded_and_statuses_are_left_to_the_caller(server: str) -> None:
    async with async_client(base_url=server) as client:
        assert (await client.get("/gzip")).json() == {"zipped": True}
        limited = await client.get("/limited")
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
        redirect = await client.get("/moved")
        assert (redirect.status_code, redirect.headers["location"]) == (302, "/echo")
        followed = await client.get("/moved", follow_redirects=True)
        assert followed.json()["path"] == "/echo"


async def test_a_slow_answer_is_an_httpx_read_timeout(server: str) -> None:
    async with async_client(base_url=server, timeout=httpx.Timeout(5.0, read=0.2)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow")


async def test_a_refused_connection_is_an_httpx_connect_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with async_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")
