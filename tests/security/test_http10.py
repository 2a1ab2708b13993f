"""HTTP/1.0 clients: a request without Host reaches the backend with the backend's
host:port as Host (as nginx does; Tomcat refuses an HTTP/1.1 request without one), a
keep-alive answer says `Connection: keep-alive` (a 1.0 client assumes close otherwise), and
no `100 Continue` is ever sent to a 1.0 client (RFC 9110 §15.2)."""

from __future__ import annotations

import asyncio
import json

from tests.support.polling import poll
from tests.support.rawhttp import RecordingBackend, exchange, read_response
from tests.support.security import recorder_yaml
from tests.support.servers import Guard, StartGuard, StartWas, backends_yaml


def seen(res_body: bytes) -> dict[str, str]:
    return {k.lower(): v for k, v in json.loads(res_body)["headers"]}


async def test_a_request_without_host_gets_the_backends_host_and_port(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    for method in (b"GET", b"OPTIONS"):  # OPTIONS / HTTP/1.0: HAProxy's health check
        res = await exchange(guard.port, method + b" /__was/echo-headers HTTP/1.0\r\n\r\n")
        assert res.status == 200, (method, res.status, res.body[:200])
        assert seen(res.body)["host"] == f"127.0.0.1:{was.port}"
    await guard.wait_idle()


async def test_an_http10_request_with_host_keeps_it(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    res = await exchange(guard.port, b"GET /__was/echo-headers HTTP/1.0\r\nHost: shop\r\n\r\n")
    assert seen(res.body)["host"] == "shop"


async def test_keep_alive_answers_to_http10_clients_say_keep_alive(
    start_was: StartWas, start_guard: StartGuard
) -> None:
    was = await start_was()
    guard = await start_guard(backends_yaml(was))
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    for i in range(2):  # the same connection carries the second request
        writer.write(b"GET /a%d HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n" % i)
        res = await read_response(reader)
        assert res.status == 200
        assert (res.header("Connection") or "").lower() == "keep-alive", res.headers
    writer.write(b"GET /last HTTP/1.0\r\nHost: a\r\n\r\n")  # no keep-alive asked: close
    res = await read_response(reader)
    writer.close()
    assert res.status == 200
    assert (res.header("Connection") or "").lower() == "close", res.headers


async def parsed_head(guard: Guard) -> None:
    server = guard.runtime.server
    assert server is not None

    def head_parsed() -> bool:
        return any(c.parsing is not None for c in server.connections)

    await poll(head_parsed, 5.0, lambda: "guard never parsed the head")


async def test_no_100_continue_to_an_http10_client(
    start_guard: StartGuard, recorder: RecordingBackend
) -> None:
    guard = await start_guard(recorder_yaml(recorder))
    # A pooled connection first: a request admitted at its head is then started at once.
    assert (await exchange(guard.port, b"GET /warm HTTP/1.1\r\nHost: a\r\n\r\n")).status == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", guard.port)
    writer.write(
        b"POST /up HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    await parsed_head(guard)
    writer.write(b"hello")
    res = await read_response(reader)
    writer.close()
    assert res.status == 200, "an interim 100 Continue went to an HTTP/1.0 client"
    assert recorder.requests[-1]["body"] == 5
    await guard.wait_idle()
