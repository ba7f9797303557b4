"""The replica's journal file: compaction keeps the tail, and with fsync=True it reaches the
disk (through os.fsync, which lets other threads run) before it replaces the old journal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.journal import FileJournal, ResizableFile

from raftstore._replica import _Journal


def _record_disk_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: Any) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append(("replace", f"{src} -> {dst}"))
        real_replace(src, dst)

    # pysyncobj's flush/_destroy msync the whole mapping, and CPython holds the GIL through
    # msync: the replica's event loop and tick thread stood still for it at every compaction.
    def msync(name: str) -> Any:
        real = getattr(ResizableFile, name)

        def recorded(self: ResizableFile) -> None:
            calls.append(("msync", name))
            real(self)

        return recorded

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(ResizableFile, "flush", msync("flush"))
    monkeypatch.setattr(ResizableFile, "_destroy", msync("_destroy"))
    return calls


def _filled(path: Path, *, fsync: bool) -> _Journal:
    journal = _Journal(str(path), fsync=fsync)
    for idx in range(1, 51):
        journal.add(f"command {idx}".encode() * 100, idx, 1 + idx // 25)
    return journal


def test_compaction_syncs_the_kept_entries_before_they_replace_the_journal(tmp_path, monkeypatch):
    path = tmp_path / "raft.journal"
    journal = _filled(path, fsync=True)
    calls = _record_disk_calls(monkeypatch)
    journal.deleteEntriesTo(40)
    compacting = f"{path}.compacting"
    assert calls == [
        ("fsync", compacting),  # the new journal is on disk ...
        ("replace", f"{compacting} -> {path}"),  # ... before it replaces the old one,
        ("fsync", str(tmp_path)),  # and the rename is made durable
    ]
    assert [journal[i][1] for i in range(len(journal))] == list(range(41, 51))
    journal.add(b"after the compaction", 51, 3)
    journal.sync()
    assert calls[-1] == ("fsync", str(path))  # sync() fsyncs the journal file (no msync)
    monkeypatch.undo()
    journal._destroy()
    reopened = FileJournal(str(path))
    assert [reopened[i][1] for i in range(len(reopened))] == list(range(41, 52))
    assert reopened[10][0] == b"after the compaction"
    reopened._destroy()


def test_compaction_without_fsync_touches_no_disk_sync_and_keeps_the_tail(tmp_path, monkeypatch):
    path = tmp_path / "raft.journal"
    journal = _filled(path, fsync=False)
    calls = _record_disk_calls(monkeypatch)
    journal.deleteEntriesTo(45)
    assert calls == [("replace", f"{path}.compacting -> {path}")]  # no fsync, no msync
    journal.add(b"next", 51, 3)
    monkeypatch.undo()
    journal._destroy()
    reopened = FileJournal(str(path))
    assert [reopened[i][1] for i in range(len(reopened))] == [46, 47, 48, 49, 50, 51]
    assert reopened[0][0] == b"command 46" * 100
    reopened._destroy()
