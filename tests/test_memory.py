"""The benchmark's memory figures: a process's own peak, not its parent's."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from monoculture.memory import peak_rss_bytes, return_freed_buffers

_CHILD = "import json; from monoculture.memory import peak_rss_bytes; print(json.dumps(peak_rss_bytes()))"


@pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")
def test_a_child_of_a_large_parent_reports_its_own_peak() -> None:
    held = bytearray(200 * 2**20)
    held[::4096] = b"\x01" * len(held[::4096])  # make the 200 MiB resident in this process
    assert peak_rss_bytes() > 200 * 2**20
    child = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True)
    # getrusage's ru_maxrss would report this process's peak here: it survives execve.
    assert json.loads(child.stdout) < 150 * 2**20
    del held


@pytest.mark.skipif(sys.platform != "linux", reason="/proc is Linux's")
def test_peak_of_another_process_and_of_a_gone_one() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"]) as process:
        assert 0 < peak_rss_bytes(process.pid) < 150 * 2**20
        process.kill()
    assert peak_rss_bytes(process.pid) == 0


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_mmap_threshold_is_set_on_glibc() -> None:
    assert return_freed_buffers() is True
