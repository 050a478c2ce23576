"""read_file / write_file / edit_file / list_dir on real files, including the path-policy attacks."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from nanobot.security.pathpolicy import PathPolicy
from nanobot.tools.base import (
    ALLOWED,
    MAX_RESULT_CHARS,
    REFUSED_BY_PATH_POLICY,
    ToolContext,
    ToolResult,
    validate_args,
)
from nanobot.tools.files import (
    MAX_LIST_ENTRIES,
    MAX_READ_BYTES,
    EditFileTool,
    ListDirTool,
    ReadFileTool,
    WriteFileTool,
)

SECRET = "top-secret-value-123"
TOOLS = (ReadFileTool, WriteFileTool, EditFileTool, ListDirTool)


@pytest.fixture
def env(tmp_path: Path):
    ws = tmp_path / "W"
    (ws / "src").mkdir(parents=True)
    home = tmp_path / "H"
    (home / "credentials").mkdir(parents=True)
    (home / "config.json").write_text(SECRET)
    (home / "credentials" / "openai").write_text(SECRET)
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "W2").mkdir()
    (tmp_path / "W2" / "secret.txt").write_text(SECRET)
    return tmp_path, ws, home


def run(tool_cls, policy: PathPolicy, **kwargs) -> ToolResult:
    return asyncio.run(tool_cls(policy).execute(ToolContext(), **kwargs))


def test_schemas_are_strict_and_names_match():
    names = [cls.name for cls in TOOLS]
    assert names == ["read_file", "write_file", "edit_file", "list_dir"]
    for cls in TOOLS:
        assert cls.parameters["additionalProperties"] is False
        assert cls.description
        assert validate_args(cls.parameters, {"path": "x", "bogus": 1})
    assert validate_args(WriteFileTool.parameters, {"path": "a", "content": "b"}) == []
    assert validate_args(ListDirTool.parameters, {}) == []
    assert validate_args(ReadFileTool.parameters, {}) == ["missing required argument 'path'"]


def test_write_then_read_creates_parents_and_logs(env, caplog):
    _, ws, home = env
    policy = PathPolicy(ws, True, home)
    caplog.set_level(logging.INFO, logger="nanobot.tools")
    result = run(WriteFileTool, policy, path="notes/2024/today.md", content="héllo\n")
    assert result.decision == ALLOWED and not result.text.startswith("Error")
    assert (ws / "notes" / "2024" / "today.md").read_text() == "héllo\n"
    size = len("héllo\n".encode())
    assert (
        f"write_file: wrote {size} bytes to {ws.resolve() / 'notes/2024/today.md'}" in caplog.text
    )
    assert run(ReadFileTool, policy, path="notes/2024/today.md").text == "héllo\n"
    run(WriteFileTool, policy, path="notes/2024/today.md", content="x")
    assert (ws / "notes" / "2024" / "today.md").read_text() == "x"  # replaced, not appended


def test_read_caps_long_text(env):
    _, ws, home = env
    (ws / "long.txt").write_text("a" * (MAX_RESULT_CHARS * 3))
    text = run(ReadFileTool, PathPolicy(ws, True, home), path="long.txt").text
    assert text.startswith("a" * 100) and "truncated" in text
    assert len(text) < MAX_RESULT_CHARS + 100


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x7fELF\x00\x01\x02binary", "binary"),
        (b"\xff\xfe\xfa not utf-8", "not UTF-8"),
        (b"a" * (MAX_READ_BYTES + 1), "larger than"),
    ],
)
def test_read_refuses_binary_and_huge(env, content, why):
    _, ws, home = env
    (ws / "f.bin").write_bytes(content)
    result = run(ReadFileTool, PathPolicy(ws, True, home), path="f.bin")
    assert result.text.startswith("Error:") and why in result.text


def test_read_errors_say_what_to_do(env):
    _, ws, home = env
    policy = PathPolicy(ws, True, home)
    assert "list_dir" in run(ReadFileTool, policy, path="missing.txt").text
    assert "list_dir" in run(ReadFileTool, policy, path="src").text


def test_fifo_is_refused_without_blocking(env):
    _, ws, home = env
    os.mkfifo(ws / "pipe")
    policy = PathPolicy(ws, True, home)
    assert "not a regular file" in run(ReadFileTool, policy, path="pipe").text
    assert run(WriteFileTool, policy, path="pipe", content="x").text.startswith("Error:")


def test_edit_replaces_exactly_one_occurrence(env, caplog):
    _, ws, home = env
    policy = PathPolicy(ws, True, home)
    target = ws / "x.py"
    target.write_text("a = 1\nb = 2\nb = 2\n")
    os.chmod(target, 0o640)
    caplog.set_level(logging.INFO, logger="nanobot.tools")
    result = run(EditFileTool, policy, path="x.py", old_text="a = 1", new_text="a = 10")
    assert not result.text.startswith("Error") and target.read_text() == "a = 10\nb = 2\nb = 2\n"
    assert f"edit_file: edited {target.resolve()}" in caplog.text
    assert oct(target.stat().st_mode)[-3:] == "640"

    missing = run(EditFileTool, policy, path="x.py", old_text="zzz", new_text="y")
    assert missing.text.startswith("Error:") and "read_file" in missing.text
    twice = run(EditFileTool, policy, path="x.py", old_text="b = 2", new_text="b = 3")
    assert twice.text.startswith("Error:") and "2 times" in twice.text
    assert "more surrounding lines" in twice.text
    assert target.read_text() == "a = 10\nb = 2\nb = 2\n"  # failed edits change nothing
    empty = run(EditFileTool, policy, path="x.py", old_text="", new_text="y")
    assert empty.text.startswith("Error:")


def test_list_dir_sorted_with_slashes_and_capped(env):
    _, ws, home = env
    policy = PathPolicy(ws, True, home)
    (ws / "b.txt").write_text("")
    (ws / "a.txt").write_text("")
    (ws / "zdir").mkdir()
    assert run(ListDirTool, policy, path=".").text.splitlines() == [
        "a.txt",
        "b.txt",
        "src/",
        "zdir/",
    ]
    assert run(ListDirTool, policy).text.splitlines()[0] == "a.txt"  # default: the workspace
    assert "is empty" in run(ListDirTool, policy, path="zdir").text
    many = ws / "many"
    many.mkdir()
    for i in range(MAX_LIST_ENTRIES + 7):
        (many / f"f{i:04d}").write_text("")
    lines = run(ListDirTool, policy, path="many").text.splitlines()
    assert lines[0] == "f0000" and lines[-1] == "... (7 more entries)"
    assert len(lines) == MAX_LIST_ENTRIES + 1
    assert run(ListDirTool, policy, path="a.txt").text.startswith("Error:")
    assert run(ListDirTool, policy, path="nope").text.startswith("Error:")


@pytest.mark.parametrize(
    "raw",
    [
        "../secret.txt",
        "src/../../secret.txt",
        "{W}/src/../../secret.txt",
        "{T}/W2/secret.txt",
        "{H}/config.json",
        "~/.ssh/id_rsa",
        "~root/.bashrc",
        "$HOME/.bashrc",
        "/proc/self/root/etc/passwd",
        "/proc/self/environ",
        "a\x00b",
        "x" * 5000,
        "d/" + "n" * 300,
    ],
)
def test_every_tool_refuses_escapes(env, raw):
    tmp, ws, home = env
    policy = PathPolicy(ws, True, home)
    path = raw.format(W=ws, T=tmp, H=home)
    args = {"content": "pwned", "old_text": SECRET, "new_text": "pwned"}
    for cls in TOOLS:
        result = run(cls, policy, path=path, **args)
        assert result.decision == REFUSED_BY_PATH_POLICY, (cls.name, result.text)
        assert result.text.startswith("Error:") and SECRET not in result.text
    assert (tmp / "secret.txt").read_text() == SECRET
    assert (home / "config.json").read_text() == SECRET


def test_symlinks_out_of_the_workspace_are_refused(env):
    tmp, ws, home = env
    (ws / "etc").symlink_to("/etc")
    (ws / "cfg").symlink_to(home / "config.json")
    (ws / "up").symlink_to(tmp)
    (ws / "dangling").symlink_to(tmp / "created-outside.txt")
    policy = PathPolicy(ws, True, home)
    assert run(ReadFileTool, policy, path="etc/passwd").decision == REFUSED_BY_PATH_POLICY
    assert run(ReadFileTool, policy, path="cfg").decision == REFUSED_BY_PATH_POLICY
    assert run(ListDirTool, policy, path="etc").decision == REFUSED_BY_PATH_POLICY
    result = run(WriteFileTool, policy, path="up/secret.txt", content="pwned")
    assert result.decision == REFUSED_BY_PATH_POLICY
    result = run(WriteFileTool, policy, path="dangling", content="pwned")
    assert result.decision == REFUSED_BY_PATH_POLICY
    assert not (tmp / "created-outside.txt").exists()
    assert (tmp / "secret.txt").read_text() == SECRET


def test_unrestricted_reaches_outside_but_never_home_secrets(env):
    tmp, ws, home = env
    policy = PathPolicy(ws, False, home)
    assert run(ReadFileTool, policy, path=str(tmp / "secret.txt")).text == SECRET
    for path in (
        str(home / "config.json"),
        str(home / "credentials" / "openai"),
        "../H/config.json",
    ):
        result = run(ReadFileTool, policy, path=path)
        assert result.decision == REFUSED_BY_PATH_POLICY and SECRET not in result.text
    for path in (str(home / "credentials" / "new"), str(home / "whatsapp-auth" / "creds.json")):
        result = run(WriteFileTool, policy, path=path, content="x")
        assert result.decision == REFUSED_BY_PATH_POLICY
    assert not (home / "credentials" / "new").exists()
    assert not (home / "whatsapp-auth").exists()
    assert run(ListDirTool, policy, path=str(home)).decision == REFUSED_BY_PATH_POLICY
    edit = run(EditFileTool, policy, path=str(home / "config.json"), old_text=SECRET, new_text="")
    assert edit.decision == REFUSED_BY_PATH_POLICY
    assert (home / "config.json").read_text() == SECRET


def test_refusals_are_logged(env, caplog):
    _, ws, home = env
    caplog.set_level(logging.INFO, logger="nanobot.tools")
    run(WriteFileTool, PathPolicy(ws, True, home), path="../x", content="y")
    assert "write_file: refused by path policy" in caplog.text
