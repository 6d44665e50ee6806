"""Parsing and validating the frames of the ingest endpoint (protocol.md, "Ingest")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentwatch import strict_json
from agentwatch.model import AgentInfo
from agentwatch.text import brief, is_text

PROTOCOL_VERSION = 1
MAX_BATCH_EVENTS = 1000
MAX_INTEGER = 2**63 - 1  # SQLite's largest integer
_AGENT_STRINGS = ("name", "kind", "cwd", "host")


class FrameError(Exception):
    """A frame the daemon cannot accept: sent back as ``{"type": "error", "code", "message", "seq"?}``."""

    def __init__(self, code: str, message: str, seq: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.seq = seq

    def to_frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.seq is not None:
            frame["seq"] = self.seq
        return frame


@dataclass(slots=True)
class Hello:
    format: str
    agent: AgentInfo


@dataclass(slots=True)
class RawEvent:
    seq: int
    ts: str | None
    format: str | None
    data: Any


def decode(message: str | bytes) -> dict[str, Any]:
    """The JSON object in a text frame, or a ``bad_json``/``bad_frame`` error."""
    if isinstance(message, bytes):
        raise FrameError("bad_frame", "binary frames are not accepted: send each frame as a JSON text frame")
    try:
        frame = strict_json.loads(message)
    except ValueError as exc:
        raise FrameError("bad_json", f"the frame is not valid JSON ({exc}); send one JSON object per frame") from None
    if not isinstance(frame, dict):
        raise FrameError("bad_frame", f"a frame must be a JSON object, not {_json_type(frame)}")
    return frame


def parse_hello(frame: dict[str, Any], known_formats: list[str]) -> Hello:
    """Validate the first frame of a connection."""
    if frame.get("type") != "hello":
        raise FrameError(
            "hello_required",
            f"the first frame must be a hello, got type {brief(frame.get('type'))}: "
            '{"type": "hello", "protocol": 1, "format": "...", "agent": {...}}',
        )
    protocol = frame.get("protocol")
    if protocol != PROTOCOL_VERSION or isinstance(protocol, bool):  # True == 1 in Python, not in JSON
        raise FrameError("bad_frame", f"hello.protocol must be {PROTOCOL_VERSION}, got {brief(frame.get('protocol'))}")
    fmt = frame.get("format", "agentwatch")
    if fmt not in known_formats:
        raise FrameError("unknown_format", f"unknown format {brief(fmt)}; known formats: {', '.join(sorted(known_formats))}")
    return Hello(fmt, _parse_agent(frame.get("agent", {})))


def _parse_agent(agent: Any) -> AgentInfo:
    if not isinstance(agent, dict):
        raise FrameError("bad_frame", f"hello.agent must be an object, not {_json_type(agent)}")
    info = AgentInfo()
    for key, value in agent.items():
        if key in _AGENT_STRINGS:
            if value is not None and not _is_unicode(value):
                raise FrameError("bad_frame", f"hello.agent.{key} must be a string of valid Unicode")
            setattr(info, key, value)
        elif key == "pid":
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INTEGER):
                raise FrameError("bad_frame", "hello.agent.pid must be a non-negative integer")
            info.pid = value
        elif key == "labels":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise FrameError("bad_frame", "hello.agent.labels must be an object of strings")
            info.labels = value
        else:
            info.extra[key] = value
    return info


def parse_events(frame: dict[str, Any]) -> list[RawEvent]:
    """The events of an ``event`` or ``events`` frame, in order, each one validated."""
    kind = frame.get("type")
    if kind == "event":
        return [_parse_event(frame, "event")]
    if kind == "events":
        events = frame.get("events")
        if not isinstance(events, list) or not events:
            raise FrameError("bad_frame", "events.events must be a non-empty array of events")
        if len(events) > MAX_BATCH_EVENTS:
            raise FrameError(
                "too_large", f"a batch holds at most {MAX_BATCH_EVENTS} events, this one has {len(events)}: split it"
            )
        parsed = []
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise FrameError("bad_frame", f"events[{index}] must be an object, not {_json_type(event)}")
            parsed.append(_parse_event(event, f"events[{index}]"))
        return parsed
    if kind == "hello":
        raise FrameError("bad_frame", "this connection already said hello; send event or events frames")
    raise FrameError("bad_frame", f"unknown frame type {brief(kind)}; an agent sends hello, event or events")


def _parse_event(event: dict[str, Any], where: str) -> RawEvent:
    seq = event.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_INTEGER:
        raise FrameError("bad_frame", f"{where}.seq must be a positive integer below 2**63, got {brief(seq)}")
    ts = event.get("ts")
    if ts is not None and not is_iso_time(ts):
        raise FrameError("bad_frame", f"{where}.ts must be an ISO 8601 time such as 2026-11-21T10:00:00.123Z", seq)
    fmt = event.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise FrameError("bad_frame", f"{where}.format must be a string naming a format", seq)
    if "data" not in event:
        raise FrameError("bad_frame", f"{where}.data is missing: it carries the agent's record", seq)
    return RawEvent(seq, ts, fmt, event["data"])


def _is_unicode(value: Any) -> bool:
    """A string that UTF-8 can encode (JSON admits lone surrogates such as "\\udc90")."""
    return isinstance(value, str) and is_text(value)


def is_iso_time(value: Any) -> bool:
    """``value`` is a time the ``ts`` of an event may hold."""
    if not _is_unicode(value):  # fromisoformat takes any character as the separator, even a lone surrogate
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
