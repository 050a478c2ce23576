"""Cron, heartbeat and subagents in the real gateway process, with the fake Telegram API and
the scripted model: each upstream bug the feature is known for, tried for real."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime

import pytest

from fakes.llm_server import ScriptedLLMServer, last_user_text, reply, tool_call
from fakes.telegram_server import FakeTelegram

KEY = "sk-test-automation-0123456789"
ALICE, BOB = 111, 222


def gateway_config(llm, tg, **overrides) -> dict:
    cfg = {
        "providers": {"openai": {"apiKey": KEY, "apiBase": llm.url}},
        "agents": {"defaults": {"model": "gpt-test"}},
        "channels": {
            "telegram": {
                "enabled": True,
                "token": tg.token,
                "apiBase": tg.api_base,
                "pollTimeout": 1,
            }
        },
        "gateway": {"port": 0, "shutdownTimeout": 20},
    }
    for path, value in overrides.items():
        node = cfg
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return cfg


def texts_for(tg, chat_id) -> list[str]:
    return [m["text"] for m in tg.sent if str(m["chat_id"]) == str(chat_id)]


def iso_in(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, UTC).isoformat(timespec="seconds")


def last_role(body: dict) -> str:
    return (body.get("messages") or [{}])[-1].get("role", "")


def model(body: dict):
    """The scripted model: tool calls for the requests the tests make, echoes otherwise."""
    text = last_user_text(body)
    if last_role(body) == "tool":
        return reply("done: " + str(body["messages"][-1].get("content"))[:200])
    if text.startswith("[Scheduled job"):
        return reply("Reminder: " + text.split("\n\n", 1)[1])
    if text.startswith("[Heartbeat"):
        return reply("Found: the disk is full" if "report-me" in text else "HEARTBEAT_OK")
    if text.startswith("[You are a background worker"):
        task = text.split("\n\n", 1)[1]
        return reply(f"result of {task}", delay=8.0 if "slow" in task else 0.5)
    if text.startswith("[Background task"):
        return reply("Relayed: " + text.split("\n\n", 1)[1])
    if text.startswith("remind me"):
        return tool_call("cron", {"action": "add", "message": "stretch", "at": iso_in(2)})
    if text.startswith("spawn"):
        return tool_call("spawn", {"task": text.removeprefix("spawn ").strip(), "label": "job"})
    return reply(f"echo: {text}")


@pytest.fixture
def servers():
    with ScriptedLLMServer("openai") as llm, FakeTelegram() as tg:
        llm.respond_with(model)
        yield llm, tg


def config(llm, tg, **overrides) -> dict:
    base = {
        "channels.telegram.allowFrom": [str(ALICE), str(BOB)],
        "agents.defaults.heartbeatMinutes": 0,
        "security.rateLimit.messagesPerMinute": 0,
    }
    return gateway_config(llm, tg, **{**base, **overrides})


def prompts(llm, prefix: str) -> list[str]:
    return [t for t in (last_user_text(r.json) for r in llm.requests) if t.startswith(prefix)]


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_reminder_goes_to_its_chat_only_and_a_reply_does_not_retrigger_it(nb, servers, start):
    llm, tg = servers
    start(config(llm, tg))
    tg.push_message(ALICE, "remind me to stretch")
    wait_until(lambda: any("Reminder" in t for t in texts_for(tg, ALICE)), 15, "the reminder")
    assert texts_for(tg, BOB) == []  # no other chat
    assert len(prompts(llm, "[Scheduled job")) == 1
    jobs_file = json.loads((nb.path / "cron" / "jobs.json").read_text())
    assert jobs_file["jobs"] == []  # the one-shot is gone once it ran

    tg.push_message(ALICE, "thanks, done")
    wait_until(lambda: "echo: thanks, done" in texts_for(tg, ALICE), 10, "the answer")
    time.sleep(2.5)
    assert len(prompts(llm, "[Scheduled job")) == 1  # the reply did not re-trigger the job
    answer_req = next(r for r in llm.requests if last_user_text(r.json) == "thanks, done")
    history = [m.get("content") for m in answer_req.json["messages"]]
    assert any("[scheduled job" in str(c) and "Reminder" in str(c) for c in history)
    audit = (nb.path / "logs" / "audit.jsonl").read_text()
    assert '"cron_run"' in audit and '"sent"' in audit


def test_cli_changes_take_effect_while_the_gateway_runs(nb, servers, start):
    llm, tg = servers
    start(config(llm, tg))
    out = nb.run("cron", "add", "-n", "made-up", "-m", "x", "-e", "60", "--to", "999")
    assert out.returncode != 0 and "allowFrom" in out.stderr  # never a made-up chat

    out = nb.run(
        "cron", "add", "-n", "soon", "-m", "drink water", "--at", iso_in(2), "-d", "--to", str(BOB)
    )
    assert out.returncode == 0, out.stderr
    wait_until(lambda: texts_for(tg, BOB), 15, "the CLI job's message")
    assert texts_for(tg, BOB) == ["Reminder: drink water"] and texts_for(tg, ALICE) == []

    def add(name: str) -> str:
        res = nb.run("cron", "add", "-n", name, "-m", name, "-e", "3600", "--to", str(BOB))
        assert res.returncode == 0, res.stderr
        return res.stdout.split()[2]

    kept, disabled, removed = add("kept"), add("disabled"), add("removed")
    assert nb.run("cron", "disable", disabled).returncode == 0
    assert nb.run("cron", "remove", removed).returncode == 0
    assert nb.run("cron", "run", disabled).returncode != 0  # disabled: needs --force
    assert nb.run("cron", "run", kept).returncode == 0
    wait_until(lambda: len(prompts(llm, "[Scheduled job")) == 2, 10, "the requested run")
    time.sleep(1.5)  # the gateway has recorded the run in the store by now
    listed = nb.run("cron", "list", "--all").stdout
    assert kept in listed and disabled in listed and removed not in listed  # never comes back
    assert "disabled" in listed.split(disabled, 1)[1].splitlines()[0]
    stored = json.loads((nb.path / "cron" / "jobs.json").read_text())["jobs"]
    assert {j["id"] for j in stored} == {kept, disabled}
    assert next(j for j in stored if j["id"] == kept)["state"]["runs"] == 1
    assert "job(s) loaded" in nb.log_text()


def test_heartbeat_skips_without_tasks_stays_quiet_on_ok_and_reports_findings(nb, servers, start):
    llm, tg = servers
    nb.write_file("workspace/HEARTBEAT.md", "# Heartbeat tasks\n\n<!-- nothing yet -->\n")
    start(
        config(
            llm,
            tg,
            **{"gateway.heartbeat": {"intervalS": 1, "channel": "telegram", "chatId": str(ALICE)}},
        )
    )
    time.sleep(3.5)
    assert prompts(llm, "[Heartbeat") == []  # no tasks: no model call at all
    nb.write_file("workspace/HEARTBEAT.md", "# Tasks\n- a quiet check\n")
    wait_until(lambda: len(prompts(llm, "[Heartbeat")) >= 2, 10, "beats with a task")
    assert texts_for(tg, ALICE) == []  # HEARTBEAT_OK sends nothing
    nb.write_file("workspace/HEARTBEAT.md", "# Tasks\n- report-me\n")
    wait_until(lambda: texts_for(tg, ALICE), 10, "the heartbeat's findings")
    assert texts_for(tg, ALICE)[0] == "Found: the disk is full" and texts_for(tg, BOB) == []
    assert "heartbeat" in nb.log_text()


def test_subagent_reports_back_is_listed_stopped_and_survives_a_restart(nb, servers, start):
    llm, tg = servers
    cfg = config(llm, tg, **{"agents.defaults.maxSubagents": 1})
    gw = start(cfg)
    tg.push_message(ALICE, "spawn quick research")
    wait_until(lambda: any(t.startswith("Relayed") for t in texts_for(tg, ALICE)), 15, "report")
    assert "Relayed: result of quick research" in texts_for(tg, ALICE)

    tg.push_message(ALICE, "spawn slow one")
    wait_until(lambda: len(prompts(llm, "[You are a background worker")) == 2, 10, "2nd task")
    tg.push_message(ALICE, "spawn slow two")  # over the limit of 1
    wait_until(lambda: any("maxSubagents" in str(r.json) for r in llm.requests), 10, "refusal")
    tg.push_message(BOB, "/tasks")
    wait_until(lambda: texts_for(tg, BOB), 10, "bob's /tasks")
    assert "No background tasks" in texts_for(tg, BOB)[0]  # another chat's tasks are private
    tg.push_message(ALICE, "/tasks")
    wait_until(lambda: any("Background tasks:" in t for t in texts_for(tg, ALICE)), 10, "/tasks")
    listing = next(t for t in texts_for(tg, ALICE) if "Background tasks:" in t)
    task_id = listing.splitlines()[1].split(":")[0]
    tg.push_message(ALICE, f"/stop {task_id}")
    wait_until(lambda: any("stopped" in t for t in texts_for(tg, ALICE)), 10, "stop notice")

    tg.push_message(ALICE, "spawn slow three")
    wait_until(lambda: len(prompts(llm, "[You are a background worker")) == 3, 10, "3rd task")
    gw.signal(signal.SIGTERM)
    assert gw.wait(30) == 0
    start(cfg)
    wait_until(lambda: any("interrupted" in t for t in texts_for(tg, ALICE)), 15, "interrupted")
    assert not any("slow three" in t for t in texts_for(tg, ALICE) if t.startswith("Relayed"))


@pytest.fixture(autouse=True)
def no_tracebacks(nb):
    yield
    assert "Traceback" not in nb.log_text()
