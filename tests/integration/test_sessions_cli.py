"""`nanobot sessions list|show|rm` on sessions written by real turns."""

from __future__ import annotations

from fakes.llm_server import ScriptedLLMServer, reply

KEY = "sk-test-sessions-cli-0123456789"


def test_list_show_and_remove_a_session(nb):
    with ScriptedLLMServer("openai") as llm:
        llm.script([reply("noted 42"), reply("hello")])
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": llm.url}
        assert nb.run("agent", "-s", "work", "-m", "remember 42", env=env).returncode == 0
        assert nb.run("agent", "-s", "home", "-m", "hi", env=env).returncode == 0
    listed = nb.run("sessions", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert len(rows) == 2
    work = next(name for name in rows if name.startswith("cli_work"))
    assert rows[work][1:3] == ["cli", "2"]  # channel, messages
    shown = nb.run("sessions", "show", "cli:work")  # a key works as well as the listed name
    assert shown.returncode == 0
    assert "user: remember 42" in shown.stdout and "assistant: noted 42" in shown.stdout
    removed = nb.run("sessions", "rm", work)
    assert removed.returncode == 0 and "Removed 1" in removed.stdout
    missing = nb.run("sessions", "show", work)
    assert missing.returncode == 1 and "sessions list" in missing.stderr
    assert work not in nb.run("sessions", "list").stdout
    assert nb.run("sessions", "show", "../config").returncode == 1
