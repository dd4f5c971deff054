"""The pages for people (monitor/pages): the status page and the event page as served by the
app on a loopback port, with a real event log; their escaping, headers, 404 and history notes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from monitor.detect.evidence import (
    BgpWithdrawal,
    BlockEvidence,
    Evidence,
    Failure,
    HopEvidence,
    Interval,
    KindEvidence,
    OwnerRef,
    PathEvidence,
    PrefixRouting,
    Seen,
)
from monitor.detect.model import EventKind, EventRecord, iso
from monitor.events import EventStore
from monitor.metrics import Metrics
from monitor.pages import CSP, PageOptions, render, story
from monitor.pages.model import Annotations
from monitor.web import make_app

T0 = 1_750_000_000.0
XSS = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Pt:
    """A history point as monitor.history.HistoryPoint has it (the attributes pages read)."""

    t: float
    state: str
    step: int = 60
    targets: dict[str, int] = field(default_factory=lambda: {"icmp": 4, "dns": 2})
    up: dict[str, int] = field(default_factory=lambda: {"icmp": 4, "dns": 2})
    answered: dict[str, int] = field(default_factory=dict)
    loss: float | None = 0.0
    rtt_median: float | None = 0.05
    blocks: dict[str, float] = field(default_factory=lambda: {"198.18.176.0/24": 0.99})
    bgp: dict[str, float] = field(default_factory=lambda: {"198.18.176.0/22": 1.0})
    vantage_healthy: bool = True


class FakeHistory:
    """A history store holding `points` for every entity (or raising `error`)."""

    def __init__(self, points: Sequence[Pt] = (), error: Exception | None = None) -> None:
        self.points, self.error = list(points), error
        self.asked: list[tuple[str, float, float]] = []

    def query(self, entity: str, since: float, until: float, step: int | None = None) -> list[Pt]:
        self.asked.append((entity, since, until))
        if self.error is not None:
            raise self.error
        return [p for p in self.points if since <= p.t <= until]


class Status:
    def __init__(self, name: str = "star-jv", event_id: str | None = None) -> None:
        self.name, self.event_id = name, event_id

    def status(self) -> dict[str, object]:
        signals: dict[str, Any] = {
            "blocks": {"up": 3, "down": 1},
            "blocks_not_up": {"198.18.177.0/24": {"state": "down", "belief": 0.02}},
            "bgp_visibility": {"198.18.176.0/22": 0.5},
        }
        if self.event_id is not None:
            signals["event"] = {"id": self.event_id, "kind": "blackout", "start": iso(T0)}
        return {
            "vantage_healthy": True,
            "entities": [
                {
                    "name": self.name,
                    "state": "down",
                    "since": iso(T0),
                    "signals": signals,
                    "targets": {
                        "icmp": {"up": 2, "down": 1, "never_answered": 1},
                        "dns": {"up": 0, "down": 2, "never_answered": 0},
                    },
                }
            ],
        }


def blackout(
    entity: str = "star-jv", id_: str = "ev1", end: float | None = T0 + 600
) -> EventRecord:
    owner = OwnerRef("TransTelecom", 20485, "198.18.8.0/24")
    return EventRecord(
        id_,
        entity,
        EventKind.BLACKOUT,
        T0,
        end,
        {
            "phases": [
                {"kind": "dns", "start": iso(T0), "end": iso(T0 + 120)},
                {"kind": "blackout", "start": iso(T0 + 120), "end": None},
            ]
        },
        Evidence(
            kinds={
                "dns": KindEvidence(
                    Seen("198.18.176.15:53", T0 - 30),
                    Failure("198.18.176.15:53", T0, "timeout", "no answer"),
                ),
                "icmp": KindEvidence(None, Failure("198.18.176.1", T0 + 118, "timeout", "")),
            },
            failure_order=("dns", "icmp"),
            blocks=(BlockEvidence("198.18.177.0/24", T0 + 118, T0 + 590),),
            vantage_blind=(Interval(T0 + 300, T0 + 330),),
            resumed_at=(T0 + 400,),
            bgp={
                "198.18.176.0/22": PrefixRouting(
                    0.1, 1, 10, {}, BgpWithdrawal(T0 + 125, T0 + 140, 9, 0.1)
                )
            },
            path=PathEvidence(
                "198.18.176.1",
                T0 + 130,
                2.0,
                False,
                (
                    HopEvidence(1, "198.18.0.1", 0.3, "time_exceeded"),
                    HopEvidence(2, "198.18.8.1", 1.2, "unreachable", "!N", owner),
                ),
                0,
                12,
                None,
                (),
                HopEvidence(2, "198.18.8.1", 1.2, "unreachable", "!N", owner, "traceroute"),
                "ends at TransTelecom AS20485 (198.18.8.1, !N)",
            ),
        ),
    )


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Any]:
    stores: list[EventStore] = []
    clients: list[TestClient[Any, Any]] = []

    async def start(
        status: Status | None = None,
        events: Sequence[EventRecord] = (),
        history: Any = None,  # FakeHistory, or a real store
        grafana: str | None = None,
    ) -> TestClient[Any, Any]:
        store = EventStore(tmp_path / f"var{len(stores)}")
        stores.append(store)
        for ev in events:
            store.save(ev)
        opts = PageOptions(history=lambda: history, grafana_url=lambda: grafana)
        app = make_app(Metrics(), lambda: True, api=status or Status(), events=store, pages=opts)
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for c in clients:
        await c.close()
    for s in stores:
        s.close()


def scripts(page: str) -> list[str]:
    return re.findall(r"<script[^>]*>", page, flags=re.I)


async def test_script_in_entity_names_is_inert(serve: Any) -> None:
    """An entity (status and event) named with a <script> is shown as text: the only script
    element on either page is the package's own file."""
    client = await serve(Status(XSS, "ev1"), [blackout(XSS)])
    for path in ("/", "/outages/ev1"):
        resp = await client.get(path)
        page = await resp.text()
        assert resp.status == 200, path
        assert scripts(page) == ['<script src="/static/pages.js" defer>'], path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


def test_script_in_annotations_is_inert_and_only_http_links_are_links() -> None:
    """A cause, note and link holding markup are escaped; a javascript: link is shown as
    text, an https link is a link."""
    ann = Annotations.from_api(
        {
            "cause": XSS,
            "maintenance": True,
            "notes": [{"at": iso(T0 + 60), "text": f"note {XSS}"}],
            "links": ["javascript:alert(1)", "https://example.org/a?b=1&c=<x>"],
            "updated": iso(T0 + 60),
        }
    )
    page = render.event_html(blackout(), [], T0 + 700, annotations=ann)
    assert scripts(page) == ['<script src="/static/pages.js" defer>']
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2
    assert 'href="javascript' not in page and "<li>javascript:alert(1)</li>" in page
    assert 'href="https://example.org/a?b=1&amp;c=&lt;x&gt;"' in page
    assert "planned maintenance" in page


async def test_pages_carry_a_self_only_content_security_policy(serve: Any) -> None:
    """The status page, the event page and the 404 page send the CSP (scripts and styles
    from 'self' only) and nosniff; the pages load nothing from another origin."""
    client = await serve(events=[blackout()])
    for path, code in (("/", 200), ("/outages/ev1", 200), ("/outages/nope", 404)):
        resp = await client.get(path)
        page = await resp.text()
        assert resp.status == code, path
        assert resp.headers["Content-Security-Policy"] == CSP
        assert "default-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert not re.search(r'(src|href)="(https?:)?//', page), path
        assert " style=" not in page, "no inline style (the CSP forbids it)"


async def test_static_files_are_served_from_the_package(serve: Any) -> None:
    """/static/pages.css and /static/pages.js come from the installed package; others 404."""
    client = await serve()
    css = await client.get("/static/pages.css")
    assert css.status == 200 and css.content_type == "text/css"
    assert "prefers-color-scheme: dark" in await css.text()
    js = await client.get("/static/pages.js")
    assert js.status == 200 and js.content_type == "text/javascript"
    assert "toDataURL" in await js.text()
    assert (await client.get("/static/other.js")).status == 404


async def test_unknown_event_is_an_html_404_naming_the_id(serve: Any) -> None:
    """/outages/<unknown> answers 404 with a page naming the (escaped) id."""
    client = await serve(events=[blackout()])
    resp = await client.get("/outages/%3Cb%3Enope")
    page = await resp.text()
    assert resp.status == 404 and resp.content_type == "text/html"
    assert "No such event" in page and "&lt;b&gt;nope" in page


async def test_empty_or_absent_history_is_a_note_not_an_error(serve: Any) -> None:
    """Without a history store, with an empty one, and with one that fails, both pages
    answer 200 with a note instead of a chart."""
    for history, note in (
        (None, "No history yet"),
        (FakeHistory(), "no history yet"),
        (
            FakeHistory(error=RuntimeError("disk gone")),
            "History unavailable: RuntimeError: disk gone",
        ),
    ):
        client = await serve(events=[blackout()], history=history)
        status = await client.get("/")
        event = await client.get("/outages/ev1")
        for resp in (status, event):
            page = await resp.text()
            assert resp.status == 200
            assert "<svg" not in page
            assert note.lower() in page.lower(), (note, page[-2000:])


async def test_status_page_shows_counts_blocks_bgp_open_event_and_timelines(serve: Any) -> None:
    """Per entity: state and since, per-kind up/total with never answered apart from down,
    the block not up with its belief, BGP visibility, a link to the open event, and the 24 h
    and 7 d timelines drawn from history (a red run where the state was down)."""
    import time

    now = time.time()
    pts = [Pt(now - 3600 + 60 * i, "down" if 10 <= i < 20 else "up") for i in range(60)]
    client = await serve(Status("star-jv", "ev1"), [blackout()], FakeHistory(pts))
    page = await (await client.get("/")).text()
    row = re.search(r'<th scope="row">icmp</th>(.*?)</tr>', page)
    assert row is not None and re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1)) == [
        "2/4",
        "1",
        "1",
    ]
    assert "198.18.177.0/24" in page and 'value="0.0200"' in page
    assert "BGP visibility" in page and 'value="0.5000"' in page
    assert 'href="/outages/ev1"' in page
    assert page.count("<svg") == 2 and 'id="tl-0-day"' in page and 'id="tl-0-week"' in page
    day = re.search(r'<svg[^>]*id="tl-0-day".*?</svg>', page, flags=re.S)
    assert day is not None
    down = re.findall(r'data-state="down" data-start="([^"]+)" data-end="([^"]+)"', day.group(0))
    assert down == [(iso(pts[10].t), iso(pts[20].t))], "one red run, from the first down point"
    assert "Latest outages" in page and "blackout" in page


async def test_event_page_tells_the_story_with_chart_exports_and_links(serve: Any) -> None:
    """The event page says what failed first, the escalation, the block lost and back, the
    BGP withdrawal, the path's last hop with its owner, the blind interval and the restart;
    draws the chart with export buttons; links the JSON and CSV."""
    pts = [Pt(T0 - 600 + 60 * i, "down" if 0 <= i - 10 < 10 else "up") for i in range(30)]
    client = await serve(events=[blackout()], history=FakeHistory(pts))
    page = await (await client.get("/outages/ev1")).text()
    for words in (
        "the name servers (DNS) failed first (198.18.176.15:53: timeout, no answer)",
        "Escalated: blackout: nothing answers.",
        "Block 198.18.177.0/24 lost.",
        "Block 198.18.177.0/24 answered again.",
        "BGP: 198.18.176.0/22 withdrawn by 9 route-collector peers, visibility 10%.",
        "ends at TransTelecom AS20485",
        "Vantage blind (our own uplink failed) until 2025-06-15 15:12:10 UTC",
        "The daemon restarted and resumed this event.",
        "Back up: ended, after 10 min.",
    ):
        assert words in page, words
    assert "<td>TransTelecom AS20485</td>" in page, "the hop's owner in the path table"
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="event-chart"' in page
    assert 'data-export="svg"' in page and 'data-export="png"' in page
    assert 'href="/api/v1/outages/ev1"' in page
    assert "format=csv" in page and "Grafana" not in page


async def test_event_page_links_grafana_at_the_event_time_when_configured(serve: Any) -> None:
    """With grafana_url, the page links both dashboards (uids of grafana/dashboards) with
    from/to in milliseconds around the event and the entity variable."""
    client = await serve(events=[blackout()], grafana="https://grafana.example.org/g/")
    page = await (await client.get("/outages/ev1")).text()
    t0, t1 = render.chart_range(blackout(), T0 + 10_000)
    q = f"from={int(t0 * 1000)}&amp;to={int(t1 * 1000)}&amp;var-entity=star-jv"
    assert f'href="https://grafana.example.org/g/d/dprk-overview?{q}"' in page
    assert f'href="https://grafana.example.org/g/d/dprk-target?{q}"' in page


def test_dashboard_uids_linked_exist_in_the_repository() -> None:
    """The uids the event page links to are the dashboards' own (grafana/dashboards/*.json)."""
    import json

    root = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
    uids = {json.loads(p.read_text())["uid"] for p in root.glob("*.json")}
    assert {uid for uid, _ in render.DASHBOARDS} <= uids


def test_story_of_an_open_event_ends_with_still_open() -> None:
    """An open event's story ends 'still open' with its running duration, dated lines in
    time order."""
    lines = story.tell(blackout(end=None), T0 + 3600)
    dated = [ln.t for ln in lines if ln.t is not None]
    assert dated == sorted(dated)
    assert "opened" in [ln.topic for ln in lines]
    assert [ln for ln in lines if ln.t is not None][-1].text == "Still open after 60 min."


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (
            '"ftp://grafana.example.org"',
            "grafana_url: URL scheme must be http or https, got 'ftp://grafana.example.org'",
        ),
        ("3000", "grafana_url: expected a URL, got int 3000"),
        ('"http://"', "grafana_url: URL has no host: 'http://'"),
    ],
)
def test_grafana_url_is_validated_as_an_http_url(value: str, error: str) -> None:
    """config `grafana_url`: an http(s) URL or nothing; anything else names the key."""
    from monitor import config

    base = (Path(__file__).resolve().parents[2] / "config" / "dprk.yaml").read_text()
    assert config.parse(base).grafana_url is None
    assert (
        config.parse(base + "\ngrafana_url: https://g.example.org/\n").grafana_url
        == "https://g.example.org/"
    )
    with pytest.raises(config.ConfigError) as e:
        config.parse(base + f"\ngrafana_url: {value}\n")
    assert str(e.value).split(": ", 1)[1] == error


# --- reading and drawing little (monitor/pages/cache.py) ---------------------------------------


class Counting:
    """A real HistoryStore, counting the points its queries return."""

    def __init__(self, store: Any) -> None:
        self.store, self.tiers, self.read = store, store.tiers, 0

    def query(self, entity: str, since: float, until: float, step: int | None = None) -> Any:
        pts = self.store.query(entity, since, until, step)
        self.read += len(pts)
        return pts


def history_point(t: float, state: str = "up") -> Any:
    from monitor.detect.model import State
    from monitor.history import HistoryPoint

    n = 0 if state == "down" else 4
    return HistoryPoint(
        "star-jv", t, 10, State(state), {"icmp": 4}, {"icmp": n}, {"icmp": n}, 0.0, 0.05
    )


async def test_a_refresh_reads_from_the_newest_point_on_and_draws_only_what_changed(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With hours of history in a real store, a second status page reads only the newest
    10-minute point again (not the week), shows the down points added since in the current
    10 minutes, and a refresh with nothing new draws no timeline again."""
    import time

    from monitor.config import HistoryConfig
    from monitor.history import HistoryStore, tiers
    from monitor.pages import chart

    drawn: list[str] = []
    strip_svg = chart.strip_svg

    def counted(svg_id: str, *args: Any) -> str:
        drawn.append(svg_id)
        return strip_svg(svg_id, *args)

    monkeypatch.setattr(chart, "strip_svg", counted)
    now = time.time()
    last = now - now % 10 - 30
    store = HistoryStore(tmp_path / "history", tiers(HistoryConfig()))
    try:
        store.add([history_point(last - 10 * i) for i in range(3 * 360, -1, -1)])
        assert store.flush(30)
        history = Counting(store)
        client = await serve(history=history)

        async def day_states() -> list[str]:
            page = await (await client.get("/")).text()
            day = re.search(r'<svg[^>]*id="tl-0-day".*?</svg>', page, flags=re.S)
            assert day is not None
            return re.findall(r'data-state="(\w+)"', day.group(0))

        assert await day_states() == ["up"]
        first = history.read
        assert first >= 3 * 6, "the first page reads the week (at 10 minutes)"
        store.add([history_point(last + 10, "down"), history_point(last + 20, "down")])
        assert store.flush(30)
        assert await day_states() == ["up", "down"], "the current 10 minutes, worst kept"
        assert history.read - first <= 2, "a refresh reads the newest point(s) only"
        # Nothing new: nothing drawn (twice at most: the drawn range moves a pixel at a time,
        # every 138 s for the day, and one refresh may fall on that moment).
        for _ in range(2):
            before = len(drawn)
            await day_states()
            if len(drawn) == before:
                break
        else:
            raise AssertionError(f"every refresh drew again: {drawn}")
    finally:
        store.close()


def test_a_week_strip_has_a_sample_per_pixel_and_keeps_a_short_outage() -> None:
    """A week of 10-minute points (1,008) in the 624-pixel strip is drawn from 20-minute
    samples (data-step 1200), one run per state, and one 10-minute down point still shows."""
    from monitor.pages import chart

    t0 = T0 - T0 % 1200  # points are aligned to their step, samples to theirs
    pts = [Pt(t0 + 600 * i, "down" if i == 501 else "up", step=600) for i in range(1008)]
    svg = chart.strip_svg("w", [chart.sample(p) for p in pts], t0, t0 + 7 * 86400, "week")
    assert 'data-step="1200"' in svg
    runs = re.findall(r'data-state="(\w+)" data-start="([^"]+)" data-end="([^"]+)"', svg)
    assert [r[0] for r in runs] == ["up", "down", "up"]
    assert runs[1][1:] == (iso(t0 + 600 * 500), iso(t0 + 600 * 502)), "its 20 minutes"


async def test_a_steady_line_is_drawn_as_one_segment(serve: Any) -> None:
    """The event chart's line of a signal that is steady, then drops, then is back has a
    vertex at each end of each steady run only (the same picture as one per point)."""
    pts = [Pt(T0 - 600 + 60 * i, "down" if 10 <= i < 20 else "up") for i in range(30)]
    for p in pts[10:20]:
        p.up["icmp"] = 0
    client = await serve(events=[blackout()], history=FakeHistory(pts))
    page = await (await client.get("/outages/ev1")).text()
    line = re.search(r'<path d="([^"]+)"[^>]*><title>icmp up</title>', page)
    assert line is not None
    vertices = re.findall(r"([ML])([\d.]+) ([\d.]+)", line.group(1))
    assert [v[0] for v in vertices] == ["M", "L", "L", "L", "L", "L"]
    ys = [float(v[2]) for v in vertices]
    assert ys[0] == ys[1] == ys[4] == ys[5] and ys[2] == ys[3] > ys[0], "up, down, up again"


def test_a_chart_asks_for_no_more_points_than_it_has_pixels() -> None:
    """The step read for a chart: the finest tier that covers the range in at most its width
    in points and still holds the range's start (its retention); the coarsest otherwise."""
    from monitor.config import HistoryConfig
    from monitor.history import tiers
    from monitor.pages.cache import pick_step

    class Tiered:
        def __init__(self) -> None:
            self.tiers = tiers(HistoryConfig())  # 10 s 2 days, 1 min 30 days, 10 min 2 years

        def query(self, entity: str, since: float, until: float, step: int | None = None) -> Any:
            return []

    h, now, w = Tiered(), T0, 846
    assert pick_step(h, now - 4500, now, w, now) == 10  # 75 minutes: 450 points
    assert pick_step(h, now - 3 * 3600, now, w, now) == 60  # 1,080 at 10 s: too many
    assert pick_step(h, now - 2 * 86400, now, w, now) == 600
    assert pick_step(h, now - 5 * 86400, now - 5 * 86400 + 3600, w, now) == 60  # 10 s gone
    assert pick_step(h, now - 30 * 86400, now, w, now) == 600  # more than w even at 10 min
    assert pick_step(FakeHistory(), now - 3600, now, w, now) is None  # the store picks
