"""The ``agentwatch`` program. ``agentwatch hook`` runs on Claude Code's every tool call, so it
takes a path that imports almost nothing; every other command is :mod:`agentwatch.cli`."""

import sys


def main() -> int:
    if sys.argv[1:] == ["hook"]:
        from agentwatch.hook_command import main as hook

        return hook()
    from agentwatch.cli import main as cli

    return cli()
