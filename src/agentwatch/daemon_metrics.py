"""The daemon's own Prometheus metrics: what ingest received, stored and acknowledged, errors,
connections and plugin failures. The store and the ``metrics`` plugin add theirs to the same
:class:`~agentwatch.metrics.Registry`; docs/operations.md lists them all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentwatch import __version__
from agentwatch.metrics import Registry, add_process_metrics

if TYPE_CHECKING:
    from agentwatch.daemon import Daemon


class DaemonMetrics:
    """The series the daemon updates as it goes; the rest are read when scraped."""

    def __init__(self, daemon: Daemon, registry: Registry) -> None:
        self.registry = registry
        self.received = registry.counter(
            "agentwatch_events_received_total", "Events in frames the daemon accepted from agents."
        ).labels()
        self.acked = registry.counter(
            "agentwatch_events_acked_total", "Events acknowledged to agents (stored now, or earlier: duplicates)."
        ).labels()
        registry.counter(
            "agentwatch_events_stored_total", "Events committed to the store.", read=lambda: daemon.events_stored
        )
        self.errors = registry.counter("agentwatch_errors_total", "Error frames sent to agents, by code.", ["code"])
        self.rejected = registry.counter(
            "agentwatch_handshakes_rejected_total", "WebSocket handshakes refused, by HTTP status.", ["status"]
        )
        self.evicted = registry.counter(
            "agentwatch_handshakes_evicted_total",
            "Sockets closed before they finished their handshake, to make room for a newer one (server.max_connections).",
        ).labels()
        registry.gauge("agentwatch_agents_connected", "Agents connected now.", read=lambda: len(daemon.connections))
        registry.gauge("agentwatch_watchers_connected", "Connections on /v1/watch now.", read=daemon.watchers)
        registry.gauge("agentwatch_subscriptions", "Live subscriptions on /v1/watch now.", read=lambda: daemon.subscriptions)
        registry.gauge(
            "agentwatch_watch_held_bytes", "Bytes of replies and notifications held for watchers now (limit: watch.max_bytes).",
            read=lambda: daemon.watch_budget.used,
        )
        registry.counter(
            "agentwatch_plugin_errors_total", "Exceptions raised by plugins, by plugin.", ["plugin"],
            read=lambda: {(plugin,): count for plugin, count in daemon.plugins.errors.items()},
        )
        registry.gauge("agentwatch_build_info", "Always 1; the version is a label.", ["version"], read=lambda: {(__version__,): 1})
        add_process_metrics(registry)
