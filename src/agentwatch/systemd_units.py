"""``agentwatch systemd install``: agentwatch's systemd units, written where systemd reads them.

The units are the files in ``systemd/`` of the checkout (``systemd/user/`` for ``systemctl
--user``), installed with the wheel under ``<prefix>/share/agentwatch/systemd``. Installing
writes ``agentwatch.service`` and ``agentwatch.socket`` with ``ExecStart=`` naming the
``agentwatch`` program that runs the install. A unit already there is left alone when it is
the same, and replaced only with ``--force`` when it differs (edited by hand, or from another
version): customisations belong in drop-ins (``systemctl edit agentwatch``), which survive.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import site
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import agentwatch
from agentwatch.safe_write import write_file

UNITS = ("agentwatch.service", "agentwatch.socket")
SHARED = Path("share", "agentwatch", "systemd")  # below the installation prefix (see pyproject.toml)
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
#: Where the system service cannot see a program: the option that hides each directory.
HIDDEN = {"/home": "ProtectHome=yes", "/root": "ProtectHome=yes", "/run/user": "ProtectHome=yes",
          "/tmp": "PrivateTmp=yes", "/var/tmp": "PrivateTmp=yes"}
_EXEC_START = re.compile(r"^(ExecStart=)\S+", re.MULTILINE)
_PLAIN = re.compile(r"[\w/.+,:@=~-]+", re.ASCII)  # a path ExecStart= takes as it is
EXIT_FAILED = 1


class InstallError(Exception):
    """The units cannot be installed; the message says why and what to do."""


@dataclass(frozen=True)
class Unit:
    """A unit as install would write it, and whether the file already there differs."""

    path: Path
    text: str
    current: str | None  # the file's text now (None: there is none)

    @property
    def same(self) -> bool:
        """The file is already what install would write."""
        return self.current == self.text

    @property
    def differs(self) -> bool:
        """A different file is in the unit's place."""
        return self.current is not None and self.current != self.text


def source_dir(user: bool) -> Path:
    """The directory holding the units: the installed copy, else the checkout's ``systemd/``."""
    candidates = [Path(sys.prefix) / SHARED, Path(site.getuserbase()) / SHARED,
                  Path(agentwatch.__file__).resolve().parents[2] / "systemd"]
    for base in candidates:
        units = base / "user" if user else base
        if all((units / name).is_file() for name in UNITS):
            return units
    raise InstallError(f"agentwatch's systemd units are in none of {', '.join(map(str, candidates))}; "
                       "reinstall agentwatch (pip install from a wheel or the checkout)")


def unit_dir_for(user: bool, environ: Mapping[str, str]) -> Path:
    """Where systemd reads units written by an administrator: the system's, or the user's own."""
    if not user:
        return SYSTEM_UNIT_DIR
    config = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def this_program() -> Path:
    """The ``agentwatch`` program running now (``python -m agentwatch``: the one beside the interpreter)."""
    if Path(sys.argv[0]).name == "agentwatch":
        return Path(os.path.abspath(sys.argv[0]))
    beside = Path(sys.executable).parent / "agentwatch"
    if beside.is_file():
        return beside
    if found := shutil.which("agentwatch"):
        return Path(os.path.abspath(found))
    raise InstallError("cannot find the agentwatch program of this installation; run the install as its agentwatch "
                       "command (e.g. /opt/agentwatch/bin/agentwatch systemd install)")


def exec_path(program: Path) -> str:
    """``program`` spelled for ``ExecStart=`` (systemd.syntax(7) quoting, ``%`` escaped)."""
    text = str(program)
    if not program.is_absolute():
        raise InstallError(f"{text} is not an absolute path; systemd needs the program's full path")
    if not text.isprintable() or any(char in text for char in '"\\$'):
        raise InstallError(f"{text!r} holds a character systemd would read differently (a quote, backslash, $ or a "
                           "control character); install agentwatch under a plainer path")
    text = text.replace("%", "%%")
    return text if _PLAIN.fullmatch(text) else f'"{text}"'


def render(text: str, program: Path) -> str:
    """The unit ``text`` with the program of its ``ExecStart=`` replaced by ``program``."""
    spelled = exec_path(program)
    return _EXEC_START.sub(lambda match: match[1] + spelled, text)


def warnings(user: bool, program: Path, python: Path | None = None) -> list[str]:
    """What would stop the system service from starting that install cannot fix: ``program``, or the
    ``python`` that runs it (default: this one; a venv's interpreter is a link to it), in a directory
    the service cannot see."""
    if user:
        return []
    python = python or Path(sys.executable)
    for what, path in (("agentwatch", program), ("agentwatch", program.resolve()), ("its Python", python.resolve())):
        for hidden, option in HIDDEN.items():
            if path.is_relative_to(hidden):
                return [f"{what} ({path}) is under {hidden}, which {option} hides from the system service: it would not "
                        "start (status=203/EXEC). Install agentwatch, with a Python from outside it, elsewhere "
                        "(python3 -m venv /opt/agentwatch && /opt/agentwatch/bin/pip install CHECKOUT), then run "
                        "/opt/agentwatch/bin/agentwatch systemd install; or install your own service with --user"]
    return []


def planned(user: bool, unit_dir: Path | None, program: Path) -> list[Unit]:
    """Each unit install would write, with the file now in its place."""
    source = source_dir(user)
    target = unit_dir if unit_dir is not None else unit_dir_for(user, os.environ)
    units = []
    for name in UNITS:
        text = render((source / name).read_text(encoding="utf-8"), program)
        units.append(Unit(target / name, text, _current(target / name)))
    return units


def install(user: bool, unit_dir: Path | None, dry_run: bool, program: Path, force: bool = False) -> list[Path]:
    """Write the units (``user``: ``systemctl --user``'s) into ``unit_dir`` (default: where systemd reads them).

    All or nothing: a unit that differs from what would be written stops the install unless
    ``force``. Returns the files written (with ``dry_run``: that would be written), none if all
    are already in place.
    """
    units = planned(user, unit_dir, program)
    differing = [str(unit.path) for unit in units if unit.differs]
    if differing and not force:
        are, it = ("is", "it") if len(differing) == 1 else ("are", "them")
        raise InstallError(f"{' and '.join(differing)} {are} already there, different from what would be written (edited "
                           f"by hand, or from another version); compare with --dry-run, then move {it} away or pass "
                           f"--force to replace {it} (keep your changes in a drop-in: systemctl edit agentwatch)")
    changed = [unit for unit in units if not unit.same]
    if not dry_run:
        for unit in changed:
            _write(unit.path, unit.text)
    return [unit.path for unit in changed]


def next_steps(user: bool) -> str:
    """What to run after installing."""
    systemctl = "systemctl --user" if user else "systemctl"
    steps = f"next: {systemctl} daemon-reload && {systemctl} enable --now agentwatch.socket"
    if user:
        return steps + "\n(loginctl enable-linger keeps your agentwatch running while you are logged out)"
    return (steps + "\nclients then need AGENTWATCH_URL=ws://127.0.0.1:7717 and AGENTWATCH_TOKEN, the contents of "
            "/var/lib/private/agentwatch/token (root only; the service creates it on its first start)")


def run(args: argparse.Namespace) -> int:
    """``agentwatch systemd install [--user] [--unit-dir DIR] [--dry-run] [--force]``; the exit status."""
    try:
        program = this_program()
        for warning in warnings(args.user, program):
            print(f"agentwatch systemd: warning: {warning}", file=sys.stderr)
        if args.dry_run:
            for unit in planned(args.user, args.unit_dir, program):
                state = ("unchanged" if unit.same else "would write" if not unit.differs
                         else "would replace" if args.force else "differs: install needs --force")
                print(f"# {unit.path} ({state})\n{unit.text}")
        written = install(args.user, args.unit_dir, args.dry_run, program, args.force)
    except InstallError as exc:
        print(f"agentwatch systemd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("the units are already installed, unchanged")
    print(next_steps(args.user))
    return 0


def _current(path: Path) -> str | None:
    """The text of the file at ``path`` now; None if there is none."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: a new unit is readable by all (as unit files are), one
    replaced keeps its mode, and a link in its place (a masked unit) is replaced, not written through."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, text, mode=0o644)
    except OSError as exc:
        hint = " (the system's units need root; --user installs your own)" if isinstance(exc, PermissionError) else ""
        raise InstallError(f"cannot write {path}: {exc.strerror or exc}{hint}") from None
