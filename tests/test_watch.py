"""The ``/v1/watch`` JSON-RPC 2.0 endpoint against a real daemon on a loopback port and a real SQLite file."""

import json
import re
from datetime import datetime

import pytest
import trio
from trio_websocket import ConnectionClosed, connect_websocket_url

from agentwatch import __version__
from helpers import TIMEOUT, RpcError, agent, running_daemon, stored, watcher

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
METHODS = ["agents.list", "attention.list", "events.list", "retention.prune", "sessions.list", "status", "subscribe", "unsubscribe"]


def ev(kind, text=None):
    data = {"kind": kind}
    if text is not None:
        data["text"] = text
    return data


def request(method, params=None, id=1):
    req = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        req["params"] = params
    return req


async def send_events(a, first_seq, records):
    """Send ``records`` as one ``events`` frame starting at ``first_seq``; wait for the ack."""
    last = first_seq + len(records) - 1
    await a.send({"type": "events", "events": [{"seq": first_seq + i, "data": r} for i, r in enumerate(records)]})
    await a.until_ack(last)
    return last


async def eventually(check, what):
    """Poll ``await check()`` until it returns true (the daemon releases connections asynchronously)."""
    with trio.move_on_after(TIMEOUT):
        while True:
            if await check():
                return
            await trio.sleep(0.02)
    pytest.fail(f"timed out after {TIMEOUT} s waiting for: {what}")


async def rpc_error(w, req):
    """Send ``req`` (a dict, or an exact frame as str) and return the error reply."""
    reply = await w.raw(req if isinstance(req, str) else json.dumps(req))
    assert set(reply) == {"jsonrpc", "id", "error"}, reply
    assert reply["jsonrpc"] == "2.0"
    assert set(reply["error"]) >= {"code", "message"}
    return reply


# --- JSON-RPC framing and error codes ---


@pytest.mark.parametrize("frame", ["{not json", '{"jsonrpc": "2.0", "id": 1, "method": "status"', "", "\u00ff\u00fe"])
async def test_parse_error_minus_32700(state_dir, frame):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        reply = await rpc_error(w, frame)
        assert reply["id"] is None
        assert reply["error"]["code"] == -32700
        assert "not valid JSON" in reply["error"]["message"]
        # the connection keeps working
        assert (await w.call("status"))["version"] == __version__


@pytest.mark.parametrize(
    "req",
    [
        42,
        "status",
        None,
        {"jsonrpc": "1.0", "id": 7, "method": "status"},
        {"id": 7, "method": "status"},
        {"jsonrpc": 2.0, "id": 7, "method": "status"},
        {"jsonrpc": "2.0", "id": 7},
        {"jsonrpc": "2.0", "id": 7, "method": 5},
        {"jsonrpc": "2.0", "id": 7, "method": None},
    ],
)
async def test_not_a_request_is_invalid_request_minus_32600(state_dir, req):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        reply = await rpc_error(w, json.dumps(req))
        assert reply["error"]["code"] == -32600
        assert '"jsonrpc": "2.0"' in reply["error"]["message"] and "method" in reply["error"]["message"]
        # the id is echoed when the request carried one, else null
        assert reply["id"] == (req["id"] if isinstance(req, dict) else None)
        assert (await w.call("status"))["version"] == __version__


async def test_empty_batch_is_invalid_request(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        reply = await rpc_error(w, "[]")
        assert reply["id"] is None and reply["error"]["code"] == -32600
        assert "empty batch" in reply["error"]["message"]


async def test_unknown_method_minus_32601_lists_the_methods(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        reply = await rpc_error(w, request("agents.lisst", id="abc"))
        assert reply["id"] == "abc"
        assert reply["error"]["code"] == -32601
        message = reply["error"]["message"]
        assert "'agents.lisst'" in message
        listed = message.split("methods:", 1)[1]
        assert [m.strip() for m in listed.split(",")] == METHODS


@pytest.mark.parametrize(
    ("method", "params", "words"),
    [
        ("status", ["x"], ["status", "params must be an object"]),
        ("events.list", ["a1"], ["events.list", "params must be an object"]),
        ("status", {"verbose": True}, ["status", "'verbose'", "takes no params"]),
        ("agents.list", {"agent_id": "a1"}, ["agents.list", "'agent_id'", "takes no params"]),
        ("sessions.list", {"agent": "a1"}, ["sessions.list", "'agent'", "agent_id, limit"]),
        (
            "events.list",
            {"agent_id": "a1", "sesion": 1, "limt": 3},
            ["'limt', 'sesion'", "agent_id, session, kinds, after_seq, before_seq, limit"],
        ),
        ("events.list", {}, ["agent_id must be a non-empty string", "None"]),
        ("events.list", {"agent_id": ""}, ["agent_id must be a non-empty string"]),
        ("events.list", {"agent_id": 7}, ["agent_id must be a non-empty string", "7"]),
        ("sessions.list", {"agent_id": ["a1"]}, ["agent_id must be a non-empty string"]),
        ("events.list", {"agent_id": "a1", "limit": 0}, ["limit", "from 1 to 1000", "got 0"]),
        ("events.list", {"agent_id": "a1", "limit": 1001}, ["limit", "from 1 to 1000", "got 1001"]),
        ("sessions.list", {"limit": 0}, ["limit", "from 1 to 1000", "got 0"]),
        ("sessions.list", {"limit": 1001}, ["limit", "from 1 to 1000", "got 1001"]),
        ("events.list", {"agent_id": "a1", "limit": "10"}, ["limit", "whole number", "'10'"]),
        ("events.list", {"agent_id": "a1", "limit": 2.5}, ["limit", "whole number", "2.5"]),
        ("events.list", {"agent_id": "a1", "limit": True}, ["limit", "whole number", "True"]),
        ("events.list", {"agent_id": "a1", "after_seq": -1}, ["after_seq", "0 or more", "-1"]),
        ("events.list", {"agent_id": "a1", "before_seq": "5"}, ["before_seq", "whole number"]),
        ("events.list", {"agent_id": "a1", "session": -1}, ["session", "0 or more", "-1"]),
        ("events.list", {"agent_id": "a1", "kinds": "output"}, ["kinds must be an array of strings"]),
        ("events.list", {"agent_id": "a1", "kinds": ["output", 3]}, ["kinds must be an array of strings"]),
        ("events.list", {"agent_id": "a1", "kinds": ["output", "dance"]}, ["unknown kinds 'dance'", "known:", "tool_use"]),
    ],
)
async def test_bad_params_minus_32602_say_what_was_wrong(state_dir, method, params, words):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        async with watcher(d) as w:
            reply = await rpc_error(w, request(method, params, id=99))
            assert reply["id"] == 99
            assert reply["error"]["code"] == -32602, reply
            for word in words:
                assert word in reply["error"]["message"], (word, reply["error"]["message"])


async def test_unknown_kind_error_lists_every_known_kind(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        async with watcher(d) as w:
            with pytest.raises(RpcError) as raised:
                await w.call("events.list", agent_id="a1", kinds=["dance", "output", "sing"])
    assert raised.value.code == -32602
    assert "'dance', 'sing'" in raised.value.message
    known = raised.value.message.split("known:", 1)[1]
    from agentwatch.model import KINDS

    assert sorted(k.strip() for k in known.split(",")) == sorted(KINDS)


async def test_events_list_of_an_unknown_agent_is_invalid_params(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        async with watcher(d) as w:
            with pytest.raises(RpcError) as raised:
                await w.call("events.list", agent_id="nobody")
    assert raised.value.code == -32602
    assert "'nobody'" in raised.value.message and "agents.list" in raised.value.message


async def test_events_list_of_a_known_agent_without_events(state_dir):
    async with running_daemon(state_dir) as d, agent(d, "a1") as a:
        await a.hello()
        async with watcher(d) as w:
            assert await w.call("events.list", agent_id="a1") == {"events": [], "has_more": False}


def strict_json(text):
    """Parse as RFC 8259 JSON: NaN and Infinity are not JSON."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("id_text", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_a_non_json_number_is_a_parse_error_and_every_reply_is_json(state_dir, id_text):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        await w.ws.send_message('{"jsonrpc": "2.0", "id": %s, "method": "status"}' % id_text)
        with trio.fail_after(TIMEOUT):
            text = await w.ws.get_message()
        reply = strict_json(text)  # every reply must be parseable by a strict JSON parser
        assert reply["error"]["code"] == -32700 and reply["id"] is None


async def test_events_list_replies_are_strict_json(state_dir):
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            await a.send('{"type": "event", "seq": 1, "data": {"kind": "output", "text": "x", "score": NaN}}')
            frame = await a.recv()
            assert (frame["type"], frame["code"]) == ("error", "bad_json") and "NaN" in frame["message"]
            await a.event(2, ev("output", "y"))
            await a.until_ack(2)
        async with watcher(d) as w:
            await w.ws.send_message(json.dumps(request("events.list", {"agent_id": "a1"})))
            with trio.fail_after(TIMEOUT):
                reply = strict_json(await w.ws.get_message())
    assert reply["result"]["events"][-1]["seq"] == 2


async def test_params_may_be_omitted(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        reply = await w.raw(json.dumps(request("status")))
        assert reply["id"] == 1 and reply["result"]["version"] == __version__
        reply = await w.raw(json.dumps(request("sessions.list", id=2)))
        assert reply == {"jsonrpc": "2.0", "id": 2, "result": []}


# --- batches and notifications ---


async def test_a_batch_gets_an_array_of_replies_in_order(state_dir):
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            await send_events(a, 1, [ev("output", "x")])
        async with watcher(d) as w:
            batch = [
                request("agents.list", id="first"),
                request("nope", id=2),
                request("events.list", {"agent_id": "a1"}, id=3),
                {"jsonrpc": "2.0", "method": "status"},  # a notification: no reply in the batch
                request("events.list", {"limit": 0, "agent_id": "a1"}, id=4),
                17,
                request("status", id=5),
            ]
            replies = await w.raw(json.dumps(batch))
            assert isinstance(replies, list)
            assert [r["id"] for r in replies] == ["first", 2, 3, 4, None, 5]
            assert all(r["jsonrpc"] == "2.0" for r in replies)
            assert [r["agent_id"] for r in replies[0]["result"]] == ["a1"]
            assert replies[1]["error"]["code"] == -32601
            assert [e["seq"] for e in replies[2]["result"]["events"]] == [1]
            assert replies[3]["error"]["code"] == -32602
            assert replies[4]["error"]["code"] == -32600
            assert replies[5]["result"]["events_stored"] == 1
            # a batch of one is still answered with an array
            assert await w.raw(json.dumps([request("sessions.list", {"agent_id": "zz"}, id=9)])) == [
                {"jsonrpc": "2.0", "id": 9, "result": []}
            ]


async def test_a_notification_gets_no_reply(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        # a successful one, a failing one (unknown method), one with bad params: none is answered
        await w.ws.send_message(json.dumps({"jsonrpc": "2.0", "method": "status"}))
        await w.ws.send_message(json.dumps({"jsonrpc": "2.0", "method": "no.such"}))
        await w.ws.send_message(json.dumps({"jsonrpc": "2.0", "method": "events.list", "params": {"limit": 0}}))
        # a batch of notifications only: no reply at all (not even an empty array)
        await w.ws.send_message(json.dumps([{"jsonrpc": "2.0", "method": "status"}, {"jsonrpc": "2.0", "method": "agents.list"}]))
        reply = await w.raw(json.dumps(request("agents.list", id="after")))
        assert reply == {"jsonrpc": "2.0", "id": "after", "result": []}
        # and nothing else is waiting behind it
        with trio.move_on_after(0.3) as nothing:
            extra = await w.ws.get_message()
        assert nothing.cancelled_caught, f"unexpected frame {extra!r}"


async def test_null_id_is_a_request_not_a_notification(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        reply = await w.raw(json.dumps({"jsonrpc": "2.0", "id": None, "method": "agents.list"}))
        assert reply == {"jsonrpc": "2.0", "id": None, "result": []}


# --- status ---


async def test_status_counts_agents_and_events(state_dir):
    async with running_daemon(state_dir) as d:
        async with watcher(d) as w:
            status = await w.call("status")
            assert status["version"] == __version__
            assert isinstance(status["uptime_s"], int | float) and 0 <= status["uptime_s"] < 60
            assert status["agents_connected"] == 0
            assert status["events_stored"] == 0
            assert {"storage", "agentwatch", "claude-stream-json", "watch-queries"} <= set(status["plugins"])
            async with agent(d, "a1") as a:
                await a.hello()
                await send_events(a, 1, [ev("prompt", "do it"), ev("output", "done"), {"type": "keep_alive"}, ev("turn_completed")])
                status = await w.call("status")
                assert status["agents_connected"] == 1
                assert status["events_stored"] == 3, "the keep-alive is acknowledged, not stored"
                await trio.sleep(0.05)
                assert (await w.call("status"))["uptime_s"] > status["uptime_s"]
            async with agent(d, "a2") as b:
                await b.hello()
                await send_events(b, 1, [ev("output")] * 5)
                async with agent(d, "a3") as c:
                    await c.hello()
                    assert (await w.call("status"))["agents_connected"] == 2

            await all_released(w)
            status = await w.call("status")
            assert status["events_stored"] == 8


async def all_released(w):
    async def none_connected():
        return (await w.call("status"))["agents_connected"] == 0

    await eventually(none_connected, "agents released")


async def test_agents_connected_goes_back_to_zero_after_disconnect(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        async with agent(d, "a1") as a:
            await a.hello()
            assert (await w.call("status"))["agents_connected"] == 1

        await all_released(w)


# --- agents.list ---


async def test_agents_list_fields_and_connected(state_dir):
    fields = {"agent_id", "name", "kind", "cwd", "host", "labels", "connected", "session", "acked_seq", "last_event_at"}
    async with running_daemon(state_dir) as d, watcher(d) as w:
        async with agent(d, "b2") as b:
            await b.hello()  # says nothing about itself
        async with agent(d, "a1") as a:
            await a.hello(name="bot", kind="claude-code", cwd="/home/u/proj", host="box", labels={"team": "x"})
            before = datetime.now().astimezone()
            await send_events(a, 1, [ev("output", "1"), ev("context_cleared"), ev("output", "2")])

            async def b2_released():
                return {i["agent_id"]: i["connected"] for i in await w.call("agents.list")} == {"a1": True, "b2": False}

            await eventually(b2_released, "b2 released")
            agents = await w.call("agents.list")
            assert [i["agent_id"] for i in agents] == ["a1", "b2"]
            a1, b2 = agents
            for info in agents:
                assert fields <= set(info), fields - set(info)
            assert (a1["name"], a1["kind"], a1["cwd"], a1["host"], a1["labels"]) == ("bot", "claude-code", "/home/u/proj", "box", {"team": "x"})
            assert a1["connected"] is True and a1["session"] == 1 and a1["acked_seq"] == 3
            assert ISO_MS.match(a1["last_event_at"]), a1["last_event_at"]
            assert abs((datetime.fromisoformat(a1["last_event_at"]) - before).total_seconds()) < 30
            assert (b2["name"], b2["kind"], b2["cwd"], b2["host"], b2["labels"]) == (None, None, None, None, {})
            assert b2["connected"] is False and b2["session"] == 0 and b2["acked_seq"] == 0
            assert b2["last_event_at"] is None

        async def a1_released():
            return [i["connected"] for i in await w.call("agents.list")] == [False, False]

        await eventually(a1_released, "a1 released")


# --- sessions.list ---


async def test_sessions_list_fields_states_and_counts(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        async with agent(d, "a1") as a:
            await a.hello()
            await send_events(a, 1, [ev("prompt"), ev("output"), ev("output")])  # session 0: 3 events
            await trio.sleep(0.01)
            await send_events(a, 4, [ev("context_cleared"), ev("output"), ev("session_ended")])  # session 1: 3, ended
            await trio.sleep(0.01)
            await send_events(a, 7, [ev("context_cleared"), ev("prompt")])  # session 2: 2, current
            sessions = await w.call("sessions.list", agent_id="a1")
            for s in sessions:
                assert set(s) >= {"agent_id", "session", "started_at", "last_event_at", "events", "state"}
                assert "current" not in s, "the internal 'current' flag must not leak"
                assert s["agent_id"] == "a1"
                assert ISO_MS.match(s["started_at"]) and ISO_MS.match(s["last_event_at"])
                assert s["started_at"] <= s["last_event_at"]
            assert [(s["session"], s["events"], s["state"]) for s in sessions] == [
                (2, 2, "active"),
                (1, 3, "cleared"),  # superseded by a context clear: cleared wins over ended
                (0, 3, "cleared"),
            ]
        async with agent(d, "a1") as a:
            await a.hello()
            await send_events(a, 9, [ev("output"), ev("session_ended")])
            sessions = await w.call("sessions.list", agent_id="a1")
            assert [(s["session"], s["events"], s["state"]) for s in sessions][0] == (2, 4, "ended")
            await send_events(a, 11, [ev("session_started")])
            assert (await w.call("sessions.list", agent_id="a1"))[0]["state"] == "active", "a new session_started reopens it"

        async def idle():
            return (await w.call("sessions.list", agent_id="a1"))[0]["state"] == "idle"

        await eventually(idle, "session idle after disconnect")
        total = sum(s["events"] for s in await w.call("sessions.list", agent_id="a1"))
        assert total == len(await stored(d, "a1")) == 11


async def test_session_of_a_new_agent_exists_before_any_event(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        async with agent(d, "a1") as a:
            await a.hello()
            [s] = await w.call("sessions.list")
            assert (s["agent_id"], s["session"], s["events"], s["state"]) == ("a1", 0, 0, "active")
            assert ISO_MS.match(s["started_at"]) and s["last_event_at"] is None


async def test_sessions_list_orders_most_recently_active_first_and_filters(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        async with agent(d, "a1") as a, agent(d, "b2") as b:
            await a.hello()
            await b.hello()
            await send_events(a, 1, [ev("output")])  # a1/0
            await trio.sleep(0.01)
            await send_events(b, 1, [ev("output"), ev("output")])  # b2/0
            await trio.sleep(0.01)
            await send_events(a, 2, [ev("context_cleared")])  # a1/1
            await trio.sleep(0.01)
            await send_events(b, 3, [ev("output")])  # b2/0 again: now the most recent
            sessions = await w.call("sessions.list")
            assert [(s["agent_id"], s["session"], s["events"]) for s in sessions] == [("b2", 0, 3), ("a1", 1, 1), ("a1", 0, 1)]
            last = [s["last_event_at"] for s in sessions]
            assert last == sorted(last, reverse=True)
            assert [(s["agent_id"], s["session"]) for s in await w.call("sessions.list", limit=2)] == [("b2", 0), ("a1", 1)]
            assert [(s["agent_id"], s["session"]) for s in await w.call("sessions.list", agent_id="a1")] == [("a1", 1), ("a1", 0)]
            assert [(s["agent_id"], s["session"]) for s in await w.call("sessions.list", agent_id="a1", limit=1)] == [("a1", 1)]
            assert await w.call("sessions.list", agent_id="nobody") == []
            assert len(await w.call("sessions.list", limit=1000)) == 3


# --- events.list ---


async def test_event_shape(state_dir):
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            before = datetime.now().astimezone()
            await a.event(1, ev("output", "hello"), ts="2026-11-21T10:00:00.123Z")
            await a.until_ack(1)
            await a.event(2, {"kind": "tool_use", "tool": "Bash", "input": {"command": "ls"}, "extra": [1, None]})
            await a.until_ack(2)
        async with watcher(d) as w:
            page = await w.call("events.list", agent_id="a1")
    assert set(page) == {"events", "has_more"} and page["has_more"] is False
    first, second = page["events"]
    assert set(first) == {"agent_id", "seq", "session", "kind", "ts", "received_at", "format", "data"}
    assert first["agent_id"] == "a1" and first["seq"] == 1 and first["session"] == 0 and first["kind"] == "output"
    assert first["ts"] == "2026-11-21T10:00:00.123Z" and first["format"] == "agentwatch"
    assert first["data"] == {"kind": "output", "text": "hello"}
    assert ISO_MS.match(first["received_at"])
    assert abs((datetime.fromisoformat(first["received_at"]) - before).total_seconds()) < 30
    assert second["ts"] is None and second["kind"] == "tool_use"
    assert second["data"] == {"kind": "tool_use", "tool": "Bash", "input": {"command": "ls"}, "extra": [1, None]}, "data is the record as sent"


async def test_events_list_filters(state_dir):
    kinds = ["prompt", "output", "tool_use", "tool_result", "output", "context_cleared", "prompt", "thinking", "output", "error"]
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a, agent(d, "b2") as b:
            await a.hello()
            await b.hello()
            await send_events(a, 1, [ev(k, f"a{i + 1}") for i, k in enumerate(kinds)])
            await send_events(b, 1, [ev("output", "b1"), ev("prompt", "b2")])
        async with watcher(d) as w:

            async def seqs(**params):
                page = await w.call("events.list", agent_id="a1", **params)
                assert all(e["agent_id"] == "a1" for e in page["events"])
                return [e["seq"] for e in page["events"]], page["has_more"]

            assert await seqs() == (list(range(1, 11)), False)
            assert await seqs(session=0) == ([1, 2, 3, 4, 5], False)
            assert await seqs(session=1) == ([6, 7, 8, 9, 10], False)
            assert await seqs(session=2) == ([], False)
            assert await seqs(kinds=["output"]) == ([2, 5, 9], False)
            assert await seqs(kinds=["prompt", "error", "thinking"]) == ([1, 7, 8, 10], False)
            assert await seqs(kinds=["session_ended"]) == ([], False)
            assert await seqs(kinds=["output", "prompt"], session=1) == ([7, 9], False)
            assert await seqs(after_seq=4) == ([5, 6, 7, 8, 9, 10], False)
            assert await seqs(before_seq=4) == ([1, 2, 3], False)
            assert await seqs(after_seq=2, before_seq=6) == ([3, 4, 5], False)
            assert await seqs(after_seq=5, before_seq=6) == ([], False)
            assert await seqs(after_seq=10) == ([], False)
            assert await seqs(after_seq=0, limit=3) == ([1, 2, 3], True)
            assert await seqs(kinds=["output"], limit=2) == ([2, 5], True)
            assert await seqs(kinds=["output"], limit=3) == ([2, 5, 9], False), "exactly limit left: no more"
            assert await seqs(kinds=["output"], after_seq=5, limit=1) == ([9], False)
            assert await seqs(kinds=["output", "prompt"], session=1, before_seq=9, limit=5) == ([7], False)
            page = await w.call("events.list", agent_id="b2", kinds=["prompt"])
            assert [(e["agent_id"], e["seq"], e["data"]["text"]) for e in page["events"]] == [("b2", 2, "b2")]
            page = await w.call("events.list", agent_id="a1", kinds=["thinking"])
            [thinking] = page["events"]
            assert (thinking["session"], thinking["kind"], thinking["data"]) == (1, "thinking", ev("thinking", "a8"))


async def test_events_list_default_limit_is_100(state_dir):
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            await send_events(a, 1, [ev("output", str(i)) for i in range(101)])
        async with watcher(d) as w:
            page = await w.call("events.list", agent_id="a1")
            assert [e["seq"] for e in page["events"]] == list(range(1, 101)) and page["has_more"] is True
            page = await w.call("events.list", agent_id="a1", after_seq=100)
            assert [e["seq"] for e in page["events"]] == [101] and page["has_more"] is False


@pytest.mark.parametrize("limit", [1, 7, 100, 250, 1000])
async def test_paging_walks_every_event_exactly_once(state_dir, limit):
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            seq = 0
            for chunk in range(5):  # 250 events with a gap in the seqs and two sessions
                records = [ev("context_cleared") if chunk == 3 and i == 0 else ev("output", f"{chunk}.{i}") for i in range(50)]
                seq = await send_events(a, seq + 1 + (7 if chunk == 2 else 0), records)
        expected = list(range(1, 101)) + list(range(108, 258))
        async with watcher(d) as w:
            seen, after, pages = [], 0, 0
            while True:
                page = await w.call("events.list", agent_id="a1", after_seq=after, limit=limit)
                pages += 1
                got = [e["seq"] for e in page["events"]]
                assert len(got) <= limit
                if page["has_more"]:
                    assert len(got) == limit, "a page that is not the last is full"
                seen.extend(got)
                if not page["has_more"]:
                    break
                after = got[-1]
                assert pages < 400
            assert seen == expected, "every seq exactly once, in ascending order"
            assert pages == -(-len(expected) // limit)

            # a window bounded on both sides, paged with after_seq, gives exactly the events inside it
            window, after = [], 90
            while True:
                page = await w.call("events.list", agent_id="a1", after_seq=after, before_seq=200, limit=limit)
                window.extend(e["seq"] for e in page["events"])
                if not page["has_more"]:
                    break
                after = window[-1]
            assert window == [s for s in expected if 90 < s < 200]
            status = await w.call("status")
            assert status["events_stored"] == 250


async def test_events_survive_a_restart_and_are_listed_the_same(state_dir):
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            await send_events(a, 1, [ev("output", "x"), ev("context_cleared"), ev("prompt", "y")])
        first = await stored(d, "a1")
    async with running_daemon(state_dir) as d, watcher(d) as w:
        assert await stored(d, "a1") == first
        [info] = await w.call("agents.list")
        assert info["connected"] is False and info["acked_seq"] == 3 and info["session"] == 1
        assert (await w.call("status"))["events_stored"] == 3
        assert [(s["session"], s["state"]) for s in await w.call("sessions.list")] == [(1, "idle"), (0, "cleared")]


async def test_a_batch_of_more_than_100_requests_is_refused(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        reply = await w.raw(json.dumps([request("status", {}, i) for i in range(101)]))
        assert reply["error"]["code"] == -32600 and "at most 100" in reply["error"]["message"]
        replies = await w.raw(json.dumps([request("status", {}, i) for i in range(100)]))
        assert [r["id"] for r in replies] == list(range(100))


@pytest.mark.parametrize("param", ["after_seq", "before_seq", "session"])
async def test_integers_beyond_sqlite_are_invalid_params(state_dir, param):
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
        async with watcher(d) as w:
            with pytest.raises(RpcError) as error:
                await w.call("events.list", agent_id="a1", **{param: 2**63})
            assert error.value.code == -32602 and param in error.value.message
            assert (await w.call("status"))["plugin_errors"] == {}


async def test_nesting_too_deep_for_the_parser_is_a_parse_error(state_dir):
    async with running_daemon(state_dir) as d, watcher(d) as w:
        reply = await w.raw("[" * 100_000 + "]" * 100_000)
        assert reply["error"]["code"] == -32700 and "nested too deeply" in reply["error"]["message"]
        assert "version" in await w.call("status")


async def test_an_events_page_stops_growing_at_its_byte_budget(state_dir, monkeypatch):
    monkeypatch.setattr("agentwatch.plugins.watch_queries.MAX_PAGE_BYTES", 5000)
    async with running_daemon(state_dir) as d:
        async with agent(d, "a1") as a:
            await a.hello()
            await a.send({"type": "events", "events": [{"seq": s, "data": ev("output", "x" * 2000)} for s in range(1, 6)]})
            await a.until_ack(5)
        async with watcher(d) as w:
            page = await w.call("events.list", agent_id="a1")
            assert [e["seq"] for e in page["events"]] == [1, 2] and page["has_more"] is True
            page = await w.call("events.list", agent_id="a1", after_seq=2)
            assert [e["seq"] for e in page["events"]] == [3, 4] and page["has_more"] is True


async def test_at_shutdown_watchers_are_closed_with_1001_as_agents_are(state_dir):
    async with trio.open_nursery() as clients:
        async with running_daemon(state_dir) as d:
            idle = await connect_websocket_url(clients, f"{d.url}/v1/watch", extra_headers=d.headers())
            subscribed = await connect_websocket_url(clients, f"{d.url}/v1/watch", extra_headers=d.headers())
            await subscribed.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": {"topics": ["events"]}}))
            assert json.loads(await subscribed.get_message())["result"] == {"subscription": 1}
        for ws in (idle, subscribed):
            with trio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed):
                while True:
                    await ws.get_message()
            assert (ws.closed.code, ws.closed.reason) == (1001, "daemon shutting down")
