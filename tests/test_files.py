"""Atomic writes: a failed write leaves the old file and no temporary; writers never share a temporary."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from img2prompt.errors import Img2PromptError
from img2prompt.files import all_or_none, atomic_path, check_output, write_text_atomic


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


def test_outputs_written_together_appear_together_or_not_at_all(tmp_path):
    for name in ("a.txt", "b.txt"):
        write_text_atomic(tmp_path / name, f"old {name}")
    with pytest.raises(RuntimeError), all_or_none():
        write_text_atomic(tmp_path / "a.txt", "new a")
        assert (tmp_path / "a.txt").read_text() == "old a.txt"  # not before the block ends
        raise RuntimeError("the second output failed")
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt")] == ["old a.txt", "old b.txt"]
    assert temporaries(tmp_path) == []
    with all_or_none():
        write_text_atomic(tmp_path / "a.txt", "new a")
        with all_or_none():  # a nested block joins the outer one
            write_text_atomic(tmp_path / "b.txt", "new b")
        assert (tmp_path / "b.txt").read_text() == "old b.txt"
    assert [(tmp_path / n).read_text() for n in ("a.txt", "b.txt")] == ["new a", "new b"]


def test_an_input_that_cannot_be_read_inside_a_write_is_not_called_a_write_failure(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "out.txt"):
        (tmp_path / "missing-input.txt").read_text()
    assert temporaries(tmp_path) == []


def test_an_output_where_a_folder_or_file_is_in_the_way_is_named(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(Img2PromptError, match=f"^{tmp_path}/afile/deeper/out.txt: cannot write: {tmp_path}/afile "
                                              "is a file, not a folder$"):
        write_text_atomic(tmp_path / "afile" / "deeper" / "out.txt", "text")
    with pytest.raises(Img2PromptError, match="is a folder: give a file name"):
        check_output(tmp_path)
    assert check_output(tmp_path / "new" / "out.txt") == tmp_path / "new" / "out.txt"
    assert not (tmp_path / "new").exists()  # checking creates nothing
