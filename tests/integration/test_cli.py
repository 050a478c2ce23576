"""The real CLI process against a scripted model server: replies, tools, faults, config errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from fakes.llm_server import ScriptedLLMServer, error, reply, tool_call
from harness import REPO

KEY = "sk-test-cli-secret-0123456789abcdef"


def openai_env(llm) -> dict:
    return {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": llm.url}


def mode(p) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_version_from_checkout_and_module():
    out = subprocess.run(
        [sys.executable, "nanobot.py", "--version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("nanobot ")
    mod = subprocess.run(
        [sys.executable, "-m", "nanobot", "--version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert mod.stdout == out.stdout


def test_onboard_creates_private_home_config_and_workspace(nb):
    nb.path.rmdir()
    r = nb.run("onboard", "--yes")
    assert r.returncode == 0, r.stderr
    assert mode(nb.path) == 0o700
    assert mode(nb.config) == 0o600
    cfg = json.loads(nb.config.read_text())
    assert cfg["tools"]["restrictToWorkspace"] is True
    ws = nb.path / "workspace"
    for name in ("AGENTS.md", "SOUL.md", "USER.md", "TOOLS.md", "HEARTBEAT.md", "memory/MEMORY.md"):
        assert (ws / name).is_file(), name
    token_ref = cfg["channels"]["whatsapp"]["bridgeToken"]
    assert token_ref.startswith("file:") and mode(nb.path / "credentials") == 0o700
    # A second non-interactive onboard keeps the config; --force replaces it and keeps a backup.
    nb.config.write_text(nb.config.read_text().replace('"maxTokens": 8192', '"maxTokens": 77'))
    assert nb.run("onboard", "--yes").returncode == 0
    assert '"maxTokens": 77' in nb.config.read_text()
    assert nb.run("onboard", "--yes", "--force").returncode == 0
    assert '"maxTokens": 8192' in nb.config.read_text()
    backups = list(nb.path.glob("config.json.bak-*"))
    assert backups and mode(backups[0]) == 0o600


def test_one_shot_with_only_an_environment_key(nb):
    with ScriptedLLMServer("openai") as llm:
        llm.script([reply("Hello from the model")])
        r = nb.run("agent", "-m", "hi", env=openai_env(llm))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "Hello from the model"
        sent = llm.requests[0]
        assert sent.header("Authorization") == f"Bearer {KEY}"
        assert sent.json["messages"][0]["role"] == "system"
        assert sent.json["messages"][-1] == {"role": "user", "content": "hi"}
    assert not nb.config.exists()


def test_tool_call_result_reaches_the_second_request(nb):
    with ScriptedLLMServer("openai") as llm:
        llm.script(
            [tool_call("write_file", {"path": "note.txt", "content": "hello"}), reply("saved it")]
        )
        r = nb.run("agent", "-m", "write a note", env=openai_env(llm))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "saved it"
        second = llm.requests[1].json["messages"]
        assert (
            second[-2]["role"] == "assistant"
            and second[-2]["tool_calls"][0]["function"]["name"] == "write_file"
        )
        assert second[-1]["role"] == "tool" and "note.txt" in second[-1]["content"]
    assert (nb.path / "workspace" / "note.txt").read_text() == "hello"
    assert "write_file" in nb.log_text()
    files = list((nb.path / "sessions").glob("*.jsonl"))
    assert len(files) == 1 and mode(files[0]) == 0o600
    roles = [json.loads(line)["role"] for line in files[0].read_text().splitlines()]
    assert roles == ["user", "assistant", "tool", "assistant"]


def test_session_history_is_sent_on_the_next_turn(nb):
    with ScriptedLLMServer("openai") as llm:
        llm.script([reply("first answer"), reply("second answer")])
        env = openai_env(llm)
        assert nb.run("agent", "-s", "work", "-m", "remember 42", env=env).returncode == 0
        assert nb.run("agent", "-s", "work", "-m", "what number?", env=env).returncode == 0
        msgs = llm.requests[1].json["messages"]
        assert [m["content"] for m in msgs[1:]] == ["remember 42", "first answer", "what number?"]


def test_429_with_retry_after_then_success(nb):
    with ScriptedLLMServer("openai") as llm:
        llm.script([error(429, headers={"Retry-After": "1"}), reply("after the wait")])
        r = nb.run("agent", "-m", "hi", env=openai_env(llm))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "after the wait"
        assert len(llm.requests) == 2
        gap = llm.requests[1].time - llm.requests[0].time
        assert gap >= 0.9  # Retry-After was honoured


def test_five_500s_give_a_short_apology_without_details(nb):
    with ScriptedLLMServer("openai") as llm:
        llm.script([error(500)] * 6)
        r = nb.run("agent", "-m", "hi", env=openai_env(llm))
        assert r.returncode == 1
        assert "Sorry" in r.stdout and "busy" in r.stdout  # honest: the server, not the network
        for leak in (KEY, llm.url, "Traceback"):
            assert leak not in r.stdout
        assert "Traceback" not in r.stderr and KEY not in r.stderr
        assert len(llm.requests) == 5
    log = nb.log_text()
    assert "500" in log and KEY not in log


def test_anthropic_native_api(nb):
    with ScriptedLLMServer("anthropic") as llm:
        llm.script([tool_call("list_dir", {"path": "."}), reply("listed")])
        env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": llm.url}
        r = nb.run("agent", "-m", "what is here?", env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "listed"
        first, second = llm.requests[0], llm.requests[1]
        assert first.header("x-api-key") == KEY and "system" in first.json
        last = second.json["messages"][-1]
        assert last["role"] == "user" and last["content"][0]["type"] == "tool_result"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "invalid JSON at line 1"),
        ('{"tools": {"exec": {"timeout": "soon"}}}', "tools.exec.timeout: expected a number"),
        (
            '{"agents": {"defaults": {"temperature": 9}}}',
            "agents.defaults.temperature: 9.0 is out of range",
        ),
        (
            '{"providers": {"openai": {"apiKey": "${NB_MISSING_VAR}"}}}',
            "environment variable NB_MISSING_VAR",
        ),
    ],
)
def test_config_errors_exit_2_with_one_line(nb, text, needle):
    nb.write_config({})
    nb.config.write_text(text)
    for args in (("agent", "-m", "hi"), ("status",)):
        r = nb.run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert needle in r.stderr and str(nb.config) in r.stderr and "fix:" in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unknown_key_warns_but_runs(nb):
    with ScriptedLLMServer("openai") as llm:
        nb.write_config({"agents": {"defaults": {"maxTokenz": 5}}})
        r = nb.run("agent", "-m", "hi", env=openai_env(llm))
        assert r.returncode == 0
        assert "maxTokenz" in r.stderr and "maxTokens" in r.stderr


def test_loose_config_mode_is_a_warning_naming_chmod(nb):
    with ScriptedLLMServer("openai") as llm:
        nb.write_config({}, mode=0o644)
        r = nb.run("agent", "-m", "hi", env=openai_env(llm))
        assert r.returncode == 0
        assert f"chmod 600 {nb.config}" in r.stderr
    events = [
        json.loads(line) for line in (nb.path / "logs" / "audit.jsonl").read_text().splitlines()
    ]
    assert any(e["event"] == "permission_warning" and "chmod 600" in e["message"] for e in events)


def test_no_provider_key_names_the_fix(nb):
    r = nb.run("agent", "-m", "hi")
    assert r.returncode == 2
    assert "OPENAI_API_KEY" in r.stderr and "Traceback" not in r.stderr


def test_status_shows_which_providers_have_keys_never_the_keys(nb):
    nb.write_config({"providers": {"anthropic": {"apiKey": "sk-ant-status-secret-value-1"}}})
    r = nb.run("status", env={"OPENAI_API_KEY": KEY})
    assert r.returncode == 0, r.stderr
    assert "anthropic (config)" in r.stdout and "openai (environment)" in r.stdout
    assert "Exec:" in r.stdout and "sandbox=" in r.stdout
    assert KEY not in r.stdout and "sk-ant-status-secret-value-1" not in r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the root refusal can only be shown as root")
def test_refuses_root_without_allow_root(nb):
    env = nb.env({"OPENAI_API_KEY": KEY})
    for cmd in ("agent", "gateway"):
        r = subprocess.run(
            [
                sys.executable,
                str(REPO / "nanobot.py"),
                cmd,
                *(["-m", "hi"] if cmd == "agent" else []),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert r.returncode == 2
        assert "refusing to run as root" in r.stderr and "--allow-root" in r.stderr


def test_secrets_never_reach_output_logs_or_sessions(nb):
    tg_token = "987654321:AAtelegram-secret-token-abcdefghijklmn"
    with ScriptedLLMServer("openai") as llm:
        llm.script(
            [
                tool_call("exec", {"command": "env; cat /proc/self/environ"}),
                reply(f"the key is {KEY}"),
            ]
        )
        nb.write_config({"channels": {"telegram": {"token": "${NB_TG}"}}})
        r = nb.run("agent", "-m", "print your secrets", env={**openai_env(llm), "NB_TG": tg_token})
        tool_result = llm.requests[1].json["messages"][-1]["content"]
    assert KEY not in tool_result and tg_token not in tool_result
    written = nb.all_written_text()
    for secret in (KEY, tg_token):
        assert secret not in written
        assert secret not in r.stderr
    assert "ExecTool:" in nb.log_text()


def test_interactive_mode_reads_until_exit(nb):
    with ScriptedLLMServer("openai") as llm:
        llm.script([reply("first reply"), reply("second reply")])
        r = nb.run(
            "agent",
            "-s",
            "chat",
            env=openai_env(llm),
            input="hello\n\nhow are you?\nexit\nnever sent\n",
        )
        assert r.returncode == 0, r.stderr
        assert "first reply" in r.stdout and "second reply" in r.stdout
        assert [last["content"] for last in (q.json["messages"][-1] for q in llm.requests)] == [
            "hello",
            "how are you?",
        ]
    r = nb.run("agent", env={"OPENAI_API_KEY": KEY}, input="")  # Ctrl-D at the first prompt
    assert r.returncode == 0


def test_config_values_reach_the_model_request(nb):
    with ScriptedLLMServer("openai") as llm:
        llm.script([tool_call("list_dir", {}), tool_call("list_dir", {}), reply("never reached")])
        nb.write_config(
            {
                "providers": {
                    "openai": {
                        "apiKey": "${NB_KEY}",
                        "apiBase": llm.url,
                        "extraHeaders": {"X-Team_Id": "t1"},
                    }
                },
                "agents": {
                    "defaults": {
                        "model": "gpt-4o-mini",
                        "maxTokens": 321,
                        "temperature": 0.25,
                        "maxToolIterations": 2,
                    }
                },
            }
        )
        r = nb.run("agent", "-m", "hi", env={"NB_KEY": KEY})
        assert r.returncode == 0, r.stderr
        assert "maxToolIterations" in r.stdout  # stopped after two tool steps and said why
        body = llm.requests[0].json
        assert (body["model"], body["max_tokens"], body["temperature"]) == (
            "gpt-4o-mini",
            321,
            0.25,
        )
        assert llm.requests[0].header("X-Team_Id") == "t1"
        assert len(llm.requests) == 2


def test_log_file_is_private_and_has_the_grep_phrases(nb):
    with ScriptedLLMServer("openai") as llm:
        llm.script(
            [
                tool_call("exec", {"command": "rm -rf /"}),
                tool_call("exec", {"command": "echo hi"}),
                reply("done"),
            ]
        )
        r = nb.run("agent", "-m", "clean up", env=openai_env(llm))
        assert r.returncode == 0, r.stderr
        assert "blocked by safety guard" in llm.requests[1].json["messages"][-1]["content"]
    log = nb.path / "logs" / "nanobot.log"
    assert mode(log) == 0o600 and mode(log.parent) == 0o700
    text = log.read_text()
    assert "blocked by safety guard" in text and "ExecTool: echo hi" in text
    audit = (nb.path / "logs" / "audit.jsonl").read_text()
    assert '"blocked by guard"' in audit and mode(nb.path / "logs" / "audit.jsonl") == 0o600


def test_cli_start_imports_nothing_heavy():
    code = (
        "import sys, nanobot.cli, nanobot.config, nanobot.providers.registry;"
        "heavy = {'requests', 'urllib3', 'asyncio', 'ssl'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_interactive_on_a_terminal_shows_thinking_and_keeps_history(nb):
    import os
    import pty
    import select

    with ScriptedLLMServer("openai") as llm:
        llm.script([reply("hello from the terminal", delay=0.5)])
        leader, follower = pty.openpty()
        proc = nb.popen(
            "agent", env=openai_env(llm), stdin=follower, stdout=follower, stderr=follower
        )
        os.close(follower)
        seen = b""

        def read_until(marker: bytes, timeout: float = 20) -> None:
            nonlocal seen
            deadline = time.monotonic() + timeout
            while marker not in seen and time.monotonic() < deadline:
                if select.select([leader], [], [], 0.1)[0]:
                    seen += os.read(leader, 4096)
            assert marker in seen, seen.decode(errors="replace")

        read_until(b"You: ")
        os.write(leader, b"hi there\n")
        read_until(b"hello from the terminal")
        os.write(leader, b"quit\n")
        assert proc.wait(20) == 0
        os.close(leader)
    assert "thinking" in seen.decode(errors="replace")
    history = nb.path / "history"
    assert "hi there" in history.read_text() and mode(history) == 0o600
