"""What a reload (SIGHUP) may change while the daemon runs, and what waits for a restart."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from agentwatch.config import Config

#: Settings bound to what the daemon opened at start: a reload keeps them and says so.
RESTART_ONLY = frozenset({
    ("server", "listen"),
    ("auth", "enabled"),
    ("auth", "token_file"),
    ("storage", "path"),
    ("storage", "synchronous"),
    ("storage", "queue_bytes"),
    ("plugins", "disable"),
    ("log", "format"),
    ("metrics", "listen"),
})


class Reload(NamedTuple):
    config: Config  # what the daemon runs with from now on
    changed: list[str]  # "section.key" (or "plugins.NAME") taken from the new configuration
    needs_restart: list[str]  # "section.key" that differ but keep their running value


def reconcile(running: Config, loaded: Config) -> Reload:
    """The configuration to run with after loading ``loaded``: its values, except the settings in
    :data:`RESTART_ONLY`, which keep ``running``'s. The state directory never changes."""
    values = {section: dict(keys) for section, keys in loaded.values.items()}
    changed, needs_restart = [], []
    for section, keys in values.items():
        for key, value in keys.items():
            if value == running[section][key]:
                continue
            if (section, key) in RESTART_ONLY:
                keys[key] = running[section][key]
                needs_restart.append(f"{section}.{key}")
            else:
                changed.append(f"{section}.{key}")
    for name in sorted(set(running.plugin_settings) | set(loaded.plugin_settings)):
        if running.plugin(name) != loaded.plugin(name):
            changed.append(f"plugins.{name}")
    config = dataclasses.replace(loaded, state_dir=running.state_dir, values=values)
    return Reload(config, changed, needs_restart)
