"""``agentwatch hooks install|uninstall`` (src/agentwatch/claude_settings.py) on real settings files:
what else the file holds is kept, our entries go in once and come out exactly, dry runs write
nothing, broken files are left alone, links and modes are kept and no planted link is written
through; mostly through the real command, with HOME in a tmp dir."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.claude_settings import EVENTS, WITH_MATCHER, installed, is_ours, uninstalled

# A settings file as people have them: other keys, their own hooks (one on an event we use, one
# on an event we do not), in the layout Claude Code writes.
ORIGINAL = {
    "model": "opus",
    "permissions": {"allow": ["Bash(git status)"], "deny": ["Read(./.env)"]},
    "env": {"FOO": "bar"},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "~/bin/guard.sh", "timeout": 5}]}],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send 'Claude is done'"}]}],
        "SomeFutureEvent": [{"hooks": [{"type": "command", "command": "echo future"}]}],
    },
    "statusLine": {"type": "command", "command": "~/bin/status.sh"},
}


def environ(home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AGENTWATCH_", "XDG_"))}
    return env | {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_STATE_HOME": str(home / ".state")}


def hooks_command(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m agentwatch hooks ARGS`` with ``home`` as HOME, under the usual umask (022)."""
    return subprocess.run([sys.executable, "-m", "agentwatch", "hooks", *args], cwd=cwd or home, env=environ(home),
                          capture_output=True, text=True, timeout=20, umask=0o022)


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


def write_settings(path: Path, settings: object) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=4) + "\n")
    return path.read_bytes()


def ours(settings: dict, event: str) -> list[tuple[dict, dict]]:
    """``(group, entry)`` for each of our entries on ``event``."""
    return [(group, entry) for group in settings["hooks"].get(event, []) for entry in group["hooks"] if is_ours(entry)]


def test_install_keeps_everything_else_adds_ours_for_every_event_and_keeps_a_backup(home):
    path = home / ".claude" / "settings.json"
    before = write_settings(path, ORIGINAL)
    done = hooks_command(home, "install")  # --scope user is the default
    assert (done.returncode, done.stderr) == (0, "")
    backup = path.with_name("settings.json.agentwatch-backup")
    assert f"added agentwatch's hooks to {path} (the previous file is {backup})" in done.stdout
    assert backup.read_bytes() == before
    after = json.loads(path.read_text())
    assert {key: value for key, value in after.items() if key != "hooks"} == {
        key: value for key, value in ORIGINAL.items() if key != "hooks"}
    for event, groups in ORIGINAL["hooks"].items():
        assert after["hooks"][event][: len(groups)] == groups, f"{event}: the person's own hooks stay first, unchanged"
    assert after["hooks"]["SomeFutureEvent"] == ORIGINAL["hooks"]["SomeFutureEvent"]
    assert set(after["hooks"]) == set(EVENTS) | {"SomeFutureEvent"}
    commands = set()
    for event in EVENTS:
        [(group, entry)] = ours(after, event)
        assert group == ({"matcher": "*"} if event in WITH_MATCHER else {}) | {"hooks": [entry]}
        assert entry["type"] == "command" and entry["timeout"] == 10
        commands.add(entry["command"])
    assert len(commands) == 1


def test_the_installed_command_runs_the_hook(home, tmp_path):
    path = home / ".claude" / "settings.json"
    assert hooks_command(home, "install").returncode == 0
    [(_, entry)] = ours(json.loads(path.read_text()), "Stop")
    state_dir = tmp_path / "state"
    payload = {"session_id": "s1", "cwd": "/p", "hook_event_name": "Stop"}
    env = environ(home) | {"AGENTWATCH_STATE_DIR": str(state_dir), "AGENTWATCH_AGENT_ID": "installed"}
    done = subprocess.run(shlex.split(entry["command"]), input=json.dumps(payload), env=env, capture_output=True,
                          text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    [spooled] = [json.loads(line) for line in (state_dir / "outbox" / "installed.jsonl").read_text().splitlines()]
    assert spooled["data"] == payload, "no daemon runs: the payload waits in the outbox"


def test_installing_twice_changes_nothing(home):
    path = home / ".claude" / "settings.json"
    write_settings(path, ORIGINAL)
    assert hooks_command(home, "install").returncode == 0
    once = path.read_bytes()
    again = hooks_command(home, "install")
    assert again.returncode == 0
    assert "nothing to change" in again.stdout
    assert path.read_bytes() == once
    assert all(len(ours(json.loads(once), event)) == 1 for event in EVENTS)


def test_an_entry_of_ours_spelled_another_way_is_not_doubled():
    settings = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "/usr/local/bin/agentwatch hook"}]}],
                          "PreToolUse": [{"matcher": "*", "hooks": [
                              {"type": "command", "command": "'/opt/my python/bin/python3' -m agentwatch hook"}]}]}}
    result = installed(settings, "/venv/bin/agentwatch hook")
    assert result["hooks"]["Stop"] == settings["hooks"]["Stop"]
    assert result["hooks"]["PreToolUse"] == settings["hooks"]["PreToolUse"]
    assert len(ours(result, "SessionStart")) == 1
    assert settings == {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "/usr/local/bin/agentwatch hook"}]}],
                                  "PreToolUse": [{"matcher": "*", "hooks": [
                                      {"type": "command", "command": "'/opt/my python/bin/python3' -m agentwatch hook"}]}]}}, \
        "the settings passed in are not changed"


def test_uninstall_gives_back_the_original_settings(home):
    path = home / ".claude" / "settings.json"
    write_settings(path, ORIGINAL)
    assert hooks_command(home, "install").returncode == 0
    done = hooks_command(home, "uninstall")
    assert done.returncode == 0
    assert f"removed agentwatch's hooks from {path}" in done.stdout
    assert json.loads(path.read_text()) == ORIGINAL
    again = hooks_command(home, "uninstall")
    assert (again.returncode, "nothing to change" in again.stdout) == (0, True)


def test_uninstall_removes_only_our_entries_from_a_shared_group():
    mine = {"type": "command", "command": "~/bin/log.sh"}
    settings = {"hooks": {"Stop": [{"hooks": [mine, {"type": "command", "command": "agentwatch hook"}]}],
                          "Notification": [{"hooks": [{"type": "command", "command": "python3 -m agentwatch hook"}]}],
                          "PostToolUse": [{"matcher": "Edit", "hooks": [{"type": "command", "command": "agentwatch hooks"}]}]}}
    assert uninstalled(settings) == {"hooks": {"Stop": [{"hooks": [mine]}],
                                               "PostToolUse": settings["hooks"]["PostToolUse"]}}


def test_install_then_uninstall_of_a_missing_file(home):
    path = home / ".claude" / "settings.json"
    done = hooks_command(home, "install")
    assert done.returncode == 0
    assert "previous file" not in done.stdout
    assert not path.with_name("settings.json.agentwatch-backup").exists(), "nothing to back up"
    assert all(len(ours(json.loads(path.read_text()), event)) == 1 for event in EVENTS)
    assert hooks_command(home, "uninstall").returncode == 0
    assert json.loads(path.read_text()) == {}


def test_a_hook_group_that_is_not_well_formed_is_left_alone(home):
    path = home / ".claude" / "settings.json"
    odd = {"hooks": {"Stop": [{"hooks": None}, "text", {"matcher": "x"}]}}
    write_settings(path, odd)
    done = hooks_command(home, "install")
    assert (done.returncode, done.stderr) == (0, "")
    after = json.loads(path.read_text())
    assert after["hooks"]["Stop"][:3] == odd["hooks"]["Stop"]
    [(group, entry)] = [(group, entry) for group in after["hooks"]["Stop"][3:] for entry in group["hooks"] if is_ours(entry)]
    assert group == {"hooks": [entry]}
    assert hooks_command(home, "uninstall").returncode == 0
    assert json.loads(path.read_text()) == odd


def test_dry_run_prints_the_result_and_writes_nothing(home, tmp_path):
    project = tmp_path / "project"
    path = project / ".claude" / "settings.json"
    before = write_settings(path, ORIGINAL)
    done = hooks_command(home, "install", "--scope", "project", "--dry-run", cwd=project)
    assert (done.returncode, done.stderr) == (0, "")
    first, _, shown = done.stdout.partition("\n")
    assert first == f"would write {path}:"
    shown = json.loads(shown)
    assert shown["model"] == "opus" and all(len(ours(shown, event)) == 1 for event in EVENTS)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"], "no backup, no partial file"
    assert not (home / ".claude").exists(), "the user's settings are not touched"


def test_dry_run_without_a_settings_file_creates_nothing(home, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    done = hooks_command(home, "install", "--scope", "project", "--dry-run", cwd=project)
    assert done.returncode == 0
    assert done.stdout.startswith(f"would write {project / '.claude' / 'settings.json'}:")
    assert list(project.iterdir()) == []


def test_local_scope_writes_the_local_settings_file(home, tmp_path):
    project = tmp_path / "project"
    shared = write_settings(project / ".claude" / "settings.json", ORIGINAL)
    assert hooks_command(home, "install", "--scope", "local", cwd=project).returncode == 0
    local = json.loads((project / ".claude" / "settings.local.json").read_text())
    assert all(len(ours(local, event)) == 1 for event in EVENTS)
    assert (project / ".claude" / "settings.json").read_bytes() == shared


@pytest.mark.parametrize(("text", "says", "uninstall_too"), [
    ('{"model": "opus",\n "hooks": {}\n', "is not valid JSON", True),
    ('["a list"]', "does not hold a JSON object", True),
    # Nothing of ours can be in hooks that are not an object, or an event that is not a list:
    # uninstall has nothing to remove there.
    ('{"hooks": ["a list"]}', '"hooks" is not an object', False),
    ('{"hooks": {"Stop": "agentwatch hook"}}', "hooks.Stop is not a list", False),
])
@pytest.mark.parametrize("action", ["install", "uninstall"])
def test_a_settings_file_that_cannot_be_used_is_named_and_left_untouched(home, text, says, uninstall_too, action):
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(text)
    done = hooks_command(home, action)
    if action == "install" or uninstall_too:
        assert done.returncode == 1
        assert str(path) in done.stderr and says in done.stderr
        assert done.stdout == ""
    else:
        assert (done.returncode, "nothing to change" in done.stdout) == (0, True)
    assert path.read_text() == text
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_link_planted_at_the_backup_name_is_replaced_not_written_through(home, tmp_path):
    victim = home / ".bashrc"
    victim.write_text("export PATH=$HOME/bin:$PATH\n")
    victim.chmod(0o644)
    project = tmp_path / "cloned"  # a repository controls its .claude/, links included
    path = project / ".claude" / "settings.json"
    before = write_settings(path, ORIGINAL)
    path.chmod(0o600)
    backup = path.with_name("settings.json.agentwatch-backup")
    backup.symlink_to(victim)
    done = hooks_command(home, "install", "--scope", "project", cwd=project)
    assert (done.returncode, done.stderr) == (0, "")
    assert (victim.read_text(), mode(victim)) == ("export PATH=$HOME/bin:$PATH\n", 0o644)
    assert not backup.is_symlink()
    assert (backup.read_bytes(), mode(backup)) == (before, 0o600), "the settings as they were, with their mode"


@pytest.mark.parametrize(("scope", "linked"), [("project", "settings.json"), ("local", "settings.local.json"), ("project", "")])
def test_a_project_settings_file_linked_out_of_the_project_is_refused(home, tmp_path, scope, linked):
    victim = home / ".bashrc"
    victim.write_text("export PATH=$HOME/bin:$PATH\n")
    project = tmp_path / "cloned"
    folder = project / ".claude"
    if linked:  # the file is a link
        folder.mkdir(parents=True)
        (folder / linked).symlink_to(victim)
    else:  # .claude/ itself is a link, to a folder of the user's
        project.mkdir()
        folder.symlink_to(home)
        victim = home / "settings.json"
        victim.write_text('{"model": "opus"}\n')
    before = victim.read_bytes()
    done = hooks_command(home, "install", "--scope", scope, cwd=project)
    assert done.returncode == 1
    assert "leads outside the project" in done.stderr and "remove that link" in done.stderr
    assert victim.read_bytes() == before
    assert not list(home.glob("*agentwatch-backup")), "nothing written beside it either"


def test_a_symlinked_settings_file_stays_a_link_and_its_target_gets_the_hooks(home, tmp_path):
    target = tmp_path / "dotfiles" / "claude" / "settings.json"
    before = write_settings(target, ORIGINAL)
    target.chmod(0o600)
    path = home / ".claude" / "settings.json"
    path.parent.mkdir()
    path.symlink_to(target)
    assert hooks_command(home, "install").returncode == 0
    assert path.is_symlink() and path.resolve() == target
    assert all(len(ours(json.loads(target.read_text()), event)) == 1 for event in EVENTS)
    assert mode(target) == 0o600
    assert path.with_name("settings.json.agentwatch-backup").read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["settings.json"], "no temporary file left behind"
    assert hooks_command(home, "uninstall").returncode == 0
    assert path.is_symlink() and json.loads(target.read_text()) == ORIGINAL


def test_a_private_settings_file_and_its_backup_stay_private(home):
    path = home / ".claude" / "settings.json"
    write_settings(path, ORIGINAL)
    path.chmod(0o600)
    backup = path.with_name("settings.json.agentwatch-backup")
    backup.write_text("{}")
    backup.chmod(0o644)  # an older backup, readable by all: replaced, its mode not kept
    assert hooks_command(home, "install").returncode == 0
    assert (mode(path), mode(backup)) == (0o600, 0o600)
    path.chmod(0o640)
    assert hooks_command(home, "uninstall").returncode == 0
    assert (mode(path), mode(backup)) == (0o640, 0o640), "never narrowed either"


def test_a_new_settings_file_is_private(home):
    assert hooks_command(home, "install").returncode == 0
    assert mode(home / ".claude" / "settings.json") == 0o600


def test_a_backup_that_cannot_be_written_is_named_and_nothing_changes(home):
    path = home / ".claude" / "settings.json"
    before = write_settings(path, ORIGINAL)
    backup = path.with_name("settings.json.agentwatch-backup")
    backup.mkdir()  # in the way: neither written into nor removed
    done = hooks_command(home, "install")
    assert (done.returncode, done.stdout) == (1, "")
    assert f"cannot write {backup}: Is a directory; {path} is unchanged" in done.stderr
    assert path.read_bytes() == before and list(backup.iterdir()) == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json", backup.name]
