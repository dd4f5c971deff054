"""`dprk-monitor notify-test [--config PATH]`: a test message to every receiver, now, through
the same sender the daemon uses (a deadline per receiver, all at once), then one line per
receiver: `NAME: ok` or `NAME: failed: REASON` (never the URL). Exit 1 if any failed or none
is configured. The outbox is not used: nothing is queued or retried."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from monitor.config import Config
from monitor.notify.format import FormatOptions, test_message
from monitor.notify.model import Notification, Outcome
from monitor.notify.params import Transition
from monitor.notify.sender import Sender


async def send_tests(cfg: Config) -> list[tuple[str, Outcome]]:
    sender = Sender(threads=max(1, min(8, len(cfg.notify))))
    now = time.time()
    opts = FormatOptions(base_url=cfg.api.base_url)
    try:
        notes = []
        for r in cfg.notify:
            title, body = test_message(r.name, now, opts)
            key = body.rsplit("Key: ", 1)[-1]
            notes.append(Notification(r.name, key, Transition.TEST, now, title, body))
        outcomes = await asyncio.gather(
            *(sender.send(r, n) for r, n in zip(cfg.notify, notes, strict=True))
        )
    finally:
        sender.close()
    return [(r.name, o) for r, o in zip(cfg.notify, outcomes, strict=True)]


def run(cfg: Config, out: TextIO = sys.stdout) -> int:
    if not cfg.notify:
        print(f"{cfg.source}: no receivers in notify:, nothing to test", file=sys.stderr)
        return 1
    results = asyncio.run(send_tests(cfg))
    for name, o in results:
        print(f"{name}: ok" if o.ok else f"{name}: failed: {o.reason}", file=out)
    return 0 if all(o.ok for _, o in results) else 1
