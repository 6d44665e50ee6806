"""A disk under the daemon's SQLite that tests can make full or slow: an APSW VFS shim over the
platform's own, installed as the default while a test runs."""

import time

import apsw

REAL = apsw.vfs_names()[0]  # the platform's VFS ("unix"), before any test makes another the default


class ShimDisk(apsw.VFS):
    """The default VFS while installed. Files write through to the real one until ``budget``
    bytes are spent, then every write fails with SQLITE_FULL, the way a full file system does,
    until ``budget`` is raised; ``only`` limits those failures to files whose name ends with it.
    Every sync takes ``sync_delay`` seconds more, the way a slow disk does."""

    def __init__(self) -> None:
        self.budget = float("inf")
        self.only = ""
        self.refused = 0
        self.sync_delay = 0.0
        super().__init__("shim-disk", base=REAL, makedefault=True)

    def xOpen(self, name, flags):  # noqa: N802 - APSW's name
        return ShimFile(self, name, flags)


class ShimFile(apsw.VFSFile):
    def __init__(self, disk: ShimDisk, name, flags) -> None:
        self.disk = disk
        self.name = name.filename() if isinstance(name, apsw.URIFilename) else str(name)
        super().__init__(REAL, name, flags)

    def xWrite(self, data, offset):  # noqa: N802 - APSW's name
        if len(data) > self.disk.budget and self.name.endswith(self.disk.only):
            self.disk.refused += 1
            raise apsw.FullError("database or disk is full (test VFS)")
        self.disk.budget -= len(data)
        super().xWrite(data, offset)

    def xSync(self, flags):  # noqa: N802 - APSW's name
        if self.disk.sync_delay:
            time.sleep(self.disk.sync_delay)  # on the writer's thread, as a slow fsync would be
        super().xSync(flags)
