"""The interactive terminal on a real pty (its controlling terminal, so Ctrl-C is typed):
streaming, tool-step lines, Markdown, Ctrl-C, bracketed paste, continuation lines, /help."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import termios
import time

import pytest

from fakes.llm_server import ScriptedLLMServer, reply, tool_call
from nanobot.route.store import Store

KEY = "sk-test-terminal-0123456789abcdef"
_SGR = re.compile(r"\x1b\[[0-9;?]*[A-Za-jl-z]")  # styles and modes; \x1b[K is kept


def screen(raw: bytes) -> list[str]:
    """The lines a terminal shows: carriage returns overwrite, ESC[K clears to the end."""
    lines = []
    for line in _SGR.sub("", raw.decode(errors="replace")).split("\n"):
        cells: list[str] = []
        col = 0
        for part in re.split(r"(\r|\x1b\[K)", line):
            if part == "\r":
                col = 0
            elif part == "\x1b[K":
                del cells[col:]
            else:
                for ch in part:
                    cells[col : col + 1] = [ch]
                    col += 1
        lines.append("".join(cells))
    return lines


class Pty:
    """nanobot agent with a pty as its controlling terminal."""

    def __init__(self, nb, llm, *args: str) -> None:
        self.leader, follower = pty.openpty()

        def take_terminal() -> None:  # runs in the child: session leader with this ctty
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": llm.url}
        self.proc = nb.popen(
            "agent",
            *args,
            env=env,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
        os.close(follower)
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 20, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while marker not in self.seen[start:] and time.monotonic() < deadline:
            if select.select([self.leader], [], [], 0.05)[0]:
                try:
                    self.seen += os.read(self.leader, 65536)
                except OSError:
                    break
        assert marker in self.seen[start:], self.seen.decode(errors="replace")
        return self.seen.index(marker, start) + len(marker)

    def type(self, data: bytes) -> int:
        mark = len(self.seen)
        os.write(self.leader, data)
        return mark

    def close(self) -> int:
        try:
            return self.proc.wait(20)
        finally:
            os.close(self.leader)


@pytest.fixture
def llm():
    with ScriptedLLMServer("openai") as server:
        yield server


def test_answer_streams_with_markdown_and_tool_steps_on_their_own_lines(nb, llm):
    llm.script(
        [
            tool_call("write_file", {"path": "notes.txt", "content": "x"}, delay=0.4),
            reply("Saved **notes**.\n- one\n- two\n", chunk_delay=0.1, delay=0.4),
        ]
    )
    t = Pty(nb, llm, "--logs")
    t.read_until(b"You: ")
    t.type(b"save a note\r")
    t.read_until(b"\xe2\x80\xa2 two")  # "• two": the list was rendered
    t.read_until(b"You: ", start=len(t.seen) - 10)
    t.type(b"exit\r")
    assert t.close() == 0
    raw = t.seen
    assert b"\x1b[1mnotes" in raw  # bold
    lines = screen(raw)
    assert "✎ write_file notes.txt" in lines  # a line of its own
    assert "nanobot: Saved notes." in lines
    for line in lines:
        assert not ("thinking" in line and ("INFO" in line or "write_file" in line)), line
    assert any(" INFO " in line for line in lines)  # log records were shown…
    assert all(line.split(" INFO ")[0].count("-") == 2 for line in lines if " INFO " in line)


def test_ctrl_c_cancels_the_reply_then_at_the_prompt_exits(nb, llm):
    llm.script([reply("word " * 400, chunk_delay=0.05), reply("after the cancel")])
    t = Pty(nb, llm)
    t.read_until(b"You: ")
    mark = t.type(b"tell me a long story\r")
    t.read_until(b"word word", start=mark)
    started = time.monotonic()
    mark = t.type(b"\x03")
    t.read_until(b"cancelled", start=mark, timeout=5)
    t.read_until(b"You: ", start=mark, timeout=5)
    assert time.monotonic() - started < 3
    mark = t.type(b"are you there?\r")
    t.read_until(b"after the cancel", start=mark)
    t.read_until(b"You: ", start=mark)
    # The prompt is drawn a moment before readline waits for a key; a ^C in that gap only sets
    # Python's signal flag and is seen at the next key (CPython's readline, not ours). A person
    # cannot type that fast; the test waits as they would.
    time.sleep(0.3)
    started = time.monotonic()
    t.type(b"\x03")
    assert t.close() == 0 and time.monotonic() - started < 5
    assert b"Traceback" not in t.seen
    sessions = list((nb.path / "sessions").glob("*.jsonl"))
    stored = [json.loads(line)["content"] for line in sessions[0].read_text().splitlines()]
    assert stored == ["are you there?", "after the cancel"]  # the cancelled turn left nothing
    assert llm.requests[1].json["messages"][1:] == [{"role": "user", "content": "are you there?"}]


def test_a_paste_is_one_message_and_a_backslash_continues_a_line(nb, llm):
    llm.script([reply("got the paste"), reply("got both lines")])
    t = Pty(nb, llm)
    t.read_until(b"You: ")
    mark = t.type(b"\x1b[200~first pasted line\nsecond pasted line\x1b[201~\r")
    t.read_until(b"got the paste", start=mark)
    t.read_until(b"You: ", start=mark)
    mark = t.type(b"one \\\r")
    t.read_until(b"...", start=mark)
    t.type(b"two\r")
    t.read_until(b"got both lines", start=mark)
    t.read_until(b"You: ", start=mark)
    t.type(b"/help\r")
    t.read_until(b"/reset")
    t.type(b"quit\r")
    assert t.close() == 0
    sent = [r.json["messages"][-1]["content"] for r in llm.requests]
    assert sent == ["first pasted line\nsecond pasted line", "one \ntwo"]


def test_plain_output_when_not_a_terminal(nb, llm):
    llm.script([tool_call("list_dir", {}), reply("**done**")])
    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": llm.url}
    r = nb.run("agent", "-m", "list", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "**done**\n" and "\x1b[" not in r.stdout
    assert "list_dir" in r.stderr


def test_sigint_during_a_one_shot_exits_without_a_traceback(nb, llm):
    llm.script([reply("slow", delay=10)])
    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": llm.url}
    proc = nb.popen("agent", "-m", "hi", env=env, stdout=-1, stderr=-1)
    llm.wait_for_requests(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130 and b"Traceback" not in err
    # The user withdrew it: no later session answers it.
    store = Store(nb.path / "state" / "terminal" / "default", compact=False)
    assert (store.pending(), store.unsent()) == ([], [])
