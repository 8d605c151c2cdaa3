"""Malformed HTTP is refused without a traceback and without its bytes in the log."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.conftest import GatewayFactory

SECRET = "Bearer s3cr3t-admin-token"


async def test_an_oversized_header_is_refused_and_not_logged(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await make_gateway()
    host, port = gw.client.base.split("//")[1].split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    huge = SECRET + "x" * 20_000
    head = f"GET /ccgateway/admin/v1/audit HTTP/1.1\r\nHost: x\r\nAuthorization: {huge}\r\n\r\n"
    writer.write(head.encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records and all(r.levelno == logging.WARNING and not r.exc_info for r in records)
    assert "malformed HTTP request (LineTooLong)" in records[0].getMessage()
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert "s3cr3t" not in caplog.text
