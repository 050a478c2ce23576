"""Bootstrap files are copied into the workspace without ever following a planted link."""

from __future__ import annotations

import os

from nanobot.agent.media import request_content
from nanobot.agent.workspace import write_templates
from nanobot.security.redact import REDACTOR


def test_templates_fill_a_new_workspace_and_keep_user_edits(tmp_path):
    (tmp_path / "SOUL.md").write_text("mine")
    written = {p.relative_to(tmp_path).as_posix() for p in write_templates(tmp_path)}
    assert "AGENTS.md" in written and "memory/MEMORY.md" in written
    assert "SOUL.md" not in written and (tmp_path / "SOUL.md").read_text() == "mine"
    assert oct((tmp_path / "AGENTS.md").stat().st_mode)[-3:] == "600"


def test_a_linked_memory_folder_or_file_is_never_written_through(tmp_path):
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    os.symlink(outside, ws / "memory")  # planted by a command in the sandbox
    os.symlink(outside / "agents.txt", ws / "AGENTS.md")  # a dangling link
    written = write_templates(ws)
    assert list(outside.iterdir()) == []
    assert ws / "AGENTS.md" not in written and ws / "memory" / "MEMORY.md" not in written
    assert (ws / "USER.md") in written


def test_the_user_text_sent_to_the_model_is_redacted(tmp_path):
    REDACTOR.add("sk-live-user-pasted-0123456789")
    try:
        sent = request_content("my key is sk-live-user-pasted-0123456789", [], "gpt-4o")
        img = tmp_path / "a.png"
        img.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 20)
        parts = request_content("again sk-live-user-pasted-0123456789", [str(img)], "gpt-4o")
    finally:
        REDACTOR.clear()
    assert "sk-live-user-pasted" not in sent
    assert "sk-live-user-pasted" not in parts[0]["text"]
    assert parts[1]["type"] == "image_url"
