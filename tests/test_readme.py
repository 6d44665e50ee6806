"""The README's commands work as written: each ``agentwatch`` command it shows names a command and
flags the program has, and the set-up puts the program where the README's PATH line looks."""

import re
import shlex
import sys
from pathlib import Path

import pytest

from agentwatch.cli import _parser

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)
COMMANDS = [
    line.split(" #")[0].strip()
    for block in SHELL_BLOCKS
    for line in block.splitlines()
    if line.startswith("agentwatch ")
]


def test_the_readme_shows_the_commands_people_run_first():
    shown = {shlex.split(line)[1] for line in COMMANDS}
    assert {"attention", "tail", "status", "agents", "sessions", "events", "hooks", "run", "import"} <= shown


def _parser_of(words: list[str]):
    """The parser of the (sub)command ``words`` start with, and the words after it."""
    parser = _parser()
    while True:
        choices = next((a.choices for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)), None)
        if not choices or not words or words[0] not in choices:
            return parser, words
        parser, words = choices[words[0]], words[1:]


@pytest.mark.parametrize("line", COMMANDS)
def test_every_flag_the_readme_shows_exists(line):
    words = shlex.split(line)[1:]
    if "--" in words:
        words = words[: words.index("--")]  # agentwatch run -- COMMAND: the agent's own flags
    parser, rest = _parser_of(words)
    flags = {flag for action in parser._actions for flag in action.option_strings}
    shown = {word.strip("[]").split("=")[0] for word in rest if word.strip("[]").startswith("--")}
    assert shown <= flags, (line, shown - flags)


def test_the_path_line_names_where_the_set_up_installs_the_command():
    """After ``python3 -m venv .venv && .venv/bin/pip install ...``, the command is .venv/bin/agentwatch."""
    assert 'export PATH="$PWD/.venv/bin:$PATH"' in SHELL_BLOCKS[2]
    assert "python3 -m venv .venv && .venv/bin/pip install ." in SHELL_BLOCKS[0]
    assert (Path(sys.executable).parent / "agentwatch").exists(), "pip installs the console script beside python"
