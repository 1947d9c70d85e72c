"""Lazily imported modules load once, whole, however many threads ask at the same time."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys, threading
from monoculture.analysis.lazy import lazy_import
assert "scipy.signal" not in sys.modules
signal = lazy_import("scipy.signal")
assert "scipy.signal" not in sys.modules  # nothing loaded until first use
errors = []
start = threading.Barrier(8)
def use():
    start.wait()
    try:
        signal.get_window  # an attribute defined late in the module
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=use) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(errors)
"""


def test_eight_threads_touch_a_lazy_module_at_once() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_company_daemon_does_not_load_scipy() -> None:
    program = (
        "import sys, monoculture.client.daemon; "
        "print(sorted(m for m in sys.modules if m.startswith('scipy')))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
