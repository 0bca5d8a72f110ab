"""Atomic writes: a failed write leaves the old file and no temporary; writers never share a temporary."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from img2prompt.files import atomic_path, write_text_atomic


def temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = write_text_atomic(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and temporaries(tmp_path) == []


def test_concurrent_writers_get_their_own_temporaries(tmp_path):
    names, barrier = [], threading.Barrier(2)

    def write(text):
        with atomic_path(tmp_path / "out.txt") as tmp:
            names.append(tmp.name)
            barrier.wait()
            tmp.write_text(text)

    threads = [threading.Thread(target=write, args=(t,)) for t in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 2 and (tmp_path / "out.txt").read_text() in ("a", "b")
    assert temporaries(tmp_path) == []


def test_a_temporary_left_by_a_killed_process_is_removed_on_the_next_write(tmp_path):
    target = tmp_path / "state.pt"
    code = ("import os, sys; from img2prompt.files import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('x'); os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code, str(target)]).returncode == 9
    assert len(temporaries(tmp_path)) == 1 and not target.exists()
    write_text_atomic(target, "done")
    assert target.read_text() == "done" and temporaries(tmp_path) == []
