"""The SQLite schema, as numbered migrations keyed on ``PRAGMA user_version``.

A database is ours when its ``application_id`` is :data:`APPLICATION_ID`; an empty file is
initialised, anything else is refused untouched.
"""

from __future__ import annotations

import apsw

from agentwatch.store import StoreRefused

APPLICATION_ID = 0x41475754  # "AGWT"

#: MIGRATIONS[n] takes a database from user_version n to n + 1. Append; never edit.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE agents (
        agent_key     INTEGER PRIMARY KEY,
        agent_id      TEXT NOT NULL UNIQUE,
        name          TEXT,
        kind          TEXT,
        cwd           TEXT,
        host          TEXT,
        pid           INTEGER,
        labels        TEXT NOT NULL DEFAULT '{}',   -- JSON object
        extra         TEXT NOT NULL DEFAULT '{}',   -- other hello.agent fields, JSON
        session       INTEGER NOT NULL DEFAULT 0,   -- current session number
        acked_seq     INTEGER NOT NULL DEFAULT 0,   -- highest seq durably handled (dedup mark)
        first_seen_at INTEGER NOT NULL,             -- unix ms
        last_seen_at  INTEGER NOT NULL,             -- last hello, unix ms
        last_event_at INTEGER                       -- unix ms
    );
    CREATE TABLE sessions (
        agent_key     INTEGER NOT NULL REFERENCES agents(agent_key),
        session       INTEGER NOT NULL,
        started_at    INTEGER NOT NULL,
        last_event_at INTEGER,
        events        INTEGER NOT NULL DEFAULT 0,
        ended_at      INTEGER,
        PRIMARY KEY (agent_key, session)
    ) WITHOUT ROWID;
    -- rowid order is arrival order: retention deletes oldest-first by rowid.
    CREATE TABLE events (
        agent_key   INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        session     INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        ts          TEXT,
        received_at INTEGER NOT NULL,
        format      TEXT NOT NULL,
        data        TEXT NOT NULL
    );
    CREATE UNIQUE INDEX events_by_seq ON events(agent_key, seq);
    CREATE INDEX events_by_session ON events(agent_key, session, seq);
    CREATE INDEX events_by_kind ON events(agent_key, kind, seq);
    """,
    # 1 -> 2: what each session's events established (agentwatch.session_facts), as JSON.
    """
    ALTER TABLE sessions ADD COLUMN facts TEXT;
    """,
]


def migrate(conn: apsw.Connection, path: str) -> int:
    """Bring the database at ``path`` to the newest schema; return the version it had. A file that
    cannot be read raises its ``apsw.Error`` (the caller says what it means)."""
    application_id = conn.execute("PRAGMA application_id").get
    version = conn.execute("PRAGMA user_version").get
    tables = conn.execute("SELECT count(*) FROM sqlite_schema").get
    if application_id != APPLICATION_ID and (application_id != 0 or version != 0 or tables != 0):
        raise StoreRefused(
            f"{path} is a database of another program (application_id {application_id}, {tables} schema objects); "
            "agentwatch will not touch it: move it away or point storage.path elsewhere"
        )
    if version > len(MIGRATIONS):
        raise StoreRefused(
            f"{path} has schema version {version}, newer than this agentwatch understands ({len(MIGRATIONS)}); "
            "upgrade agentwatch"
        )
    if version == 0:  # before the first table: deleted pages can then go back to the file system
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    for number in range(version, len(MIGRATIONS)):
        with conn:
            conn.execute(MIGRATIONS[number])
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {number + 1}")
    return version
