"""The memory a job may take under a cgroup limit (engine.budget._cgroup_available), v1 and v2.

The layouts are the kernel's files, written into a temporary folder; where this machine lets a
test make a cgroup-v1 memory group (root in a container with the v1 hierarchy, as on older Docker
hosts), the real kernel's files are read from a process inside a 3 GiB group.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from engine.budget import _cgroup_available

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
V1_MEMORY = Path("/sys/fs/cgroup/memory")


def write(folder: Path, **files: int | str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (folder / name.replace("_", ".", 1)).write_text(f"{value}\n")


def test_a_cgroup_v1_limit_is_read(tmp_path):
    """Older Docker hosts: /proc/self/cgroup names the memory hierarchy's group."""
    proc = tmp_path / "cgroup"
    proc.write_text("9:pids:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    write(tmp_path / "fs/memory/docker/abc", memory_limit_in_bytes=3 * GIB, memory_usage_in_bytes=GIB)
    assert _cgroup_available(proc, tmp_path / "fs") == 2 * GIB


def test_the_tightest_of_a_group_and_those_above_it_counts(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/outer/inner\n")
    write(tmp_path / "fs/memory/outer", memory_limit_in_bytes=3 * GIB, memory_usage_in_bytes=2 * GIB)
    write(tmp_path / "fs/memory/outer/inner", memory_limit_in_bytes=8 * GIB, memory_usage_in_bytes=GIB // 2)
    assert _cgroup_available(proc, tmp_path / "fs") == GIB


def test_a_container_that_sees_its_group_as_the_root_reads_it_there(tmp_path):
    """/proc names /docker/abc, but the container's mount shows that group as the hierarchy's root."""
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/docker/abc\n")
    write(tmp_path / "fs/memory", memory_limit_in_bytes=3 * GIB, memory_usage_in_bytes=GIB)
    assert _cgroup_available(proc, tmp_path / "fs") == 2 * GIB


def test_cgroup_v2_and_no_limit(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/app\n")
    write(tmp_path / "fs/user.slice/app", memory_max=4 * GIB, memory_current=GIB)
    assert _cgroup_available(proc, tmp_path / "fs") == 3 * GIB
    write(tmp_path / "fs/user.slice/app", memory_max="max")
    assert _cgroup_available(proc, tmp_path / "fs") is None
    proc.write_text("4:memory:/\n")
    write(tmp_path / "fs/memory", memory_limit_in_bytes=9223372036854771712, memory_usage_in_bytes=GIB)
    assert _cgroup_available(proc, tmp_path / "fs") is None  # v1's "unlimited"


@pytest.mark.skipif(
    sys.platform != "linux" or not os.access(V1_MEMORY, os.W_OK | os.X_OK) or not V1_MEMORY.is_dir(),
    reason="needs a writable cgroup-v1 memory hierarchy (root in a v1 container)",
)
def test_inside_a_real_3_gib_cgroup_v1_group_the_engine_sees_at_most_3_gib():
    group = V1_MEMORY / f"sketch-abstraction-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as err:
        pytest.skip(f"cannot make a cgroup-v1 group here: {err}")
    try:
        (group / "memory.limit_in_bytes").write_text(str(3 * GIB))
        script = (
            f"open({str(group / 'cgroup.procs')!r}, 'w').write(str(__import__('os').getpid()));"
            "from engine.budget import _cgroup_available; print(_cgroup_available())"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
        )
        room = int(done.stdout.strip())
        assert 0 < room <= 3 * GIB
    finally:
        group.rmdir()
