"""compat.release_transport_cycles: a closed asyncio TCP transport is freed by reference
counting (on Python 3.11 it kept a bound method of itself, gh-100348)."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref

from monitor import compat


async def _closed_transport() -> weakref.ref[asyncio.WriteTransport]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ref = weakref.ref(writer.transport)
        await reader.read()  # the server closed: EOF
        writer.close()
        await writer.wait_closed()
        del reader, writer
        for _ in range(3):  # connection_lost runs from call_soon
            await asyncio.sleep(0)
        return ref
    finally:
        server.close()
        await server.wait_closed()


async def test_closed_transport_is_freed_without_the_collector() -> None:
    in_effect = compat.release_transport_cycles()
    assert in_effect == (sys.version_info < (3, 12))
    assert compat.release_transport_cycles() == in_effect  # idempotent
    gc.collect()
    gc.disable()
    try:
        ref = await _closed_transport()
        alive = ref() is not None
    finally:
        gc.enable()
    assert not alive
