"""Built-in plugins. Each is an ordinary plugin registered under a short name and blockable
with ``plugins.disable``; the core uses its own hooks, so any of them can be replaced."""

#: Short name -> module path, or ``module:Class`` for a plugin with state (one instance per daemon).
BUILTIN_PLUGINS: dict[str, str] = {
    "storage": "agentwatch.plugins.storage",
    "watch-queries": "agentwatch.plugins.watch_queries",
    "watch-topics": "agentwatch.plugins.watch_topics:WatchTopics",
    "attention": "agentwatch.plugins.attention:AttentionPlugin",
    "stall": "agentwatch.plugins.stall:StallPlugin",
    "retention": "agentwatch.plugins.retention:RetentionPlugin",
    "event-log": "agentwatch.plugins.event_log:EventLog",
    "metrics": "agentwatch.plugins.metrics:MetricsPlugin",
    "agentwatch": "agentwatch.plugins.formats.canonical",
    "claude-stream-json": "agentwatch.plugins.formats.claude_stream_json",
    "claude-hook": "agentwatch.plugins.formats.claude_hook",
    "claude-transcript": "agentwatch.plugins.formats.claude_transcript",
    "codex-exec-json": "agentwatch.plugins.formats.codex_exec_json",
    "codex-rollout": "agentwatch.plugins.formats.codex_rollout",
    "gemini-stream-json": "agentwatch.plugins.formats.gemini_stream_json",
}
