"""How long one fsync takes on this machine's disk: the floor of a durable ack.

Usage::

    python bench/fsync.py [--dir DIR] [--writes 1000] [--quick] [--json]

Appends 4 KiB to a file in ``--dir`` (default: the system's temporary directory, where the other
benches put their state dirs) and calls ``os.fsync`` after each write, ``--writes`` times; prints
p50, p99 and max of write + fsync. The daemon acknowledges an event only after the commit that
holds it is durable (WAL, ``synchronous=FULL``: one sync of the WAL file per commit), so no ack
comes sooner than one of these after its event arrives; the bare baseline of ``bench/ingest.py``
syncs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import summary_ms

BLOCK = os.urandom(4096)


def measure(directory: Path, writes: int) -> list[float]:
    """Seconds of each 4 KiB append + fsync."""
    times = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="agentwatch-fsync-") as file:
        fd = file.fileno()
        for _ in range(writes):
            started = time.perf_counter()
            os.write(fd, BLOCK)
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="a directory on the disk to measure")
    parser.add_argument("--writes", type=int, help="writes, each followed by fsync (default 1000; 200 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer writes")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    writes = args.writes or (200 if args.quick else 1000)
    if not args.dir.is_dir():
        parser.error(f"--dir {args.dir} is not a directory; give one on the disk the state dir lives on")
    if writes < 1:
        parser.error("--writes must be at least 1")
    result = {"dir": str(args.dir), "writes": writes, "block_bytes": len(BLOCK), **summary_ms(measure(args.dir, writes))}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"4 KiB write + fsync in {args.dir}, {writes} times: p50 {result['p50_ms']:.3f} ms, "
              f"p99 {result['p99_ms']:.3f} ms, max {result['max_ms']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
