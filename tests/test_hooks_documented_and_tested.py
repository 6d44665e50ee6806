"""Meta-test: every hook has a section in docs/plugins.md and is exercised by a test."""

import re
from pathlib import Path

import pytest

from agentwatch.hookspecs import hook_names

ROOT = Path(__file__).parent.parent
DOCS = (ROOT / "docs" / "plugins.md").read_text()
TESTS = {path.name: path.read_text() for path in (ROOT / "tests").glob("test_*.py") if path.name != Path(__file__).name}


def test_there_are_hooks():
    assert len(hook_names()) >= 7


@pytest.mark.parametrize("hook", hook_names())
def test_hook_is_documented(hook):
    assert re.search(rf"^### {hook}$", DOCS, re.MULTILINE), f"docs/plugins.md has no '### {hook}' section"


@pytest.mark.parametrize("hook", hook_names())
def test_hook_has_a_test(hook):
    implementing = [name for name, text in TESTS.items() if re.search(rf"def {hook}\(", text)]
    assert implementing, f"no test implements {hook}: write a test plugin that does"


def test_documented_hooks_exist():
    documented = re.findall(r"^### (agentwatch_\w+)$", DOCS, re.MULTILINE)
    assert sorted(documented) == hook_names()
