"""Real notification receivers on loopback for the notification tests: an HTTP server (what
Apprise's json:// and form:// post to) that can answer ok, 500, garbage or never, and an SMTP
server (aiosmtpd). Each received message is one dict in an `Inbox` (and, run as a script, one
JSON line in a file, for the integration tests where the receivers live in the simulated
world's vantage namespace):

    python -m tests.notify_receivers --http PORT --smtp PORT --out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

KEY_RE = re.compile(r"^Key: (\S+)$", re.M)


@dataclass
class Inbox:
    messages: list[dict[str, Any]] = field(default_factory=list)
    out: Path | None = None
    mode: str = "ok"  # ok | 500 | hang | garbage (HTTP only)
    hits: int = 0  # requests seen, answered or not

    def add(self, msg: dict[str, Any]) -> None:
        m = KEY_RE.search(msg.get("message", ""))
        msg["key"] = m.group(1) if m else None
        self.messages.append(msg)
        if self.out is not None:
            with self.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(msg) + "\n")

    def keys(self, via: str | None = None) -> list[str]:
        return [m["key"] for m in self.messages if via is None or m["via"] == via]


async def start_http(inbox: Inbox, host: str = "127.0.0.1", port: int = 0) -> tuple[Any, int]:
    """An HTTP receiver; returns (a closer to await, its port)."""

    async def handle(req: web.Request) -> web.StreamResponse:
        inbox.hits += 1
        if inbox.mode == "hang":
            await asyncio.sleep(3600)
        if inbox.mode == "500":
            return web.Response(status=500, text="internal error")
        raw = await req.text()
        if req.content_type == "application/json":
            doc = json.loads(raw)
        else:
            doc = {k: v[0] for k, v in parse_qs(raw).items()}
        inbox.add(
            {
                "via": "http",
                "path": req.path,
                "content_type": req.content_type,
                "title": doc.get("title", ""),
                "message": doc.get("message", ""),
            }
        )
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner.cleanup, bound


async def start_garbage(host: str = "127.0.0.1") -> tuple[asyncio.Server, int]:
    """A TCP server that answers any request with bytes that are not HTTP, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"\x00\xff\xfe garbage, not HTTP \x01\x02\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host, 0)
    return server, server.sockets[0].getsockname()[1]


class _SmtpHandler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
        body = part.get_content() if part is not None else ""
        self.inbox.add(
            {
                "via": "smtp",
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "title": str(msg["Subject"] or ""),
                "message": body.replace("\r\n", "\n").strip(),
                "header_key": msg.get("X-Dprk-Monitor-Key"),
            }
        )
        return "250 OK"


async def start_smtp(inbox: Inbox, host: str = "127.0.0.1", port: int = 0) -> tuple[Any, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(_SmtpHandler(inbox), hostname="receiver.test"), host, port
    )

    async def close() -> None:
        server.close()
        await server.wait_closed()

    return close, server.sockets[0].getsockname()[1]


async def _main(args: argparse.Namespace) -> None:
    inbox = Inbox(out=Path(args.out))
    close_http, _ = await start_http(inbox, port=args.http)
    close_smtp, _ = await start_smtp(inbox, port=args.smtp)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.to_thread(Path(args.out + ".ready").write_text, "ready")
    await stop.wait()
    await close_http()
    await close_smtp()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", type=int, required=True)
    ap.add_argument("--smtp", type=int, required=True)
    ap.add_argument("--out", required=True)
    asyncio.run(_main(ap.parse_args()))
