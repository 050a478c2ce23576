"""WorkspaceReader and the prompt builder against hostile workspace files (real files, links, FIFOs)."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from nanobot.agent.context import ContextBuilder
from nanobot.security import audit
from nanobot.security.redact import REDACTOR
from nanobot.security.wsread import WorkspaceReader

SECRET = "config-marker-9d1f"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    (w / "memory").mkdir(parents=True)
    (tmp_path / "config.json").write_text(SECRET)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "MEMORY.md").write_text(SECRET)
    return w


@pytest.fixture
def trail(tmp_path: Path):
    """A real audit log for the test, restored afterwards."""
    log = audit.AuditLog(tmp_path / "audit.jsonl")
    old, audit._AUDIT = audit._AUDIT, log
    yield tmp_path / "audit.jsonl"
    audit._AUDIT = old
    log.close()


def events(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_plain_file_and_nested_file_are_read(ws):
    (ws / "AGENTS.md").write_text("be kind")
    (ws / "memory" / "MEMORY.md").write_text("likes tea")
    r = WorkspaceReader(ws)
    assert r.read_text("AGENTS.md") == "be kind"
    assert r.read_text("memory/MEMORY.md") == "likes tea"
    assert r.read_text("missing.md") is None
    assert r.read_text("nodir/x.md") is None


@pytest.mark.parametrize(
    ("plant", "why"),
    [
        (lambda ws: (ws / "AGENTS.md").symlink_to(ws.parent / "config.json"), "symlink"),
        (lambda ws: (ws / "AGENTS.md").symlink_to("/proc/self/environ"), "symlink"),
        (lambda ws: (ws / "AGENTS.md").symlink_to("/dev/zero"), "symlink"),
        (lambda ws: os.link(ws.parent / "config.json", ws / "AGENTS.md"), "hard link"),
        (lambda ws: os.mkfifo(ws / "AGENTS.md"), "FIFO"),
        (lambda ws: (ws / "AGENTS.md").mkdir(), "directory"),
    ],
)
def test_hostile_leaf_is_refused_once_with_warning_and_audit(ws, trail, caplog, plant, why):
    plant(ws)
    r = WorkspaceReader(ws)
    with caplog.at_level(logging.WARNING, "nanobot.security"):
        start = time.monotonic()
        assert r.read_text("AGENTS.md") is None
        assert r.read_text("AGENTS.md") is None  # the second time: no second warning
        assert time.monotonic() - start < 2
    warnings = [rec.getMessage() for rec in caplog.records]
    assert len(warnings) == 1 and "AGENTS.md" in warnings[0] and why in warnings[0]
    assert SECRET not in warnings[0]
    refused = [e for e in events(trail) if e["event"] == "workspace_file_refused"]
    assert len(refused) == 1 and refused[0]["path"] == "AGENTS.md" and why in refused[0]["reason"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_device_node_is_refused_without_being_opened(ws):
    os.mknod(ws / "AGENTS.md", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero
    assert WorkspaceReader(ws).read_text("AGENTS.md") is None


def test_linked_folder_is_refused(ws, caplog):
    (ws / "memory").rmdir()
    (ws / "memory").symlink_to(ws.parent / "elsewhere")
    with caplog.at_level(logging.WARNING, "nanobot.security"):
        assert WorkspaceReader(ws).read_text("memory/MEMORY.md") is None
    assert "its folder memory is a symlink" in caplog.text


def test_sparse_giant_is_refused_by_size_without_reading(ws):
    with open(ws / "AGENTS.md", "wb") as f:
        f.truncate(1 << 30)
    start = time.monotonic()
    assert WorkspaceReader(ws, max_bytes=4096).read_text("AGENTS.md") is None
    assert time.monotonic() - start < 1


def test_file_growing_past_the_cap_while_read_is_refused(ws, monkeypatch):
    p = ws / "AGENTS.md"
    p.write_text("x" * 100)
    r = WorkspaceReader(ws, max_bytes=150)
    real_read = os.read

    def growing_read(fd, n):  # the file grows between fstat and read (another process appends)
        with open(p, "a") as f:
            f.write("y" * 200)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", growing_read)
    assert r.read_text("AGENTS.md") is None


def test_paths_leaving_the_workspace_are_rejected(ws):
    r = WorkspaceReader(ws)
    for bad in ("../config.json", "/etc/passwd", "memory/../../config.json", ""):
        with pytest.raises(ValueError):
            r.read_bytes(bad)


def test_refusal_is_reported_again_after_the_file_changes(ws, caplog):
    (ws / "AGENTS.md").symlink_to(ws.parent / "config.json")
    r = WorkspaceReader(ws)
    with caplog.at_level(logging.WARNING, "nanobot.security"):
        r.read_text("AGENTS.md")
        (ws / "AGENTS.md").unlink()
        (ws / "AGENTS.md").write_text("fine")
        assert r.read_text("AGENTS.md") == "fine"
        (ws / "AGENTS.md").unlink()
        os.mkfifo(ws / "AGENTS.md")
        r.read_text("AGENTS.md")
    assert len(caplog.records) == 2


def test_context_leaves_out_refused_files_and_redacts_the_prompt(ws):
    (ws / "AGENTS.md").symlink_to(ws.parent / "config.json")
    (ws / "memory").rename(ws / "memory.real")
    (ws / "memory").symlink_to(ws.parent / "elsewhere")
    os.mkfifo(ws / "TOOLS.md")
    (ws / "SOUL.md").write_text("token sk-abcdefghijklmnopqrstuvwxyz0123 and kindness")
    REDACTOR.add("configured-secret-777")
    (ws / "USER.md").write_text("user key configured-secret-777")
    try:
        done = threading.Event()
        out: list = []

        def build():
            out.extend(ContextBuilder(ws, True).build([], "hi", "cli", "direct"))
            done.set()

        threading.Thread(target=build, daemon=True).start()
        assert done.wait(5), "prompt building hung on a FIFO"
        system = out[0]["content"]
        assert SECRET not in system
        assert "kindness" in system and "sk-abcdefghij" not in system
        assert "configured-secret-777" not in system and "[REDACTED]" in system
    finally:
        REDACTOR.clear()


def test_context_redacts_history_and_user_text(ws):
    REDACTOR.add("configured-secret-888")
    try:
        history = [{"role": "assistant", "content": "it was configured-secret-888"}]
        msgs = ContextBuilder(ws, True).build(history, "mine: configured-secret-888", "c", "d")
        assert "configured-secret-888" not in json.dumps(msgs)
    finally:
        REDACTOR.clear()
