"""The outbox (src/agentwatch/outbox.py) on real files: numbering, reloading, acknowledging,
crash leftovers, the welcome's renumbering, forgetting, and the per-agent lock."""

import json
import subprocess
import sys
import threading
from pathlib import Path

from agentwatch import outbox


def records(*texts: str) -> list[tuple[object, str, str | None]]:
    return [({"text": text}, "claude-hook", None) for text in texts]


def events_file(state_dir: Path, agent_id: str = "a1") -> Path:
    return state_dir / "outbox" / f"{agent_id}.jsonl"


def header_file(state_dir: Path, agent_id: str = "a1") -> Path:
    return state_dir / "outbox" / f"{agent_id}.json"


def pending(state_dir: Path, agent_id: str = "a1") -> list[tuple[int, object]]:
    """``(seq, data)`` of what a fresh opening of the outbox reads back."""
    with outbox.locked(state_dir, agent_id) as box:
        return [(seq, json.loads(line)["data"]["text"]) for seq, line in box.pending]


def test_append_numbers_events_one_after_another_across_calls(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        assert box.append(records("one", "two")) == [1, 2]
        assert box.append(records("three")) == [3]
        assert box.last_seq == 3
    lines = [json.loads(line) for line in events_file(state_dir).read_text().splitlines()]
    assert lines == [{"seq": n, "format": "claude-hook", "data": {"text": text}} for n, text in enumerate(["one", "two", "three"], 1)]


def test_append_keeps_the_timestamp_when_given(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        box.append([({"x": 1}, "agentwatch", "2026-01-02T03:04:05.678Z")])
    assert json.loads(events_file(state_dir).read_text()) == {
        "seq": 1, "format": "agentwatch", "data": {"x": 1}, "ts": "2026-01-02T03:04:05.678Z"}


def test_a_new_opening_reads_the_pending_events_and_hello_back(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        box.set_hello({"format": "claude-hook", "agent": {"pid": 7}})
        box.append(records("one", "two"))
    with outbox.locked(state_dir, "a1") as box:
        assert box.hello == {"format": "claude-hook", "agent": {"pid": 7}}
        assert [seq for seq, _ in box.pending] == [1, 2]
        assert box.damaged == 0
        assert box.append(records("three")) == [3], "numbering continues after a reopening"
    assert pending(state_dir) == [(1, "one"), (2, "two"), (3, "three")]


def test_outboxes_of_different_agents_are_separate(state_dir):
    with outbox.locked(state_dir, "a1") as first, outbox.locked(state_dir, "a2") as second:
        first.append(records("a"))
        assert second.append(records("b")) == [1]
    assert pending(state_dir, "a1") == [(1, "a")]
    assert pending(state_dir, "a2") == [(1, "b")]
    assert sorted(outbox.with_pending(state_dir)) == ["a1", "a2"]


def test_acknowledge_drops_events_up_to_the_seq_and_survives_a_reopening(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        box.append(records("one", "two", "three"))
        box.acknowledge(2)
        assert [seq for seq, _ in box.pending] == [3]
        box.acknowledge(1)  # an older ack changes nothing
        assert [seq for seq, _ in box.pending] == [3]
    assert pending(state_dir) == [(3, "three")]
    with outbox.locked(state_dir, "a1") as box:
        assert box.acked == 2
        assert box.append(records("four")) == [4]
        box.acknowledge(4)
        assert box.pending == []
    assert not events_file(state_dir).exists(), "the events file goes when nothing is pending"
    assert outbox.with_pending(state_dir) == []
    with outbox.locked(state_dir, "a1") as box:
        assert box.append(records("five")) == [5], "seqs are never given out twice, even after everything was acked"


def test_a_line_cut_short_by_a_crash_is_skipped_and_counted(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        box.append(records("one", "two"))
    path = events_file(state_dir)
    whole = path.read_text()
    path.write_text(whole + '{"seq":3,"format":"claude-hook","da')  # the process died mid-write
    with outbox.locked(state_dir, "a1") as box:
        assert box.damaged == 1
        assert [seq for seq, _ in box.pending] == [1, 2]
        assert box.append(records("three")) == [3]
    # The event written after the cut piece is read back whole (not glued to the piece).
    assert pending(state_dir) == [(1, "one"), (2, "two"), (3, "three")]
    with outbox.locked(state_dir, "a1") as box:
        assert box.damaged == 0


def test_an_unreadable_line_in_the_middle_is_skipped_and_counted(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        box.append(records("one"))
    with events_file(state_dir).open("a") as handle:
        handle.write("not json\n[1]\n")
    with outbox.locked(state_dir, "a1") as box:
        assert box.damaged == 2
        assert box.append(records("two")) == [2]
    assert pending(state_dir) == [(1, "one"), (2, "two")]


def test_a_record_with_a_unicode_line_separator_is_one_line(state_dir):
    text = "first\u2028second\u2029third\x85fourth"
    with outbox.locked(state_dir, "a1") as box:
        box.append(records(text, "after"))
    with outbox.locked(state_dir, "a1") as box:
        assert box.damaged == 0
    assert pending(state_dir) == [(1, text), (2, "after")]


def test_a_damaged_header_leaves_the_events_readable(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        box.set_hello({"format": "x"})
        box.append(records("one"))
    header_file(state_dir).write_text('{"hello": ')
    with outbox.locked(state_dir, "a1") as box:
        assert box.hello == {}
        assert [seq for seq, _ in box.pending] == [1]


def test_welcome_renumbers_events_never_handed_over_after_the_daemons_acked_seq(state_dir):
    """The outbox's header was lost (or the agent id is known from elsewhere): the daemon already
    holds seqs 1..10 of this agent, so these new events would be taken for duplicates."""
    with outbox.locked(state_dir, "a1") as box:
        box.append(records("one", "two"))
        box.welcomed(10)
        assert [seq for seq, _ in box.pending] == [11, 12]
        assert [json.loads(line)["seq"] for _, line in box.pending] == [11, 12]
        assert box.acked == 10
        assert box.append(records("three")) == [13]
    assert pending(state_dir) == [(11, "one"), (12, "two"), (13, "three")]


def test_welcome_renumbers_only_the_events_not_yet_handed_over(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        box.append(records("one", "two", "three"))
        box.handing_over(2)
        box.welcomed(10)  # the daemon got 1 and 2 (and more, from elsewhere)
        assert [(seq, json.loads(line)["data"]["text"]) for seq, line in box.pending] == [(11, "three")]
    assert pending(state_dir) == [(11, "three")]


def test_welcome_does_not_renumber_events_already_handed_over(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        box.append(records("one", "two"))
        box.handing_over(2)
    with outbox.locked(state_dir, "a1") as box:  # a later process: the handing over was recorded
        assert box.sent == 2
        box.welcomed(1)  # the daemon stored 1; 2 may be on its way
        assert [(seq, json.loads(line)["seq"]) for seq, line in box.pending] == [(2, 2)]
        box.welcomed(10)
        assert box.pending == [], "handed-over events below the acked seq are delivered, not renumbered"
    assert not events_file(state_dir).exists()


def test_welcome_with_the_daemon_behind_keeps_numbers(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        box.append(records("one", "two"))
        box.acknowledge(1)
        box.welcomed(0)  # e.g. the daemon's database was replaced: resend with the same seqs
        assert [seq for seq, _ in box.pending] == [2]
        assert box.acked == 1


def test_forget_removes_the_files_only_when_nothing_is_pending(state_dir):
    with outbox.locked(state_dir, "a1") as box:
        box.set_hello({"format": "claude-hook"})
        box.append(records("one"))
        box.forget()
    assert header_file(state_dir).exists() and events_file(state_dir).exists()
    assert pending(state_dir) == [(1, "one")]
    with outbox.locked(state_dir, "a1") as box:
        box.acknowledge(1)
        box.forget()
    assert not header_file(state_dir).exists()
    assert not events_file(state_dir).exists()


def test_try_locked_is_none_while_another_thread_holds_the_outbox(state_dir):
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with outbox.locked(state_dir, "a1") as box:
            box.append(records("held"))
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        with outbox.try_locked(state_dir, "a1") as box:
            assert box is None
        with outbox.try_locked(state_dir, "a2") as other:
            assert other is not None, "another agent's outbox is free"
    finally:
        release.set()
        holder.join(5)
    with outbox.try_locked(state_dir, "a1") as box:
        assert box is not None
        assert [seq for seq, _ in box.pending] == [1]


def test_locked_waits_for_another_process_to_let_go(state_dir):
    state_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys\n"
            "from pathlib import Path\n"
            "from agentwatch import outbox\n"
            f"with outbox.locked(Path({str(state_dir)!r}), 'a1') as box:\n"
            "    box.append([({'text': 'from the holder'}, 'claude-hook', None)])\n"
            "    print('holding', flush=True)\n"
            "    sys.stdin.readline()\n"
        )],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        with outbox.try_locked(state_dir, "a1") as box:
            assert box is None
        acquired = threading.Event()
        seen: list[list[int]] = []

        def wait_for_it() -> None:
            with outbox.locked(state_dir, "a1") as box:
                seen.append([seq for seq, _ in box.pending])
                acquired.set()

        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        assert not acquired.wait(0.2), "locked() must wait while the other process holds the outbox"
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert acquired.wait(5)
        waiter.join(5)
        assert seen == [[1]], "the waiter reads what the holder wrote"
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(5)


def test_a_record_with_a_lone_surrogate_is_kept(state_dir):
    """JSON may escape half of a surrogate pair (``"\\ud800"``); such text is not valid UTF-8."""
    text = json.loads('"broken \\ud800 pair"')
    with outbox.locked(state_dir, "a1") as box:
        assert box.append(records(text)) == [1]
    assert pending(state_dir) == [(1, text)]


def test_an_events_file_with_nothing_pending_goes_at_the_next_opening(state_dir):
    """A crash between acknowledging and removing the file, or one mid-way through the only line,
    leaves a file with nothing to send: otherwise every flush would connect for it, forever."""
    with outbox.locked(state_dir, "acked") as box:
        box.append(records("one", "two"))
        box.acknowledge(1)
    with outbox.locked(state_dir, "torn") as box:
        box.append(records("one"))
        box.acknowledge(1)
    events_file(state_dir, "acked").write_text(events_file(state_dir, "acked").read_text().splitlines()[0] + "\n")
    events_file(state_dir, "torn").write_text('{"seq":2,"form')
    assert sorted(outbox.with_pending(state_dir)) == ["acked", "torn"]
    for agent_id in ("acked", "torn"):
        with outbox.locked(state_dir, agent_id) as box:
            assert box.pending == []
    assert outbox.with_pending(state_dir) == []
    with outbox.locked(state_dir, "torn") as box:
        assert box.append(records("two")) == [2]
