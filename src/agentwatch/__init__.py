"""agentwatch: the durable record of what every coding agent did, and who needs you now."""

__version__ = "0.1.0"
