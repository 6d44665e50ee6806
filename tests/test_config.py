"""Configuration (defaults < file < AGENTWATCH_* environment < flags) and ``agentwatch serve`` start-up errors."""

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import trio
from trio_websocket import wrap_client_stream

from agentwatch.config import SCHEMA, ConfigError, Overrides, load_config, parse_duration

DEFAULTS = {
    "server": {
        "listen": ["127.0.0.1:7717"],
        "max_frame_bytes": 1048576,
        "ping_interval": 20.0,
        "ping_timeout": 20.0,
        "hello_timeout": 10.0,
        "drain_timeout": 10.0,
        "rate_limit": 0.0,
        "rate_burst": 2000,
        "max_connections": 4096,
        "allowed_hosts": [],
    },
    "auth": {"enabled": True, "token_file": "token", "allowed_origins": []},
    "storage": {"path": "agentwatch.db", "synchronous": "full", "queue_bytes": 8 << 20},
    "plugins": {"disable": []},
    "watch": {"backlog": 1000, "backlog_bytes": 16 << 20, "max_bytes": 32 << 20},
    "attention": {"git_check_interval": 60.0},
    "stall": {"threshold": 900.0, "tool_threshold": 3600.0, "agents": {}, "labels": {}},
    "retention": {"max_age": 2592000.0, "max_events_per_agent": 50000, "max_sessions_per_agent": 0, "interval": 3600.0, "batch_events": 1000},
    "log": {"level": "info", "format": "auto", "events": False},
    "metrics": {"listen": ""},
}


def load(tmp_path, toml=None, environ=None, **overrides):
    """``load_config`` with an explicit environment (never the test runner's) and an optional TOML file."""
    if toml is not None:
        path = tmp_path / "agentwatch.toml"
        path.write_text(toml, encoding="utf-8")
        overrides.setdefault("config_file", path)
    overrides.setdefault("state_dir", tmp_path / "state")
    return load_config(Overrides(**overrides), environ=dict(environ or {}))


def config_error(tmp_path, toml=None, environ=None, **overrides):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, toml, environ, **overrides)
    message = str(raised.value)
    assert "\n" not in message, "one line"
    return message


def as_dict(config):
    return {section: dict(values) for section, values in config.values.items()}


# --- durations ---


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("20s", 20.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("30d", 2_592_000.0),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        ("20", 20.0),
        (" 20s ", 20.0),
        ("0", 0.0),
        (20, 20.0),
        (0, 0.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(value, seconds):
    result = parse_duration(value)
    assert result == pytest.approx(seconds) and isinstance(result, float)


@pytest.mark.parametrize("value", ["5 parsecs", "", "s", "ms", "-1", "-1s", "1e3", "20sec", "1h30m", "ten", -1, -0.5, True, False, None, [20], {"s": 1}])
def test_parse_duration_refuses(value):
    with pytest.raises(ValueError, match="a duration: seconds as a number, or a string such as 250ms, 20s, 15m, 1h, 30d"):
        parse_duration(value)


# --- defaults and a full file ---


def test_defaults(tmp_path):
    config = load(tmp_path)
    assert as_dict(config) == DEFAULTS
    assert set(SCHEMA) == set(DEFAULTS) and all(set(SCHEMA[s]) == set(DEFAULTS[s]) for s in SCHEMA)
    assert config.state_dir == tmp_path / "state"
    assert config.state_path(config["storage"]["path"]) == tmp_path / "state" / "agentwatch.db"
    assert config.state_path(config["auth"]["token_file"]) == tmp_path / "state" / "token"


FULL = """
[server]
listen = ["127.0.0.1:9001", "[::1]:9002", "unix:/run/agentwatch.sock"]
max_frame_bytes = 65536
ping_interval = "5s"
ping_timeout = "250ms"
hello_timeout = 3
drain_timeout = "1m"
rate_limit = 12.5
rate_burst = 100
max_connections = 50
allowed_hosts = ["agents.example.internal"]

[auth]
enabled = false
token_file = "/etc/agentwatch/token"
allowed_origins = ["http://localhost:3000", "https://example.org"]

[storage]
path = "data/events.sqlite"
synchronous = "normal"
queue_bytes = "16KiB"

[plugins]
disable = ["claude-stream-json", "some-plugin"]
[watch]
backlog = 50
backlog_bytes = "1MiB"
max_bytes = "48MiB"
[attention]
git_check_interval = "2m"
[stall]
threshold = "20m"
tool_threshold = "90m"
[stall.agents]
"build-bot" = "2h"
[stall.labels]
"project=monorepo" = { threshold = "30m", tool_threshold = "3h" }
[retention]
max_age = "7d"
max_events_per_agent = 1000
max_sessions_per_agent = 20
interval = "15m"
batch_events = 250

[log]
level = "debug"
format = "json"
events = true
[metrics]
listen = "127.0.0.1:9717"
"""


def test_a_file_with_every_documented_key(tmp_path):
    config = load(tmp_path, FULL)
    assert as_dict(config) == {
        "server": {
            "listen": ["127.0.0.1:9001", "[::1]:9002", "unix:/run/agentwatch.sock"],
            "max_frame_bytes": 65536,
            "ping_interval": 5.0,
            "ping_timeout": 0.25,
            "hello_timeout": 3.0,
            "drain_timeout": 60.0,
            "rate_limit": 12.5,
            "rate_burst": 100,
            "max_connections": 50,
            "allowed_hosts": ["agents.example.internal"],
        },
        "auth": {"enabled": False, "token_file": "/etc/agentwatch/token", "allowed_origins": ["http://localhost:3000", "https://example.org"]},
        "storage": {"path": "data/events.sqlite", "synchronous": "normal", "queue_bytes": 16384},
        "plugins": {"disable": ["claude-stream-json", "some-plugin"]},
        "watch": {"backlog": 50, "backlog_bytes": 1 << 20, "max_bytes": 48 << 20},
        "attention": {"git_check_interval": 120.0},
        "stall": {
            "threshold": 1200.0,
            "tool_threshold": 5400.0,
            "agents": {"build-bot": {"threshold": 7200.0}},
            "labels": {"project=monorepo": {"threshold": 1800.0, "tool_threshold": 10800.0}},
        },
        "retention": {"max_age": 604800.0, "max_events_per_agent": 1000, "max_sessions_per_agent": 20, "interval": 900.0, "batch_events": 250},
        "log": {"level": "debug", "format": "json", "events": True},
        "metrics": {"listen": "127.0.0.1:9717"},
    }
    # relative paths are under the state directory, absolute ones are kept
    assert config.state_path(config["storage"]["path"]) == tmp_path / "state" / "data" / "events.sqlite"
    assert config.state_path(config["auth"]["token_file"]) == Path("/etc/agentwatch/token")


def test_a_partial_file_keeps_the_other_defaults(tmp_path):
    config = load(tmp_path, '[log]\nlevel = "warning"\n[server]\nrate_limit = 5\n')
    expected = {section: dict(values) for section, values in DEFAULTS.items()}
    expected["log"]["level"] = "warning"
    expected["server"]["rate_limit"] = 5.0
    assert as_dict(config) == expected


def test_the_readme_example_is_valid(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    toml = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    assert as_dict(load(tmp_path, toml)) == DEFAULTS, "the README documents the defaults"


def test_an_empty_file_is_the_defaults(tmp_path):
    assert as_dict(load(tmp_path, "")) == DEFAULTS


# --- unknown names ---


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('[server]\nlistn = ["127.0.0.1:1"]\n', ["unknown key", "[server]", "'listn'", "did you mean 'listen'?", "known:", "ping_interval"]),
        ("[server]\nping_intervall = 5\n", ["'ping_intervall'", "did you mean 'ping_interval'?"]),
        ('[auth]\ntoken = "x"\n', ["[auth]", "'token'", "token_file"]),
        ('[sever]\nlisten = ["127.0.0.1:1"]\n', ["unknown section", "'sever'", "did you mean 'server'?", "known: attention, auth, log, metrics, plugins, retention, server, stall, storage"]),
        ('[logging]\nlevel = "info"\n', ["unknown section", "'logging'", "known:"]),
        ('listen = ["127.0.0.1:1"]\n', ["unknown section", "'listen'"]),
        ("[server.tls]\ncert = 1\n", ["[server]", "'tls'"]),
        ("[storage]\nretention = \"30d\"\n", ["[storage]", "'retention'"]),
    ],
)
def test_unknown_names_in_the_file(tmp_path, toml, words):
    message = config_error(tmp_path, toml)
    for word in words:
        assert word in message, (word, message)
    assert str(tmp_path / "agentwatch.toml") in message, "the message says which file"


def test_a_section_that_is_not_a_table(tmp_path):
    message = config_error(tmp_path, 'log = "debug"\n')
    assert "log" in message and "must be a table" in message and "[log]" in message


def test_unknown_key_in_the_environment(tmp_path):
    message = config_error(tmp_path, environ={"AGENTWATCH_SERVER_LISTN": "127.0.0.1:1"})
    assert "'listn'" in message and "did you mean 'listen'?" in message and "AGENTWATCH_SERVER_LISTN" in message


# --- bad values ---


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('[log]\nlevel = "loud"\n', ["[log] level", "'loud'", "one of debug, info, warning, error"]),
        ('[log]\nformat = "xml"\n', ["[log] format", "'xml'", "one of auto, json, console"]),
        ("[server]\nmax_frame_bytes = 0\n", ["[server] max_frame_bytes", "= 0", "positive whole number"]),
        ("[server]\nmax_frame_bytes = -5\n", ["max_frame_bytes", "positive whole number"]),
        ("[server]\nmax_frame_bytes = 1.5\n", ["max_frame_bytes", "positive whole number"]),
        ("[server]\nmax_frame_bytes = true\n", ["max_frame_bytes", "positive whole number"]),
        ("[server]\nmax_frame_bytes = 16383\n", ["max_frame_bytes", "= 16383", "at least 16KiB"]),
        ('[server]\nlisten = ["nohost"]\n', ["[server] listen", "'nohost'", "HOST:PORT", "unix:/"]),
        ('[server]\nlisten = ["127.0.0.1:99999"]\n', ["listen", "'127.0.0.1:99999'", "HOST:PORT"]),
        ('[server]\nlisten = ["127.0.0.1:"]\n', ["listen", "HOST:PORT"]),
        ('[server]\nlisten = ["unix:relative.sock"]\n', ["listen", "absolute path"]),
        ("[server]\nlisten = []\n", ["listen", "at least one address"]),
        ("[server]\nlisten = [1]\n", ["listen", "list of strings"]),
        ('[server]\nping_interval = "5 parsecs"\n', ["[server] ping_interval", "'5 parsecs'", "250ms, 20s, 15m, 1h, 30d"]),
        ("[server]\ndrain_timeout = -1\n", ["drain_timeout", "-1", "a duration"]),
        ("[server]\nhello_timeout = true\n", ["hello_timeout", "a duration"]),
        ("[server]\nrate_limit = -1\n", ["rate_limit", "0 or more"]),
        ('[server]\nrate_limit = "fast"\n', ["rate_limit", "'fast'", "0 or more"]),
        ("[server]\nrate_burst = 0\n", ["rate_burst", "positive whole number"]),
        ('[auth]\nenabled = "maybe"\n', ["[auth] enabled", "'maybe'", "true or false"]),
        ("[auth]\nenabled = 1\n", ["[auth] enabled", "true or false"]),
        ('[auth]\ntoken_file = ""\n', ["token_file", "non-empty string"]),
        ("[auth]\nallowed_origins = [1]\n", ["allowed_origins", "list of strings"]),
        ('[storage]\nsynchronous = "off"\n', ["[storage] synchronous", "'off'", "one of full, normal"]),
        ("[storage]\nqueue_bytes = 0\n", ["queue_bytes", "a size in bytes"]),
        ('[storage]\nqueue_bytes = "lots"\n', ["queue_bytes", "'lots'", "64MiB"]),
        ('[server]\nmax_frame_bytes = "1 parsec"\n', ["max_frame_bytes", "a size in bytes"]),
        ("[storage]\npath = 3\n", ["[storage] path", "non-empty string"]),
        ('[plugins]\ndisable = [""]\n', ["[plugins] disable", "list of strings"]),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(tmp_path, toml, words):
    message = config_error(tmp_path, toml)
    assert "is not allowed: expected" in message
    for word in words:
        assert word in message, (word, message)
    assert str(tmp_path / "agentwatch.toml") in message


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"AGENTWATCH_SERVER_PING_INTERVAL": "soon"}, ["[server] ping_interval", "'soon'", "environment AGENTWATCH_SERVER_PING_INTERVAL", "30d"]),
        ({"AGENTWATCH_SERVER_MAX_FRAME_BYTES": "big"}, ["max_frame_bytes", "'big'", "positive whole number"]),
        ({"AGENTWATCH_AUTH_ENABLED": "maybe"}, ["[auth] enabled", "true or false"]),
        ({"AGENTWATCH_LOG_LEVEL": "loud"}, ["[log] level", "one of debug"]),
        ({"AGENTWATCH_LISTEN": "nohost"}, ["listen", "'nohost'", "environment AGENTWATCH_LISTEN", "HOST:PORT"]),
        ({"AGENTWATCH_NO_AUTH": "maybe"}, ["AGENTWATCH_NO_AUTH", "'maybe'", "true or false"]),
    ],
)
def test_bad_values_in_the_environment(tmp_path, environ, words):
    message = config_error(tmp_path, environ=environ)
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"log_level": "loud"}, ["[log] level", "--log-level", "one of debug, info, warning, error"]),
        ({"log_format": "xml"}, ["[log] format", "--log-format", "one of auto, json, console"]),
        ({"listen": ["nohost"]}, ["[server] listen", "--listen", "HOST:PORT"]),
    ],
)
def test_bad_flags(tmp_path, overrides, words):
    message = config_error(tmp_path, **overrides)
    for word in words:
        assert word in message, (word, message)


# --- unreadable files ---


def test_invalid_toml(tmp_path):
    message = config_error(tmp_path, "[server\nlisten = 1\n")
    assert "is not valid TOML" in message and str(tmp_path / "agentwatch.toml") in message
    assert "line 1" in message, "the parser's position is kept"
    message = config_error(tmp_path, "[log]\nlevel = info\n")
    assert "is not valid TOML" in message and "line 2" in message


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.toml"
    message = config_error(tmp_path, config_file=missing)
    assert str(missing) in message and "does not exist" in message and "--config" in message
    message = config_error(tmp_path, environ={"AGENTWATCH_CONFIG": str(missing)})
    assert str(missing) in message and "does not exist" in message


def test_unreadable_files(tmp_path):
    message = config_error(tmp_path, config_file=tmp_path)  # a directory
    assert "cannot read configuration file" in message and str(tmp_path) in message
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[server]\n")
    message = config_error(tmp_path, config_file=binary)
    assert "cannot read configuration file" in message and str(binary) in message


# --- precedence ---


def test_precedence_defaults_file_environment_flags(tmp_path):
    toml = '[server]\nlisten = ["127.0.0.1:1001"]\nping_interval = "1s"\nrate_burst = 7\n[log]\nlevel = "warning"\nformat = "console"\n'
    config = load(tmp_path, toml)
    assert config["server"]["listen"] == ["127.0.0.1:1001"] and config["server"]["ping_interval"] == 1.0
    assert config["server"]["ping_timeout"] == 20.0, "a key the file does not set keeps its default"

    environ = {"AGENTWATCH_SERVER_LISTEN": "127.0.0.1:2002", "AGENTWATCH_SERVER_PING_INTERVAL": "2s", "AGENTWATCH_LOG_LEVEL": "error"}
    config = load(tmp_path, toml, environ)
    assert config["server"]["listen"] == ["127.0.0.1:2002"]
    assert config["server"]["ping_interval"] == 2.0 and config["log"]["level"] == "error"
    assert config["server"]["rate_burst"] == 7 and config["log"]["format"] == "console", "the file still counts"

    environ["AGENTWATCH_LISTEN"] = "127.0.0.1:3003, unix:/tmp/x.sock"
    config = load(tmp_path, toml, environ)
    assert config["server"]["listen"] == ["127.0.0.1:3003", "unix:/tmp/x.sock"], "AGENTWATCH_LISTEN mirrors --listen"

    config = load(tmp_path, toml, environ, listen=["127.0.0.1:4004", "127.0.0.1:4005"], log_level="debug", log_format="json")
    assert config["server"]["listen"] == ["127.0.0.1:4004", "127.0.0.1:4005"]
    assert (config["log"]["level"], config["log"]["format"]) == ("debug", "json")
    assert config["server"]["ping_interval"] == 2.0


def test_environment_values_are_parsed_like_the_file(tmp_path):
    config = load(
        tmp_path,
        environ={
            "AGENTWATCH_SERVER_MAX_FRAME_BYTES": "16384",
            "AGENTWATCH_SERVER_HELLO_TIMEOUT": "250ms",
            "AGENTWATCH_SERVER_RATE_LIMIT": "2.5",
            "AGENTWATCH_AUTH_ENABLED": "off",
            "AGENTWATCH_AUTH_TOKEN_FILE": "/secret/t",
            "AGENTWATCH_AUTH_ALLOWED_ORIGINS": "http://a, http://b",
            "AGENTWATCH_STORAGE_SYNCHRONOUS": "NORMAL",
            "AGENTWATCH_PLUGINS_DISABLE": "a,b",
            "AGENTWATCH_LOG_FORMAT": "json",
            "UNRELATED": "x",
        },
    )
    assert config["server"]["max_frame_bytes"] == 16384 and config["server"]["hello_timeout"] == 0.25
    assert config["server"]["rate_limit"] == 2.5
    assert config["auth"] == {"enabled": False, "token_file": "/secret/t", "allowed_origins": ["http://a", "http://b"]}
    assert config["storage"]["synchronous"] == "normal"
    assert config["plugins"]["disable"] == ["a", "b"] and config["log"]["format"] == "json"


def test_config_file_from_the_environment_and_the_flag_wins(tmp_path):
    env_file = tmp_path / "env.toml"
    env_file.write_text('[log]\nlevel = "error"\n')
    flag_file = tmp_path / "flag.toml"
    flag_file.write_text('[log]\nlevel = "debug"\n')
    assert load(tmp_path, environ={"AGENTWATCH_CONFIG": str(env_file)})["log"]["level"] == "error"
    assert load(tmp_path, environ={"AGENTWATCH_CONFIG": str(env_file)}, config_file=flag_file)["log"]["level"] == "debug"
    # the environment file's bad value is never read when the flag names another file
    env_file.write_text('[log]\nlevel = "loud"\n')
    assert load(tmp_path, environ={"AGENTWATCH_CONFIG": str(env_file)}, config_file=flag_file)["log"]["level"] == "debug"


def test_no_auth(tmp_path):
    assert load(tmp_path)["auth"]["enabled"] is True
    assert load(tmp_path, no_auth=True)["auth"]["enabled"] is False
    assert load(tmp_path, environ={"AGENTWATCH_AUTH_ENABLED": "true"}, no_auth=True)["auth"]["enabled"] is False
    assert load(tmp_path, "[auth]\nenabled = true\n", no_auth=True)["auth"]["enabled"] is False
    for value in ("1", "true", "yes", "on", "TRUE"):
        assert load(tmp_path, environ={"AGENTWATCH_NO_AUTH": value})["auth"]["enabled"] is False, value
    for value in ("0", "false", "no", "off"):
        assert load(tmp_path, environ={"AGENTWATCH_NO_AUTH": value})["auth"]["enabled"] is True, value
    assert load(tmp_path, environ={"AGENTWATCH_NO_AUTH": ""})["auth"]["enabled"] is True
    # the flag beats its environment twin
    assert load(tmp_path, environ={"AGENTWATCH_NO_AUTH": "false"}, no_auth=True)["auth"]["enabled"] is False


def test_state_dir_precedence(tmp_path):
    environ = {"STATE_DIRECTORY": str(tmp_path / "systemd"), "XDG_STATE_HOME": str(tmp_path / "xdg")}
    assert load_config(Overrides(), environ=environ).state_dir == tmp_path / "systemd"
    environ["AGENTWATCH_STATE_DIR"] = str(tmp_path / "env")
    assert load_config(Overrides(), environ=environ).state_dir == tmp_path / "env"
    assert load_config(Overrides(state_dir=tmp_path / "flag"), environ=environ).state_dir == tmp_path / "flag"


def test_default_state_dir(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    state = lambda environ: load_config(Overrides(), environ=environ).state_dir  # noqa: E731
    assert state({}) == home / ".local" / "state" / "agentwatch"
    assert state({"XDG_STATE_HOME": str(tmp_path / "xdg")}) == tmp_path / "xdg" / "agentwatch"
    assert state({"XDG_STATE_HOME": ""}) == home / ".local" / "state" / "agentwatch", "empty means unset"
    assert state({"STATE_DIRECTORY": "/var/lib/aw", "XDG_STATE_HOME": str(tmp_path / "xdg")}) == Path("/var/lib/aw")
    assert state({"STATE_DIRECTORY": "/var/lib/aw:/var/lib/other"}) == Path("/var/lib/aw"), "systemd: the first of several"
    assert state({"STATE_DIRECTORY": "", "XDG_STATE_HOME": str(tmp_path / "xdg")}) == tmp_path / "xdg" / "agentwatch"
    # ~ is expanded in an explicit state dir
    assert state({"AGENTWATCH_STATE_DIR": "~/aw"}) == home / "aw"
    assert load_config(Overrides(state_dir=Path("~/flag")), environ={}).state_dir == home / "flag"


def test_the_process_environment_is_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTWATCH_LOG_LEVEL", "error")
    monkeypatch.setenv("AGENTWATCH_STATE_DIR", str(tmp_path / "from-env"))
    config = load_config(Overrides())
    assert config["log"]["level"] == "error" and config.state_dir == tmp_path / "from-env"


# --- `agentwatch serve` start-up, as a real process ---

EXIT_CONFIG = 2


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_") and k not in ("STATE_DIRECTORY",)}
    env.update(extra)
    return env


def serve(state_dir, *args, env=None, timeout=30):
    return subprocess.run(
        [sys.executable, "-m", "agentwatch", "serve", "--state-dir", str(state_dir), *args],
        capture_output=True, text=True, timeout=timeout, env=env or clean_env(), stdin=subprocess.DEVNULL,
    )


def assert_one_clear_line(result, *words):
    assert result.returncode == EXIT_CONFIG, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("agentwatch: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]



@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('[server]\nlistn = ["127.0.0.1:0"]\n', ["configuration error", "'listn'", "did you mean 'listen'?"]),
        ('[log]\nlevel = "loud"\n', ["configuration error", "[log] level", "'loud'", "one of debug, info, warning, error"]),
        ("[server\n", ["configuration error", "not valid TOML"]),
    ],
)
def test_serve_with_a_bad_config_file_exits_2_with_one_line(tmp_path, toml, words):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    result = serve(tmp_path / "state", "--config", str(path), "--listen", "127.0.0.1:0")
    assert_one_clear_line(result, *words)
    assert result.stdout == "", "nothing is logged before the configuration is valid"
    assert not (tmp_path / "state").exists(), "nothing is created when the configuration is refused"


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--listen", "nohost"], {}, ["configuration error", "--listen", "'nohost'", "HOST:PORT"]),
        (["--log-level", "loud"], {}, ["configuration error", "--log-level", "one of debug"]),
        (["--listen", "127.0.0.1:0"], {"AGENTWATCH_SERVER_PING_INTERVAL": "soon"}, ["AGENTWATCH_SERVER_PING_INTERVAL", "'soon'"]),
        (["--listen", "127.0.0.1:0"], {"AGENTWATCH_CONFIG": "/nonexistent/agentwatch.toml"}, ["/nonexistent/agentwatch.toml", "does not exist"]),
        (["--listen", "127.0.0.1:0"], {"AGENTWATCH_PLUGINS_DISABLE": "no-such-plugin"}, ["cannot start", "'no-such-plugin'", "known plugins"]),
    ],
)
def test_serve_with_bad_flags_or_environment_exits_2(tmp_path, args, env, words):
    assert_one_clear_line(serve(tmp_path / "state", *args, env=clean_env(**env)), *words)


def test_serve_on_an_address_in_use_exits_2(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(tmp_path / "state", "--listen", f"127.0.0.1:{port}")
    line = assert_one_clear_line(result, "cannot start", f"cannot listen on 127.0.0.1:{port}", "--listen")
    assert "in use" in line.lower(), line


def snapshot(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir() if p.name.startswith("agentwatch.db")}


def test_serve_refuses_a_foreign_sqlite_database_and_leaves_it_untouched(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = state / "agentwatch.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        conn.execute("INSERT INTO invoices(amount) VALUES (12.5), (99)")
    conn.close()
    before, mtime = snapshot(state), db.stat().st_mtime_ns
    assert list(before) == ["agentwatch.db"]
    result = serve(state, "--listen", "127.0.0.1:0")
    line = assert_one_clear_line(result, "cannot start", str(db), "another program", "will not touch it")
    assert "storage.path" in line
    assert snapshot(state) == before, "the file is byte-for-byte unchanged and no -wal/-shm/-journal was left"
    assert db.stat().st_mtime_ns == mtime
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM invoices").fetchone() == (2,)
    conn.close()


def test_serve_refuses_a_file_of_random_bytes_and_leaves_it_untouched(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = state / "agentwatch.db"
    junk = os.urandom(8192)
    assert not junk.startswith(b"SQLite format 3")
    db.write_bytes(junk)
    result = serve(state, "--listen", "127.0.0.1:0")
    assert_one_clear_line(result, "cannot start", str(db), "not a usable SQLite database", "storage.path")
    assert db.read_bytes() == junk
    assert snapshot(state) == {"agentwatch.db": hashlib.sha256(junk).hexdigest()}


def test_serve_refuses_a_storage_path_in_the_config_that_is_foreign(tmp_path):
    """The refusal names the path the configuration chose, not the default one."""
    state = tmp_path / "state"
    state.mkdir()
    db = tmp_path / "elsewhere.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    before = db.read_bytes()
    result = serve(state, "--listen", "127.0.0.1:0", env=clean_env(AGENTWATCH_STORAGE_PATH=str(db)))
    assert_one_clear_line(result, "cannot start", str(db), "another program")
    assert db.read_bytes() == before




@pytest.mark.parametrize(
    "kind", ["tcp", "unix"]
)
async def test_serve_answers_and_stops_on_sigterm_with_exit_0(tmp_path, kind):
    socket_dir = Path(tempfile.mkdtemp(prefix="aw-", dir="/tmp"))  # AF_UNIX paths must stay short
    sock_path = socket_dir / "s.sock"
    listen = f"unix:{sock_path}" if kind == "unix" else "127.0.0.1:0"
    state = tmp_path / "state"
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"

    def output():
        return f"exit {proc.poll()}\nstdout:\n{stdout_path.read_text()}\nstderr:\n{stderr_path.read_text()}"

    try:
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agentwatch", "serve", "--state-dir", str(state), "--listen", listen],
                stdout=out, stderr=err, env=clean_env(), stdin=subprocess.DEVNULL,
            )
        try:
            # stdout is not a terminal: log format "auto" writes JSON lines
            ready = None
            with trio.fail_after(30):
                while ready is None:
                    for line in stdout_path.read_text().splitlines():
                        record = json.loads(line)
                        if record.get("event") == "ready":
                            ready = record
                    assert proc.poll() is None, output()
                    await trio.sleep(0.02)
            assert ready["pid"] == proc.pid
            [address] = ready["addresses"]
            if kind == "unix":
                assert address == listen and sock_path.is_socket()
            else:
                assert address.startswith("127.0.0.1:") and int(address.rsplit(":", 1)[1]) > 0

            token = (state / "token").read_text().strip()
            headers = [(b"Authorization", f"Bearer {token}".encode())]
            async with trio.open_nursery() as nursery:
                try:
                    if kind == "unix":
                        stream = await trio.open_unix_socket(str(sock_path))
                    else:
                        host, port = address.rsplit(":", 1)
                        stream = await trio.open_tcp_stream(host, int(port))
                except OSError as exc:
                    pytest.fail(f"cannot connect to {address}: {exc}\n{output()}")
                ws = await wrap_client_stream(nursery, stream, "localhost", "/v1/watch", extra_headers=headers)
                await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}))
                with trio.fail_after(10):
                    reply = json.loads(await ws.get_message())
                assert reply["id"] == 1 and reply["result"]["listen"] == [address]
                await ws.aclose()

            assert proc.poll() is None, output()
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                await trio.sleep(0.02)
            assert proc.returncode == 0, output()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        events = [json.loads(line).get("event") for line in stdout_path.read_text().splitlines()]
        assert "signal" in events and events[-1] == "stopped"
        assert stderr_path.read_text() == ""
        assert not sock_path.exists(), "the daemon removes its socket file when it stops"
    finally:
        sock_path.unlink(missing_ok=True)
        socket_dir.rmdir()


def test_a_misspelled_environment_section_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"AGENTWATCH_SERVR_PING_INTERVAL.*AGENTWATCH_SERVER_<KEY>"):
        load(tmp_path, environ={"AGENTWATCH_SERVR_PING_INTERVAL": "5s"})
    assert load(tmp_path, environ={"AGENTWATCH_URL": "ws://x", "AGENTWATCH_TOKEN": "t"})["auth"]["enabled"] is True


@pytest.mark.parametrize("key", ["ping_interval", "ping_timeout", "hello_timeout", "drain_timeout"])
def test_timers_must_be_above_zero(tmp_path, key):
    message = config_error(tmp_path, f"[server]\n{key} = 0\n")
    assert key in message and "above zero" in message


def test_the_token_file_appears_whole_and_alone(tmp_path):
    from agentwatch.auth import ensure_token

    path = tmp_path / "state" / "token"
    token = ensure_token(path)
    assert ensure_token(path) == token and len(token) >= 40
    assert sorted(p.name for p in path.parent.iterdir()) == ["token"], "no partial file left behind"
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('[stall.agents]\n"a" = "soon"\n', ["[stall] agents", "for 'a'", "a duration"]),
        ('[stall.labels]\n"p=x" = { threshold = "1m", wait = "2m" }\n', ["[stall] labels", "not wait"]),
        ('[stall]\nagents = "a=1m"\n', ["[stall] agents", "a table"]),
    ],
)
def test_bad_stall_overrides_say_what_is_wrong(tmp_path, toml, words):
    message = config_error(tmp_path, toml)
    for word in words:
        assert word in message, (word, message)


def test_plugin_tables_are_that_plugins_settings(tmp_path):
    config = load(tmp_path, '[plugins]\ndisable = ["stall"]\n[plugins.my-plugin]\nlimit = 3\nnames = ["a"]\n')
    assert config["plugins"]["disable"] == ["stall"]
    assert config.plugin("my-plugin") == {"limit": 3, "names": ["a"]} and config.plugin("other") == {}
    assert "unknown key in [plugins]" in config_error(tmp_path, "[plugins]\nlimit = 3\n")


def test_systemds_configuration_directory_holds_the_default_file(tmp_path):
    directory = tmp_path / "etc"
    directory.mkdir()
    assert load(tmp_path, environ={"CONFIGURATION_DIRECTORY": str(directory)}).file is None, "no file there: defaults"
    (directory / "agentwatch.toml").write_text('[log]\nlevel = "error"\n')
    config = load(tmp_path, environ={"CONFIGURATION_DIRECTORY": str(directory)})
    assert config["log"]["level"] == "error" and config.file == directory / "agentwatch.toml"
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('[log]\nlevel = "debug"\n')
    environ = {"CONFIGURATION_DIRECTORY": str(directory), "AGENTWATCH_CONFIG": str(explicit)}
    assert load(tmp_path, environ=environ)["log"]["level"] == "debug", "AGENTWATCH_CONFIG comes first"
