"""write_file/edit_file keep tools.writeReserveMb free on the state filesystem (real statvfs)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from nanobot.security.pathpolicy import PathPolicy
from nanobot.tools.base import ToolContext
from nanobot.tools.files import EditFileTool, Reserve, WriteFileTool


def free_mb(path: Path) -> int:
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize // 1048576


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    ws, home = tmp_path / "home" / "workspace", tmp_path / "home"
    ws.mkdir(parents=True)
    monkeypatch.setenv("NANOBOT_HOME", str(home))
    return ws, home


def call(tool, **kw):
    return asyncio.run(tool.execute(ToolContext(), **kw))


def test_write_that_would_eat_the_reserve_is_refused_and_changes_nothing(dirs, caplog):
    ws, home = dirs
    (ws / "keep.txt").write_text("old")
    tool = WriteFileTool(PathPolicy(ws, True, home), reserve_mb=free_mb(home) + 64)
    result = call(tool, path="keep.txt", content="new content")
    assert result.text.startswith("Error: refused to write 11 bytes to 'keep.txt'")
    assert "tools.writeReserveMb" in result.text and "MiB free" in result.text
    assert (ws / "keep.txt").read_text() == "old"
    assert "write refused" in caplog.text
    edit = EditFileTool(PathPolicy(ws, True, home), reserve_mb=free_mb(home) + 64)
    result = call(edit, path="keep.txt", old_text="old", new_text="much longer text")
    assert (
        result.text.startswith("Error: refused to write") and (ws / "keep.txt").read_text() == "old"
    )


def test_new_file_in_a_new_folder_is_refused_before_the_folder_is_made(dirs):
    ws, home = dirs
    tool = WriteFileTool(PathPolicy(ws, True, home), reserve_mb=free_mb(home) + 64)
    assert call(tool, path="a/b/c.txt", content="x").text.startswith("Error: refused")
    assert not (ws / "a").exists()


def test_writes_within_the_reserve_and_shrinking_writes_pass(dirs):
    ws, home = dirs
    tool = WriteFileTool(PathPolicy(ws, True, home), reserve_mb=0)
    assert call(tool, path="big.txt", content="x" * 5000).text.startswith("Wrote 5000 bytes")
    tight = WriteFileTool(PathPolicy(ws, True, home), reserve_mb=max(free_mb(home) - 1, 0))
    assert call(tight, path="big.txt", content="short").text.startswith("Wrote 5 bytes")


def test_workspace_on_another_filesystem_is_not_limited_by_the_state_reserve(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem")
    ws = shm / f"nanobot-reserve-{os.getpid()}"
    ws.mkdir()
    try:
        reserve = Reserve(free_mb(tmp_path) + 64, state=tmp_path)
        reserve.check(ws / "f.txt", "f.txt", 10)  # another disk: not this reserve's business
        with pytest.raises(Exception, match="refused"):
            reserve.check(tmp_path / "f.txt", "f.txt", 10)
    finally:
        ws.rmdir()
