"""The systemd units in systemd/ and ``agentwatch systemd install`` (src/agentwatch/systemd_units.py): the units
as installed pass systemd's own ``systemd-analyze verify``, the system service's security exposure stays at or below
2.0, and the real command writes them (only into tmp dirs) with ExecStart= naming this environment's agentwatch."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.systemd_units import UNITS, InstallError, exec_path, install, render, source_dir, warnings
from helpers import required_tool

PROGRAM = Path(sys.executable).parent / "agentwatch"  # the agentwatch `python -m agentwatch` installs
MAX_EXPOSURE = 2.0


def analyze(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``systemd-analyze ARGS``; the test is skipped where systemd's tools are not installed (not in CI)."""
    tool = required_tool("systemd-analyze", "systemd")
    return subprocess.run([tool, *args], capture_output=True, encoding="utf-8", errors="replace", env=env, timeout=60)


def verify(paths: list[Path], user: bool, runtime_dir: Path) -> subprocess.CompletedProcess:
    """``systemd-analyze [--user] verify PATHS`` (a user manager needs an XDG_RUNTIME_DIR of its own)."""
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    env = os.environ | {"XDG_RUNTIME_DIR": str(runtime_dir)}
    return analyze(*(["--user"] if user else []), "verify", *map(str, paths), env=env)


def command(home: Path, *args: str, **environ: str) -> subprocess.CompletedProcess:
    """``python -m agentwatch systemd install ARGS`` with ``home`` as HOME and no XDG or AGENTWATCH variables."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AGENTWATCH_", "XDG_"))}
    return subprocess.run([sys.executable, "-m", "agentwatch", "systemd", "install", *args], cwd=home, capture_output=True,
                          text=True, timeout=30, env=env | {"HOME": str(home)} | environ)


def shipped(name: str, user: bool = False) -> str:
    """The unit as in systemd/ (or systemd/user/), with ExecStart= naming this environment's agentwatch."""
    return render((source_dir(user) / name).read_text(), PROGRAM)


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_installed_units_pass_systemd_analyze_verify(tmp_path, user):
    written = install(user=user, unit_dir=tmp_path / "units", dry_run=False, program=PROGRAM)
    assert sorted(path.name for path in written) == sorted(UNITS)
    result = verify(written, user, tmp_path / "run")
    assert (result.returncode, result.stderr) == (0, "")


def test_verify_reads_our_units_and_reports_a_program_that_is_not_there(tmp_path):
    """The check above can fail: a unit naming a missing program is reported (the shipped /opt path is one)."""
    missing = tmp_path / "nowhere" / "agentwatch"
    units = tmp_path / "units"
    install(user=False, unit_dir=units, dry_run=False, program=missing)
    result = verify([units / name for name in UNITS], False, tmp_path / "run")
    assert f"Command {missing} is not executable" in result.stderr


def test_a_program_path_with_spaces_and_percent_signs_is_quoted_so_systemd_finds_it(tmp_path):
    odd = tmp_path / "bin dir 100%"
    odd.mkdir()
    (odd / "agentwatch").symlink_to(PROGRAM)
    units = tmp_path / "units"
    install(user=False, unit_dir=units, dry_run=False, program=odd / "agentwatch")
    assert f'ExecStart="{tmp_path}/bin dir 100%%/agentwatch" serve\n' in (units / "agentwatch.service").read_text()
    result = verify([units / name for name in UNITS], False, tmp_path / "run")
    assert (result.returncode, result.stderr) == (0, "")


def test_system_service_security_exposure_is_at_most_2(tmp_path):
    version = re.match(r"systemd (\d+)", analyze("--version").stdout)
    if version is None or int(version[1]) < 250:
        pytest.skip(f"systemd-analyze security --offline needs systemd 250 or later, not {version and version[0]}")
    [service, _] = install(user=False, unit_dir=tmp_path, dry_run=False, program=PROGRAM)
    result = analyze("security", "--offline=yes", str(service))
    found = re.search(r"Overall exposure level for agentwatch\.service: (\d+\.\d+)", result.stdout)
    assert result.returncode == 0 and found, result.stdout + result.stderr
    assert float(found[1]) <= MAX_EXPOSURE, result.stdout


def test_install_writes_both_units_naming_this_agentwatch_and_says_what_next(tmp_path):
    units = tmp_path / "units"
    result = command(tmp_path, "--unit-dir", str(units))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(units)) == sorted(UNITS)
    for name in UNITS:
        assert (units / name).read_text() == shipped(name)
        assert (units / name).stat().st_mode & 0o777 == 0o644
        assert f"wrote {units / name}\n" in result.stdout
    assert f"\nExecStart={exec_path(PROGRAM)} serve\n" in (units / "agentwatch.service").read_text()
    assert "/opt/agentwatch" not in (units / "agentwatch.service").read_text().partition("[Service]")[2]
    assert "next: systemctl daemon-reload && systemctl enable --now agentwatch.socket" in result.stdout


@pytest.mark.parametrize("xdg", [True, False], ids=["XDG_CONFIG_HOME", "HOME"])
def test_install_user_writes_the_user_units_into_the_users_unit_directory(tmp_path, xdg):
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config")} if xdg else {}
    result = command(tmp_path, "--user", **environ)
    assert result.returncode == 0, result.stderr
    units = (tmp_path / "config" if xdg else tmp_path / ".config") / "systemd" / "user"
    assert sorted(os.listdir(units)) == sorted(UNITS)
    for name in UNITS:
        assert (units / name).read_text() == shipped(name, user=True)
    service = (units / "agentwatch.service").read_text()
    assert f"\nExecStart={exec_path(PROGRAM)} serve\n" in service
    assert "\nDynamicUser=" not in service and "\nStateDirectory=" not in service and "\nProtectHome=" not in service
    assert "next: systemctl --user daemon-reload && systemctl --user enable --now agentwatch.socket" in result.stdout
    assert result.stderr == ""  # no warning: the user service sees /tmp and home directories


def test_dry_run_prints_the_units_and_writes_nothing_and_needs_no_configuration(tmp_path):
    units = tmp_path / "units"
    result = command(tmp_path, "--unit-dir", str(units), "--dry-run", AGENTWATCH_CONFIG=str(tmp_path / "missing.toml"))
    assert result.returncode == 0, result.stderr
    assert not units.exists()
    for name in UNITS:
        assert f"# {units / name} (would write)\n{shipped(name)}" in result.stdout
    assert "dry run: nothing written" in result.stdout


def test_installing_again_changes_nothing(tmp_path):
    units = tmp_path / "units"
    assert command(tmp_path, "--unit-dir", str(units)).returncode == 0
    before = {name: ((units / name).read_bytes(), (units / name).stat().st_mtime_ns) for name in UNITS}
    result = command(tmp_path, "--unit-dir", str(units))
    assert result.returncode == 0, result.stderr
    assert "the units are already installed, unchanged" in result.stdout and "wrote" not in result.stdout
    assert {name: ((units / name).read_bytes(), (units / name).stat().st_mtime_ns) for name in UNITS} == before
    assert sorted(os.listdir(units)) == sorted(UNITS)  # no partial files left behind


def test_a_unit_that_differs_stops_the_install_until_force(tmp_path):
    units = tmp_path / "units"
    assert command(tmp_path, "--unit-dir", str(units)).returncode == 0
    service, socket = units / "agentwatch.service", units / "agentwatch.socket"
    edited = service.read_text().replace("RestartSec=2s", "RestartSec=10s")
    service.write_text(edited)
    socket.unlink()

    result = command(tmp_path, "--unit-dir", str(units))
    assert result.returncode == 1
    assert f"{service} is already there, different from what would be written" in result.stderr
    assert "--force" in result.stderr and "systemctl edit agentwatch" in result.stderr
    assert service.read_text() == edited and not socket.exists()  # all or nothing

    dry = command(tmp_path, "--unit-dir", str(units), "--dry-run")
    assert dry.returncode == 1 and f"# {service} (differs: install needs --force)" in dry.stdout
    assert service.read_text() == edited and not socket.exists()

    forced = command(tmp_path, "--unit-dir", str(units), "--force")
    assert forced.returncode == 0, forced.stderr
    assert service.read_text() == shipped("agentwatch.service") and socket.read_text() == shipped("agentwatch.socket")


def test_forcing_keeps_a_replaced_units_mode_and_replaces_a_link_in_its_place(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    service, socket = units / "agentwatch.service", units / "agentwatch.socket"
    service.write_text("[Service]\nExecStart=/bin/true\n")
    service.chmod(0o600)  # an administrator's choice: not widened
    elsewhere = tmp_path / "elsewhere.socket"
    elsewhere.write_text("[Socket]\n")
    socket.symlink_to(elsewhere)
    forced = command(tmp_path, "--unit-dir", str(units), "--force")
    assert forced.returncode == 0, forced.stderr
    assert service.read_text() == shipped("agentwatch.service") and service.stat().st_mode & 0o777 == 0o600
    assert not socket.is_symlink() and socket.read_text() == shipped("agentwatch.socket")
    assert socket.stat().st_mode & 0o777 == 0o644 and elsewhere.read_text() == "[Socket]\n"
    assert sorted(os.listdir(units)) == sorted(UNITS)


def test_a_unit_directory_that_cannot_be_used_is_reported(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = command(tmp_path, "--unit-dir", str(not_a_dir))
    assert result.returncode == 1
    assert f"agentwatch systemd: cannot read {not_a_dir / 'agentwatch.service'}: Not a directory\n" in result.stderr


def test_the_system_service_warns_about_a_program_or_python_it_cannot_see():
    opt, python = Path("/opt/agentwatch/bin/agentwatch"), Path("/usr/bin/python3")
    [home] = warnings(False, Path("/home/me/.venv/bin/agentwatch"), python)
    assert "agentwatch (/home/me/.venv/bin/agentwatch) is under /home, which ProtectHome=yes hides" in home
    [pyenv] = warnings(False, opt, Path("/root/no-such-pyenv/bin/python3"))
    assert "its Python (/root/no-such-pyenv/bin/python3) is under /root" in pyenv
    [tmp] = warnings(False, Path("/tmp/venv/bin/agentwatch"), python)
    assert "PrivateTmp=yes" in tmp
    assert warnings(False, opt, python) == []
    assert warnings(True, Path("/home/me/.local/bin/agentwatch"), python) == []


@pytest.mark.parametrize("bad", ['/opt/a"b/agentwatch', "/opt/$HOME/agentwatch", "/opt/a\\b/agentwatch", "/opt/a\nb",
                                 "bin/agentwatch"])
def test_a_program_path_systemd_would_read_differently_is_refused(bad):
    with pytest.raises(InstallError, match="absolute path|plainer path"):
        exec_path(Path(bad))
