"""Configuration: defaults, then the TOML file, then ``AGENTWATCH_*`` variables, then flags.

Every key is declared once in :data:`SCHEMA` with its parser; an unknown key or a bad value
raises :class:`ConfigError` with a message naming the key and what is allowed.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentwatch.addresses import is_loopback, parse_address
from agentwatch.paths import state_dir_from


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and what is allowed."""


# --- value parsers: each takes the raw value (TOML type or an environment string) ---

# Matched against the stripped value: a \s* on both sides of an optional unit backtracks in quadratic time.
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string with a unit: ``250ms``, ``20s``, ``15m``, ``1h``, ``30d``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError("a duration: seconds as a number, or a string such as 250ms, 20s, 15m, 1h, 30d")


_SIZE = re.compile(r"(\d+)\s*(b|kib|mib|gib|kb|mb|gb)?", re.IGNORECASE)
_UNIT_BYTES = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10**3, "mb": 10**6, "gb": 10**9, None: 1}


def parse_size(value: Any) -> int:
    """Bytes from a whole number or a string with a unit: ``512KiB``, ``64MiB``, ``1GiB``, ``10MB``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        unit = match.group(2).lower() if match.group(2) else None
        if (size := int(match.group(1)) * _UNIT_BYTES[unit]) > 0:
            return size
    raise ValueError("a size in bytes: a positive whole number, or a string such as 512KiB, 64MiB, 1GiB")


def _size_at_least(low: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if (size := parse_size(value)) >= low:
            return size
        raise ValueError(f"at least {low >> 10}KiB ({low} bytes): smaller would not carry the protocol's own frames")

    return parse


def _positive_duration(value: Any) -> float:
    if (seconds := parse_duration(value)) > 0:
        return seconds
    raise ValueError("a duration above zero: seconds as a number, or a string such as 250ms, 20s, 15m")


def _whole_number(low: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= low:
            return value
        raise ValueError("a positive whole number" if low else "a whole number of 0 or more (0 turns the limit off)")

    return parse


def _non_negative_number(value: Any) -> float:
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        number = None
    if isinstance(number, int | float) and not isinstance(number, bool) and number >= 0:
        return float(number)
    raise ValueError("a number of 0 or more (0 turns it off)")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        return value.lower() in {"1", "true", "yes", "on"}
    raise ValueError("true or false")


def _bool_env(value: str) -> bool:
    try:
        return _bool(value)
    except ValueError:
        raise ConfigError(f"environment AGENTWATCH_NO_AUTH = {value!r} is not allowed: expected true or false") from None


def _string(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    raise ValueError("a non-empty string")


def _string_list(value: Any) -> list[str]:
    if isinstance(value, str):  # environment: comma-separated
        value = [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
        return list(value)
    raise ValueError("a list of strings (in the environment: comma-separated)")


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if isinstance(value, str) and value.lower() in allowed:
            return value.lower()
        raise ValueError("one of " + ", ".join(allowed))

    return parse


def _stall_overrides(value: Any) -> dict[str, dict[str, float]]:
    """``{name: "30m"}`` or ``{name: {threshold = "30m", tool_threshold = "2h"}}`` (TOML tables only)."""
    if not isinstance(value, dict):
        raise ValueError('a table, e.g. [stall.agents] "my-agent" = "30m" (set it in the configuration file)')
    overrides: dict[str, dict[str, float]] = {}
    for name, setting in value.items():
        if not isinstance(setting, dict):
            setting = {"threshold": setting}
        if unknown := set(setting) - {"threshold", "tool_threshold"}:
            raise ValueError(f"threshold and tool_threshold for {name!r}, not {', '.join(sorted(unknown))}")
        try:
            overrides[name] = {key: _positive_duration(raw) for key, raw in setting.items()}
        except ValueError as exc:
            raise ValueError(f"for {name!r}: {exc}") from None
    return overrides


def _loopback_or_off(value: Any) -> str:
    """One loopback address, or "" (off): what the metrics endpoint listens on."""
    if value == "":
        return ""
    text = _string(value)
    if not is_loopback(parse_address(text)):
        raise ValueError(f"a loopback address (127.0.0.1:PORT, [::1]:PORT or unix:/path), or \"\" for off; {text} is "
                         "reachable from other machines: put a proxy with authentication in front instead")
    return text


def _host_list(value: Any) -> list[str]:
    """Host names (``dashboard.example``), each without a port or scheme."""
    names = _string_list(value)
    for name in names:
        if any(char in name for char in "/@ \t") or name.count(":") == 1:
            raise ValueError(f"host names such as agents.example.internal, without scheme, port or path; got {name!r}")
    return names


def _listen_list(value: Any) -> list[str]:
    addresses = _string_list(value)
    if not addresses:
        raise ValueError("at least one address: HOST:PORT or unix:/path")
    for address in addresses:
        parse_address(address)
    return addresses


# --- the schema: section -> key -> (parser, default) ---

SCHEMA: dict[str, dict[str, tuple[Callable[[Any], Any], Any]]] = {
    "server": {
        "listen": (_listen_list, ["127.0.0.1:7717"]),
        "max_frame_bytes": (_size_at_least(16 << 10), 1_048_576),
        "ping_interval": (_positive_duration, 20.0),
        "ping_timeout": (_positive_duration, 20.0),
        "hello_timeout": (_positive_duration, 10.0),
        "drain_timeout": (_positive_duration, 10.0),
        "rate_limit": (_non_negative_number, 0.0),
        "rate_burst": (_whole_number(1), 2000),
        "max_connections": (_whole_number(1), 4096),  # sockets at once; more get HTTP 503
        "allowed_hosts": (_host_list, []),  # Host names HTTP requests may give besides IPs, localhost, listen hosts
    },
    "auth": {
        "enabled": (_bool, True),
        "token_file": (_string, "token"),
        "allowed_origins": (_string_list, []),
    },
    "storage": {
        "path": (_string, "agentwatch.db"),
        "synchronous": (_choice("full", "normal"), "full"),
        "queue_bytes": (parse_size, 8 << 20),
    },
    "plugins": {
        "disable": (_string_list, []),
    },
    "watch": {
        "backlog": (_whole_number(1), 1000),  # notifications a subscriber may fall behind by
        "backlog_bytes": (parse_size, 16 << 20),
        "max_bytes": (parse_size, 32 << 20),  # replies and notifications held for all watchers together
    },
    "attention": {
        "git_check_interval": (_positive_duration, 60.0),
    },
    "stall": {
        "threshold": (_positive_duration, 15 * 60.0),
        "tool_threshold": (_positive_duration, 60 * 60.0),
        "agents": (_stall_overrides, {}),  # by agent id
        "labels": (_stall_overrides, {}),  # by "label=value"
    },
    "retention": {
        "max_age": (parse_duration, 30 * 86400.0),  # 0: no age limit
        "max_events_per_agent": (_whole_number(0), 50_000),  # 0: unlimited
        "max_sessions_per_agent": (_whole_number(0), 0),  # 0: unlimited
        "interval": (_positive_duration, 3600.0),
        "batch_events": (_whole_number(1), 1000),  # events removed per transaction
    },
    "log": {
        "level": (_choice("debug", "info", "warning", "error"), "info"),
        "format": (_choice("auto", "json", "console"), "auto"),
        "events": (_bool, False),  # one line per stored event (logger agentwatch.events)
    },
    "metrics": {
        "listen": (_loopback_or_off, ""),  # Prometheus text on this loopback address; "" is off
    },
}


@dataclass(frozen=True, slots=True)
class Config:
    """The resolved configuration of one daemon; ``values[section][key]`` holds parsed values."""

    state_dir: Path
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``[plugins.NAME]`` tables of the configuration file, by plugin name, as written.
    plugin_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    file: Path | None = None  # the configuration file read, if any

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        return self.values[section]

    def plugin(self, name: str) -> Mapping[str, Any]:
        """The settings table ``[plugins.NAME]`` of plugin ``name`` (empty when there is none)."""
        return self.plugin_settings.get(name, {})

    def state_path(self, relative: str) -> Path:
        """A path from the configuration, relative to the state directory unless absolute."""
        return self.state_dir / Path(relative).expanduser()


def _unknown(kind: str, name: str, known: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(name, known, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"unknown {kind} {name!r}{did_you_mean}; known: {', '.join(known)}")


def _set(values: dict[str, dict[str, Any]], section: str, key: str, raw: Any, origin: str) -> None:
    keys = SCHEMA[section]
    if key not in keys:
        raise _unknown(f"key in [{section}] ({origin})", key, sorted(keys))
    parser = keys[key][0]
    try:
        values[section][key] = parser(raw)
    except ValueError as exc:
        raise ConfigError(f"[{section}] {key} = {raw!r} ({origin}) is not allowed: expected {exc}") from None


def _apply_file(values: dict[str, dict[str, Any]], plugin_settings: dict[str, Any], path: Path) -> None:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist; pass an existing file to --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    for section, table in document.items():
        if section not in SCHEMA:
            raise _unknown(f"section in {path}", section, sorted(SCHEMA))
        if not isinstance(table, dict):
            raise ConfigError(f"{section} in {path} must be a table: write [{section}] and its keys below it")
        for key, raw in table.items():
            if section == "plugins" and isinstance(raw, dict):
                plugin_settings[key] = raw  # [plugins.NAME]: that plugin's own settings
            else:
                _set(values, section, key, raw, str(path))


#: ``AGENTWATCH_*`` variables that are not ``<SECTION>_<KEY>`` settings.
OTHER_VARIABLES = frozenset({"AGENTWATCH_CONFIG", "AGENTWATCH_LISTEN", "AGENTWATCH_STATE_DIR", "AGENTWATCH_NO_AUTH",
                             "AGENTWATCH_URL", "AGENTWATCH_TOKEN", "AGENTWATCH_AGENT_ID"})


def _apply_environment(values: dict[str, dict[str, Any]], environ: Mapping[str, str]) -> None:
    """``AGENTWATCH_<SECTION>_<KEY>``: e.g. ``AGENTWATCH_SERVER_PING_INTERVAL=5s``."""
    for name, raw in environ.items():
        if not name.startswith("AGENTWATCH_") or name in OTHER_VARIABLES:
            continue
        section, _, key = name[len("AGENTWATCH_") :].lower().partition("_")
        if section not in SCHEMA or not key:
            known = [f"AGENTWATCH_{s.upper()}_<KEY>" for s in SCHEMA] + sorted(OTHER_VARIABLES)
            raise _unknown("environment variable", name, known)
        _set(values, section, key, raw, f"environment {name}")


@dataclass(slots=True)
class Overrides:
    """What the command line (and its ``AGENTWATCH_*`` twins) set; ``None`` leaves a value alone."""

    config_file: Path | None = None
    state_dir: Path | None = None
    listen: list[str] | None = None
    no_auth: bool = False
    log_level: str | None = None
    log_format: str | None = None


def load_config(overrides: Overrides, environ: Mapping[str, str] | None = None) -> Config:
    """Resolve the configuration from defaults, file, environment and flags, in that order."""
    environ = os.environ if environ is None else environ
    values: dict[str, dict[str, Any]] = {
        section: {key: default for key, (_, default) in keys.items()} for section, keys in SCHEMA.items()
    }
    plugin_settings: dict[str, Any] = {}
    config_file = overrides.config_file or default_config_file(environ)
    if config_file is not None:
        _apply_file(values, plugin_settings, config_file)
    _apply_environment(values, environ)
    if overrides.listen:
        _set(values, "server", "listen", overrides.listen, "--listen")
    elif environ.get("AGENTWATCH_LISTEN"):
        _set(values, "server", "listen", environ["AGENTWATCH_LISTEN"], "environment AGENTWATCH_LISTEN")
    if overrides.no_auth or _bool_env(environ.get("AGENTWATCH_NO_AUTH") or "false"):
        values["auth"]["enabled"] = False
    if overrides.log_level:
        _set(values, "log", "level", overrides.log_level, "--log-level")
    if overrides.log_format:
        _set(values, "log", "format", overrides.log_format, "--log-format")
    state_dir = overrides.state_dir or state_dir_from(environ)
    return Config(state_dir=state_dir.expanduser(), values=values, plugin_settings=plugin_settings, file=config_file)


def default_config_file(environ: Mapping[str, str]) -> Path | None:
    """``$AGENTWATCH_CONFIG``, else ``agentwatch.toml`` in systemd's ``$CONFIGURATION_DIRECTORY`` if it
    exists there, else none (defaults and the environment only)."""
    if environ.get("AGENTWATCH_CONFIG"):
        return Path(environ["AGENTWATCH_CONFIG"])
    if directory := environ.get("CONFIGURATION_DIRECTORY"):
        candidate = Path(directory.split(":")[0]) / "agentwatch.toml"
        return candidate if candidate.is_file() else None
    return None
