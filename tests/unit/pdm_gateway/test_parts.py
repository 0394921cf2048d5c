"""Pure parts of the gateway: keys and scopes, rate limiting, cursors, the stream filter and
fan-out, the latest-readings read model, the asset hierarchy, problem documents."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from pdm_gateway import cursors, keys
from pdm_gateway.api.assets import build_hierarchy
from pdm_gateway.latest import LatestCache
from pdm_gateway.ratelimit import RateLimiter, retry_after_header
from pdm_gateway.stream import StreamFilter, StreamHub, frame, pump

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --- keys -----------------------------------------------------------------------------------


def test_key_round_trip_and_hash_only_storage() -> None:
    made = keys.new_key()
    key_id, secret = keys.parse_token(made.token) or ("", "")
    assert key_id == made.key_id
    assert secret not in made.secret_sha256 and len(made.secret_sha256) == 64
    assert keys.secret_matches(secret, made.secret_sha256)
    assert not keys.secret_matches(
        secret[:-1] + ("A" if secret[-1] != "A" else "B"), made.secret_sha256
    )
    assert keys.new_key().token != made.token


@pytest.mark.parametrize(
    "token",
    ["", "pdm_", "pdm_zzzzzzzzzzzz_" + "a" * 43, "pdm_0123456789ab_" + "a" * 42, "Bearer x"],
)
def test_malformed_tokens_are_rejected(token: str) -> None:
    assert keys.parse_token(token) is None


def test_scopes_imply_lower_ones() -> None:
    admin = keys.Principal("k", "n", frozenset({"admin"}))
    writer = keys.Principal("k", "n", frozenset({"write"}))
    reader = keys.Principal("k", "n", frozenset({"read"}))
    assert admin.allows("read") and admin.allows("write") and admin.allows("admin")
    assert writer.allows("read") and writer.allows("write") and not writer.allows("admin")
    assert reader.allows("read") and not reader.allows("write")
    assert keys.check_scopes(["admin", "read", "read"]) == ["read", "admin"]
    with pytest.raises(ValueError, match="root"):
        keys.check_scopes(["root"])
    with pytest.raises(ValueError):
        keys.check_scopes([])


def test_token_from_either_header() -> None:
    assert keys.token_from_headers("Bearer abc", None) == "abc"
    assert keys.token_from_headers("bearer  abc ", None) == "abc"
    assert keys.token_from_headers("Basic abc", None) is None
    assert keys.token_from_headers(None, "xyz") == "xyz"
    assert keys.token_from_headers(None, None) is None


# --- rate limiting --------------------------------------------------------------------------


def test_token_bucket_allows_burst_then_paces() -> None:
    now = [0.0]
    limiter = RateLimiter(burst_s=2.0, clock=lambda: now[0])
    assert [limiter.acquire("k", rate=5.0) for _ in range(10)] == [0.0] * 10  # burst = 10
    wait = limiter.acquire("k", rate=5.0)
    assert wait == pytest.approx(0.2)
    assert retry_after_header(wait) == "1"
    now[0] += 0.2
    assert limiter.acquire("k", rate=5.0) == 0.0
    assert limiter.acquire("other", rate=5.0) == 0.0  # keys are independent
    assert retry_after_header(2.01) == "3"


def test_a_slow_rate_still_allows_one_request() -> None:
    limiter = RateLimiter(burst_s=0.1, clock=lambda: 0.0)
    assert limiter.acquire("k", rate=1.0) == 0.0
    assert limiter.acquire("k", rate=1.0) == pytest.approx(1.0)


# --- cursors --------------------------------------------------------------------------------


def test_cursor_round_trip_and_bad_cursors() -> None:
    token = cursors.encode(T0, "temperature")
    assert cursors.decode(token, (datetime, str)) == (T0, "temperature")
    for bad in (
        "%%%",
        cursors.encode("x"),
        cursors.encode(1, 2),
        cursors.encode("2026-01-01", "s"),
    ):
        with pytest.raises(cursors.BadCursor):
            cursors.decode(bad, (datetime, str))


# --- stream ---------------------------------------------------------------------------------


def test_stream_filter_parsing_and_matching() -> None:
    everything = StreamFilter.parse(None, None)
    assert everything.matches("model", None) and everything.matches("reading", "p1")
    flt = StreamFilter.parse("p1,p2", "alarm,prediction")
    assert flt.matches("alarm", "p1") and not flt.matches("alarm", "p3")
    assert not flt.matches("reading", "p1")
    assert not flt.matches("alarm", None)  # no asset: excluded by an asset filter
    with pytest.raises(ValueError, match="unknown stream types"):
        StreamFilter.parse(None, "alarm,gossip")


def test_frame_wraps_the_event_json_unchanged() -> None:
    raw = b'{"event_type": "alarm.opened", "x": 1.5}'
    body = json.loads(frame("alarm", "pdm.anomalies.v1", "p1", "alarm.opened", raw))
    assert body == {
        "type": "alarm",
        "topic": "pdm.anomalies.v1",
        "asset_id": "p1",
        "event_type": "alarm.opened",
        "event": {"event_type": "alarm.opened", "x": 1.5},
    }


async def test_slow_client_loses_its_own_events_only() -> None:
    hub = StreamHub("unused:9092", queue_size=10, max_dropped=25)
    fast = hub.subscribe(StreamFilter())
    slow = hub.subscribe(StreamFilter())
    other = hub.subscribe(StreamFilter.parse("p9", None))
    received: list[str] = []

    async def send(message: str) -> None:
        received.append(message)

    consumer = asyncio.create_task(pump(fast, send))
    for i in range(40):
        hub.dispatch("pdm.anomalies.v1", b"p1", [("event_type", b"alarm.opened")], b'{"i": %d}' % i)
        await asyncio.sleep(0)  # the fast client's sender runs between events
    await asyncio.sleep(0.01)
    consumer.cancel()
    events = [json.loads(m) for m in received if '"dropped"' not in m]
    assert [e["event"]["i"] for e in events] == list(range(40))
    assert slow.queue.qsize() == 10 and slow.dropped == 30
    assert slow.closed.is_set()  # missed more than max_dropped: to be disconnected
    assert other.queue.qsize() == 0  # filtered out, not dropped
    hub.dispatch("pdm.unknown.v1", b"p1", [], b"{}")  # topics it does not fan out: ignored
    hub.unsubscribe(slow)
    assert slow not in hub.clients


async def test_pump_reports_drops_before_the_next_event() -> None:
    hub = StreamHub("unused:9092", queue_size=1, max_dropped=0)
    client = hub.subscribe(StreamFilter())
    for i in range(3):
        hub.dispatch("pdm.models.v1", None, [], b'{"i": %d}' % i)
    sent: list[dict] = []

    async def send(message: str) -> None:
        sent.append(json.loads(message))

    task = asyncio.create_task(pump(client, send))
    await asyncio.sleep(0.01)
    task.cancel()
    assert sent[0] == {"type": "dropped", "dropped": 2}
    assert sent[1]["event"] == {"i": 0}
    assert not client.closed.is_set()  # max_dropped 0: never disconnected


# --- latest read model ----------------------------------------------------------------------


def test_latest_cache_merges_by_time_and_only_tracks_loaded_assets() -> None:
    cache = LatestCache(max_assets=2)
    cache.update("p1", [(T0, {"t": 1.0})])
    assert cache.get("p1") is None  # not loaded: stream updates are not kept
    cache.load("p1", {"t": (T0, 1.0), "v": (T0, 5.0)})
    later, earlier = T0 + timedelta(seconds=5), T0 - timedelta(seconds=5)
    cache.update("p1", [(later, {"t": 2.0}), (earlier, {"v": 9.0})])
    assert cache.get("p1") == {"t": (later, 2.0), "v": (T0, 5.0)}  # late reading ignored
    # a database load racing a newer stream update keeps the newer value
    cache.load("p1", {"t": (T0, 1.0)})
    assert cache.get("p1")["t"] == (later, 2.0)  # type: ignore[index]
    cache.load("p2", {"t": (T0, 1.0)})
    cache.load("p3", {"t": (T0, 1.0)})
    assert cache.get("p1") is None and cache.get("p3") is not None  # LRU bound
    assert LatestCache(0).load("p1", {"t": (T0, 1.0)}) == {"t": (T0, 1.0)}


# --- hierarchy ------------------------------------------------------------------------------


def test_hierarchy_tree() -> None:
    rows = [
        {"site": "a", "line": "l1", "asset_type": "pump", "assets": 2},
        {"site": "a", "line": "l1", "asset_type": "motor", "assets": 1},
        {"site": "a", "line": "l2", "asset_type": None, "assets": 1},
        {"site": None, "line": None, "asset_type": "pump", "assets": 3},
    ]
    tree = [s.model_dump() for s in build_hierarchy(rows)]
    assert tree == [
        {
            "site": "a",
            "assets": 4,
            "lines": [
                {"line": "l1", "assets": 3, "asset_types": {"pump": 2, "motor": 1}},
                {"line": "l2", "assets": 1, "asset_types": {"unknown": 1}},
            ],
        },
        {
            "site": None,
            "assets": 3,
            "lines": [{"line": None, "assets": 3, "asset_types": {"pump": 3}}],
        },
    ]
