"""The ingest endpoint, rule by rule, against a real daemon on a loopback port and a real SQLite file."""

import json

import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from agentwatch.config import Overrides, load_config
from agentwatch.daemon import Daemon
from helpers import agent, raw_connect, running_daemon, stored, watcher, ws_frame


def output(text="hi"):
    return {"kind": "output", "text": text}


async def test_welcome_of_a_new_agent_then_acks_after_commit(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        welcome = await a.hello(name="bot", cwd="/tmp/p", pid=42, labels={"project": "p"})
        assert welcome == {"type": "welcome", "protocol": 1, "agent_id": "a1", "session": 0, "acked_seq": 0, "max_frame_bytes": 1 << 20}
        await a.event(1, output("one"), ts="2026-11-21T10:00:00.123Z")
        assert await a.recv() == {"type": "ack", "seq": 1}
        [event] = await stored(d, "a1")
        assert event["seq"] == 1 and event["session"] == 0 and event["kind"] == "output"
        assert event["ts"] == "2026-11-21T10:00:00.123Z" and event["format"] == "agentwatch"
        assert event["data"] == output("one") and event["received_at"].endswith("Z")
        async with watcher(d) as w:
            [info] = await w.call("agents.list")
        assert info["name"] == "bot" and info["pid"] == 42 and info["labels"] == {"project": "p"}
        assert info["connected"] is True and info["acked_seq"] == 1


async def test_batch_is_acked_cumulatively_and_gaps_are_allowed(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        await a.send({"type": "events", "events": [{"seq": s, "data": output(str(s))} for s in (1, 2, 5, 9)]})
        frames = await a.until_ack(9)
        assert frames[-1] == {"type": "ack", "seq": 9}
        assert [e["seq"] for e in await stored(d, "a1")] == [1, 2, 5, 9]


async def test_resend_after_reconnect_stores_nothing_twice(state_dir):
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            for seq in range(1, 6):
                await a.event(seq, output(str(seq)))
            await a.until_ack(5)
        async with agent(d, "a1") as a:
            welcome = await a.hello()
            assert welcome["acked_seq"] == 5
            for seq in range(3, 8):  # the client resends what it is unsure of, and more
                await a.event(seq, output(f"again {seq}"))
            await a.until_ack(7)
        events = await stored(d, "a1")
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert events[2]["data"]["text"] == "3", "a duplicate must not overwrite the stored event"


async def test_resend_after_daemon_restart_stores_nothing_twice_and_keeps_session(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        await a.event(1, output())
        await a.event(2, {"kind": "context_cleared"})
        await a.event(3, output())
        await a.until_ack(3)
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            welcome = await a.hello()
            assert (welcome["session"], welcome["acked_seq"]) == (1, 3)
            await a.batch((2, 3, 4))
            await a.until_ack(4)
        events = await stored(d, "a1")
    assert [(e["seq"], e["session"]) for e in events] == [(1, 0), (2, 1), (3, 1), (4, 1)]


async def test_context_cleared_raises_the_session_and_carries_the_new_number(state_dir):
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            kinds = ["prompt", "output", "context_cleared", "prompt", "context_cleared", "context_cleared", "output"]
            await a.send({"type": "events", "events": [{"seq": i + 1, "data": {"kind": k}} for i, k in enumerate(kinds)]})
            await a.until_ack(7)
        events = await stored(d, "a1")
        assert [e["session"] for e in events] == [0, 0, 1, 1, 2, 3, 3]
        async with agent(d, "a1") as a:
            assert (await a.hello())["session"] == 3
        async with watcher(d) as w:
            sessions = await w.call("sessions.list", agent_id="a1")
    assert sorted((s["session"], s["events"]) for s in sessions) == [(0, 2), (1, 2), (2, 1), (3, 2)]
    assert {s["session"]: s["state"] for s in sessions}[0] == "cleared"


async def test_early_events_carry_the_session_known_at_welcome(state_dir):
    """The seed system tagged early events with session 0 while a lookup ran: never here."""
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            await a.event(1, {"kind": "context_cleared"})
            await a.until_ack(1)
        async with agent(d, "a1") as a:
            await a.send({"type": "hello", "protocol": 1, "format": "agentwatch"})
            await a.event(2, output())  # sent before the welcome arrives
            welcome = await a.recv()
            assert welcome["session"] == 1
            await a.until_ack(2)
        events = await stored(d, "a1")
    assert [e["session"] for e in events] == [1, 1]


async def test_duplicates_are_acknowledged(state_dir):
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            await a.batch(range(1, 6))
            await a.until_ack(5)
            await a.event(5, output("again"))
            assert await a.recv() == {"type": "ack", "seq": 5}
        async with agent(d, "a1") as a:
            assert (await a.hello())["acked_seq"] == 5
            await a.batch(range(3, 6))
            assert await a.recv() == {"type": "ack", "seq": 5}
        assert [e["seq"] for e in await stored(d, "a1")] == [1, 2, 3, 4, 5]


async def test_the_same_seq_twice_in_one_batch_is_stored_once(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        await a.send({"type": "events", "events": [{"seq": s, "data": output(str(i))} for i, s in enumerate((1, 2, 2, 3))]})
        await a.until_ack(3)
        events = await stored(d, "a1")
    assert [(e["seq"], e["data"]["text"]) for e in events] == [(1, "0"), (2, "1"), (3, "3")]


async def test_records_are_stored_as_utf8_without_growing(state_dir):
    text = "naïve 日本語 🚀" * 1000
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        await a.event(1, output(text))
        await a.until_ack(1)
        [event] = await stored(d, "a1")
        size = await d.daemon.store.run_in_writer(lambda conn: conn.execute("SELECT length(CAST(data AS BLOB)) FROM events").get)
    assert event["data"]["text"] == text
    assert size < len(json.dumps(output(text), ensure_ascii=False).encode()) + 16


async def test_seq_regression_is_refused_and_the_connection_keeps_working(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        await a.event(5, output())
        await a.until_ack(5)
        await a.event(3, output("late"))
        error = await a.recv()
        assert error["type"] == "error" and error["code"] == "seq_regression" and error["seq"] == 3
        assert "3" in error["message"] and "5" in error["message"]
        await a.event(5, output("same again"))  # equal is a duplicate, not a regression
        await a.event(6, output())
        await a.until_ack(6)
        assert [e["seq"] for e in await stored(d, "a1")] == [5, 6]


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        ("{not json", "bad_json", "not valid JSON"),
        ("[1, 2]", "bad_frame", "JSON object"),
        (b"\x00binary", "bad_frame", "binary"),
        ({"type": "shout"}, "bad_frame", "unknown frame type"),
        ({"type": "hello", "protocol": 1}, "bad_frame", "already said hello"),
        ({"type": "event", "seq": 0, "data": {}}, "bad_frame", "seq must be a positive integer"),
        ({"type": "event", "seq": "7", "data": {}}, "bad_frame", "seq must be a positive integer"),
        ({"type": "event", "seq": True, "data": {}}, "bad_frame", "seq must be a positive integer"),
        ({"type": "event", "seq": 2**63, "data": {}}, "bad_frame", "below 2**63"),
        ({"type": "event", "seq": 7}, "bad_frame", "data is missing"),
        ({"type": "event", "seq": 7, "ts": "yesterday", "data": {}}, "bad_frame", "ISO 8601"),
        ({"type": "event", "seq": 7, "ts": "2026-01-01\udc8010:00:00", "data": {}}, "bad_frame", "ISO 8601"),
        ({"type": "shout" * 10_000}, "bad_frame", "..."),
        ({"type": "event", "seq": 7, "format": 3, "data": {}}, "bad_frame", "format must be a string"),
        ({"type": "event", "seq": 7, "format": "klingon", "data": {}}, "unknown_format", "known formats: agentwatch"),
        ({"type": "events", "events": []}, "bad_frame", "non-empty array"),
        ({"type": "events", "events": [{"seq": 7, "data": {}}, 3]}, "bad_frame", "events[1]"),
        ({"type": "events", "events": [{"seq": 7, "data": {}}, {"seq": 6, "data": {}}]}, "seq_regression", "lower"),
        ({"type": "events", "events": [{"seq": s, "data": {}} for s in range(7, 1008)]}, "too_large", "at most 1000"),
    ],
)
async def test_a_bad_frame_gets_its_error_and_the_connection_keeps_working(state_dir, frame, code, words):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        await a.send(frame)
        error = await a.recv()
        assert error["type"] == "error" and error["code"] == code, error
        assert words in error["message"]
        await a.event(8, output())
        assert await a.recv() == {"type": "ack", "seq": 8}
        assert [e["seq"] for e in await stored(d, "a1")] == [8], "nothing of the bad frame may be stored"


async def test_unrecognised_records_are_stored_as_raw_and_keep_alive_is_acked_not_stored(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        records = [{"kind": "dance"}, {"kind": ["output"]}, "lone \udc90 surrogate", 42, None, [1, 2], {"type": "keep_alive"}, output()]
        await a.send({"type": "events", "events": [{"seq": i + 1, "data": r} for i, r in enumerate(records)]})
        await a.until_ack(8)
        events = await stored(d, "a1")
        async with watcher(d) as w:
            assert (await w.call("status"))["plugin_errors"] == {}
    assert [(e["seq"], e["kind"]) for e in events] == [(1, "raw"), (2, "raw"), (3, "raw"), (4, "raw"), (5, "raw"), (6, "raw"), (8, "output")]
    assert [e["data"] for e in events][:6] == records[:6]


@pytest.mark.parametrize(
    ("hello", "code", "words"),
    [
        ({"type": "event", "seq": 1, "data": {}}, "hello_required", "first frame must be a hello"),
        ({"type": "hello", "protocol": 2}, "bad_frame", "protocol must be 1"),
        ({"type": "hello", "protocol": 1, "format": "klingon"}, "unknown_format", "claude-stream-json"),
        ({"type": "hello", "protocol": 1, "agent": {"pid": "x"}}, "bad_frame", "pid must be a non-negative integer"),
        ({"type": "hello", "protocol": 1, "agent": {"labels": {"a": 1}}}, "bad_frame", "labels"),
        ({"type": "hello", "protocol": 1, "agent": {"pid": 2**64}}, "bad_frame", "pid must be"),
        ({"type": "hello", "protocol": 1, "agent": {"name": "lone \udc90"}}, "bad_frame", "valid Unicode"),
        ("garbage", "bad_json", "not valid JSON"),
    ],
)
async def test_no_valid_hello_gets_an_error_then_close_4000(state_dir, hello, code, words):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.send(hello)
        error = await a.recv()
        assert (error["type"], error["code"]) == ("error", code) and words in error["message"], error
        assert await a.closed_code() == 4000


async def test_hello_timeout_closes_4000(state_dir, virtual_clock):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        start = trio.current_time()
        error = await a.recv()
        assert error["code"] == "hello_required" and "10 s" in error["message"]
        assert await a.closed_code() == 4000
        assert trio.current_time() - start == pytest.approx(10, abs=0.5)


async def test_a_frame_over_the_size_limit_closes_1009(state_dir):
    async with running_daemon(state_dir, {"AGENTWATCH_SERVER_MAX_FRAME_BYTES": "16384"}) as d, agent(d, "a1") as a:
        await a.hello()
        await a.event(1, output("x" * 17000))
        assert await a.closed_code() == 1009
        async with agent(d, "a1") as again:
            assert (await again.hello())["acked_seq"] == 0


async def test_a_newer_connection_replaces_the_older_with_4001(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as old:
        await old.hello()
        await old.event(1, output())
        await old.until_ack(1)
        async with agent(d, "a1") as new:
            assert (await new.hello())["acked_seq"] == 1
            assert await old.closed_code() == 4001
            await new.event(2, output())
            await new.until_ack(2)
            async with watcher(d) as w:
                [info] = await w.call("agents.list")
            assert info["connected"] is True


RATE_LIMITED = {"AGENTWATCH_SERVER_RATE_LIMIT": "10", "AGENTWATCH_SERVER_RATE_BURST": "5"}


async def test_rate_limit_refuses_what_is_over_it_and_an_ack_never_skips_it(state_dir, virtual_clock):
    async with running_daemon(state_dir, RATE_LIMITED) as d, agent(d, "a1") as a:
        await a.hello()
        await a.batch(range(1, 6))
        await a.until_ack(5)
        await a.event(6, output())
        error = await a.recv()
        assert (error["code"], error["seq"]) == ("rate_limited", 6)
        await trio.sleep(1)
        await a.event(7, output())  # a pipelining client sent on: 7 must wait for 6
        error = await a.recv()
        assert (error["code"], error["seq"]) == ("rate_limited", 7) and "resend from there" in error["message"]
        await a.batch((6, 7))
        await a.until_ack(7)
        assert [e["seq"] for e in await stored(d, "a1")] == [1, 2, 3, 4, 5, 6, 7]


async def test_a_batch_larger_than_the_burst_is_admitted_when_the_bucket_is_full(state_dir, virtual_clock):
    async with running_daemon(state_dir, RATE_LIMITED) as d, agent(d, "a1") as a:
        await a.hello()
        await a.batch(range(1, 21))
        await a.until_ack(20)
        await a.event(21, output())
        assert (await a.recv())["code"] == "rate_limited", "the big batch left the bucket in debt"


async def test_ping_timeout_closes_an_unresponsive_connection(state_dir, virtual_clock):
    settings = {"AGENTWATCH_SERVER_PING_INTERVAL": "20s", "AGENTWATCH_SERVER_PING_TIMEOUT": "5s"}
    async with running_daemon(state_dir, settings) as d:
        stream = await raw_connect(d, "/v1/agents/mute")
        await stream.send_all(ws_frame(json.dumps({"type": "hello", "protocol": 1}).encode()))
        start = trio.current_time()
        received = b""
        with trio.fail_after(60):
            while chunk := await stream.receive_some():
                received += chunk
        assert b"\x89" in received, "the daemon sends pings"
        assert b"\x88\x0e\x03\xf3ping timeout" in received, "the daemon closes with 1011"
        assert 25 - 1 <= trio.current_time() - start <= 25 + 6


async def test_a_peer_that_reads_nothing_is_cut_after_the_ping_timeout(state_dir, virtual_clock):
    settings = {"AGENTWATCH_SERVER_PING_INTERVAL": "2s", "AGENTWATCH_SERVER_PING_TIMEOUT": "2s"}
    async with running_daemon(state_dir, settings) as d:
        stream = await raw_connect(d, "/v1/agents/deaf", receive_buffer=4096)
        await stream.send_all(ws_frame(json.dumps({"type": "hello", "protocol": 1}).encode()))
        with trio.move_on_after(3):  # bad frames earn error frames the client never reads
            while True:
                await stream.send_all(ws_frame(b"{}") * 50)
        await trio.sleep(30)
        async with watcher(d) as w:
            assert (await w.call("status"))["agents_connected"] == 0


async def test_an_unresponsive_watch_connection_is_closed_too(state_dir, virtual_clock):
    settings = {"AGENTWATCH_SERVER_PING_INTERVAL": "20s", "AGENTWATCH_SERVER_PING_TIMEOUT": "5s"}
    async with running_daemon(state_dir, settings) as d:
        stream = await raw_connect(d, "/v1/watch")
        received = b""
        with trio.fail_after(60):
            while chunk := await stream.receive_some():
                received += chunk
        assert b"\x89" in received and b"ping timeout" in received


async def test_pings_answered_keep_the_connection(state_dir, virtual_clock):
    settings = {"AGENTWATCH_SERVER_PING_INTERVAL": "1s", "AGENTWATCH_SERVER_PING_TIMEOUT": "1s"}
    async with running_daemon(state_dir, settings) as d, agent(d, "a1") as a:
        await a.hello()
        await trio.sleep(30)
        await a.event(1, output())
        await a.until_ack(1)


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/agents/a1", [], 401),
        ("/v1/agents/a1", [(b"Authorization", b"Bearer wrong")], 401),
        ("/v1/agents/a1", [(b"Authorization", b"wrong")], 401),
        ("/v1/watch", [], 401),
        ("/v1/agents/a1", "token+origin", 403),
        ("/v1/watch", "token+origin", 403),
        ("/v1/watch", [(b"Authorization", b"Bearer wrong")], 401),
        ("/v1/nowhere", "token", 404),
        ("/v1/agents/", "token", 400),
        ("/v1/agents/" + "a" * 129, "token", 400),
        ("/v1/agents/has%20space", "token", 400),
        ("/v1/agents/a/b", "token", 400),
    ],
)
async def test_handshake_rejections(state_dir, path, headers, status):
    async with running_daemon(state_dir) as d:
        if headers == "token":
            headers = d.headers()
        elif headers == "token+origin":
            headers = [*d.headers(), (b"Origin", b"https://evil.example")]
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(f"{d.url}{path}", extra_headers=headers):
                pass
        assert rejected.value.status_code == status
        async with watcher(d) as w:
            assert (await w.call("status"))["agents_known"] == 0


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr  "])
async def test_the_bearer_scheme_is_case_insensitive(state_dir, scheme):
    """RFC 7235, 2.1: the scheme of an Authorization header is case-insensitive; the token is not."""
    async with running_daemon(state_dir) as d:
        async with open_websocket_url(f"{d.url}/v1/watch", extra_headers=[(b"Authorization", f"{scheme} {d.token}".encode())]):
            pass
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(f"{d.url}/v1/watch", extra_headers=[(b"Authorization", f"{scheme} {d.token.upper()}".encode())]):
                pass
        assert rejected.value.status_code == 401


async def test_allowed_origin_and_longest_valid_agent_id_are_accepted(state_dir):
    settings = {"AGENTWATCH_AUTH_ALLOWED_ORIGINS": "http://localhost:3000"}
    agent_id = "A-z0.9_:@" + "x" * 119
    async with running_daemon(state_dir, settings) as d, agent(d, agent_id, origin="http://localhost:3000") as a:
        assert (await a.hello())["agent_id"] == agent_id


async def test_no_auth_accepts_without_a_token(state_dir):
    async with running_daemon(state_dir, {"AGENTWATCH_AUTH_ENABLED": "false"}) as d, agent(d, "a1") as a:
        assert d.token is None
        await a.hello()
    assert not (state_dir / "token").exists()


async def test_token_file_is_private(state_dir):
    async with running_daemon(state_dir):
        pass
    assert (state_dir / "token").stat().st_mode & 0o777 == 0o600
    assert (state_dir / "agentwatch.db").stat().st_mode & 0o077 == 0
    assert state_dir.stat().st_mode & 0o077 == 0


async def test_many_agents_at_once(state_dir):
    async with running_daemon(state_dir) as d:

        async def one(n):
            async with agent(d, f"agent-{n}") as a:
                await a.hello()
                for start in range(1, 200, 50):
                    await a.batch(range(start, start + 50))
                await a.until_ack(200)

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(one, n)
        async with watcher(d) as w:
            status = await w.call("status")
        assert status["events_stored"] == 20 * 200 and status["agents_known"] == 20


async def test_storage_failure_is_reported_nothing_is_acked_and_ingest_resumes(state_dir):
    """A real SQLITE_FULL: max_page_count caps the file the way a full disk would."""
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        store = d.daemon.store
        await a.hello()
        await a.event(1, output())
        await a.until_ack(1)
        pages = await store.run_in_writer(lambda conn: conn.execute("PRAGMA page_count").get)
        await store.run_in_writer(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}").get)
        big = output("x" * 200_000)
        await a.event(2, big)
        error = await a.recv()
        assert (error["code"], error["seq"]) == ("storage_unavailable", 2), error
        assert "resend" in error["message"]
        await a.event(3, output())  # small enough to fit, but storing it would skip seq 2
        error = await a.recv()
        assert (error["code"], error["seq"]) == ("storage_unavailable", 3), error
        assert "from seq 2" in error["message"]
        await store.run_in_writer(lambda conn: conn.execute("PRAGMA max_page_count = 4294967294").get)
        await a.event(2, big)  # the client resends what was not acked, in order
        await a.event(3, output())
        await a.until_ack(3)
        assert [e["seq"] for e in await stored(d, "a1")] == [1, 2, 3]


async def test_a_wrong_token_on_a_unix_socket_gets_its_401(tmp_path):
    """trio-websocket cannot name a Unix peer; the rejection must still be sent, not the socket dropped."""
    path = tmp_path / "agentwatch.sock"
    config = load_config(Overrides(state_dir=tmp_path / "state", listen=[f"unix:{path}"]), environ={})
    async with trio.open_nursery() as nursery:
        daemon = Daemon(config)
        await nursery.start(daemon.run)
        stream = await trio.open_unix_socket(str(path))
        await stream.send_all(
            b"GET /v1/watch HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer wrong\r\n\r\n"
        )
        answer = b""
        with trio.fail_after(5):
            while data := await stream.receive_some():
                answer += data
        assert answer.startswith(b"HTTP/1.1 401 ")
        daemon.stop()
