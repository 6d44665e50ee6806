"""The long runs of the fault and hostile-input tests: the same tests as CI, scaled up.

    python bench/faults.py            # 20 SIGKILLs of a 100-agent ingest; ~10^5 fuzzed frames
    python bench/faults.py --quick    # 5 kills; ~2.5 x 10^4 frames

The tests are tests/test_durability.py (kill -9 mid-ingest, SIGTERM under load),
tests/test_disk_full.py and tests/test_hostile.py; the environment variables they read set the
scale (FUZZ_EXAMPLES is examples per property, about ten frames each, five properties).
Exit status: pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 kills and ~2.5 x 10^4 fuzzed frames")
    args = parser.parse_args()
    environ = {
        **os.environ,
        "FAULT_KILLS": "5" if args.quick else "20",
        "FUZZ_EXAMPLES": "500" if args.quick else "2000",
    }
    tests = ["tests/test_durability.py", "tests/test_disk_full.py", "tests/test_hostile.py"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "timeout=0", *tests]
    print("$", " ".join(f"{name}={environ[name]}" for name in ("FAULT_KILLS", "FUZZ_EXAMPLES")), *command, flush=True)
    return subprocess.run(command, cwd=ROOT, env=environ).returncode


if __name__ == "__main__":
    sys.exit(main())
