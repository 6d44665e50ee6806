"""A client of a running agentwatch daemon, for the command line and for your own tools (Trio).

It finds the daemon and its token the way the daemon is configured (``AGENTWATCH_URL``,
``daemon.json`` and the token file in the state directory, ``AGENTWATCH_TOKEN``), so on one
machine nothing needs copying by hand::

    import trio
    from agentwatch.client import open_watch

    async def main():
        async with open_watch() as watch:
            print((await watch.call("status"))["events_stored"], "events stored")
            async with watch.subscribe("attention") as feed:
                async for note in feed:
                    for item in note.params.get("items", []):
                        print(item["agent_id"], item["state"], item["summary"])

    trio.run(main)

Agents stream in with :func:`open_agent`: ``await agent.send(record)`` numbers each record,
holds it until acknowledged, and resends it over a new connection if the old one drops.
"""

from agentwatch.client.agent import AgentClient, Rejected, open_agent
from agentwatch.client.discovery import find_daemon
from agentwatch.locate import ClientError, DaemonGone, DaemonNotRunning, Endpoint
from agentwatch.client.watch import Notification, RpcError, Subscription, WatchClient, call, open_watch

__all__ = [
    "AgentClient",
    "ClientError",
    "DaemonGone",
    "DaemonNotRunning",
    "Endpoint",
    "Notification",
    "Rejected",
    "RpcError",
    "Subscription",
    "WatchClient",
    "call",
    "find_daemon",
    "open_agent",
    "open_watch",
]
