"""Run a piece of Python in a child process that cannot hurt the machine: its address space
is capped a fixed amount above what its imports took, and it is killed after a timeout. For
tests of bugs that, unfixed, allocate without bound or hang."""

from __future__ import annotations

import os
import subprocess
import sys

_PRELUDE = """
import resource
_used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (_used + {extra}, _used + {extra}))
"""


def run_capped(
    imports: str, code: str, *args: str, extra_mb: int = 1024, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run `imports`, then cap memory at what is used plus extra_mb, then run `code`."""
    script = imports + _PRELUDE.format(extra=extra_mb << 20) + code
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        },
    )
