"""Approvals in the chat, end to end: the real gateway, a fake Telegram with inline buttons
(callback_query), a scripted model that asks to delete a file."""

from __future__ import annotations

import json
import time

import pytest

from fakes.llm_server import ScriptedLLMServer, last_user_text, reply, tool_call
from fakes.telegram_server import FakeTelegram

KEY = "sk-test-approvals-0123456789"
OWNER, FRIEND, STRANGER = 111, 333, 222
GROUP = -1001


class ButtonTelegram(FakeTelegram):
    """FakeTelegram plus the two Bot API methods the approval buttons use."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[dict] = []
        self.edited: list[dict] = []

    def api_answerCallbackQuery(self, params: dict) -> bool:
        with self._cond:
            self.answers.append(dict(params))
            self._cond.notify_all()
        return True

    def api_editMessageText(self, params: dict) -> dict:
        with self._cond:
            self.edited.append(dict(params))
            self._cond.notify_all()
        return {"message_id": params.get("message_id"), "text": params.get("text")}

    def press(self, user: int, request: dict, scope: str, *, data: str | None = None) -> None:
        """The user presses a button under the request message (data overrides callback_data)."""
        buttons = [b for row in request["reply_markup"]["inline_keyboard"] for b in row]
        real = next(
            b["callback_data"] for b in buttons if b["callback_data"].split(":")[1] == scope
        )
        self.push_update(
            {
                "callback_query": {
                    "id": f"cq{time.monotonic_ns()}",
                    "from": {"id": user, "is_bot": False, "first_name": "U"},
                    "message": {
                        "message_id": request.get("message_id", 1),
                        "chat": {"id": int(request["chat_id"])},
                        "text": request["text"],
                    },
                    "data": data if data is not None else real,
                }
            }
        )

    def wait_for_request(self, n: int = 1, timeout: float = 15.0) -> dict:
        self.wait_for(
            lambda: len([m for m in self.sent if "reply_markup" in m]) >= n, timeout, "request"
        )
        with self._cond:
            return [m for m in self.sent if "reply_markup" in m][n - 1]

    def texts(self, chat) -> list[str]:
        with self._cond:
            return [m["text"] for m in self.sent if str(m["chat_id"]) == str(chat)]


def responder(body: dict):
    """`run CMD` → the exec tool; a tool result → a reply that quotes it."""
    last = body["messages"][-1]
    if last.get("role") == "tool":
        return reply(f"tool said: {str(last.get('content'))[:300]}")
    text = last_user_text(body)
    if text.startswith("run "):
        return tool_call("exec", {"command": text[4:]})
    return reply(f"echo: {text}")


@pytest.fixture
def servers():
    with ScriptedLLMServer("openai") as llm, ButtonTelegram() as tg:
        llm.respond_with(responder)
        yield llm, tg


def config(llm, tg, **approval) -> dict:
    return {
        "providers": {"openai": {"apiKey": KEY, "apiBase": llm.url}},
        "agents": {"defaults": {"model": "gpt-test"}},
        "channels": {
            "sendProgress": False,
            "telegram": {
                "enabled": True,
                "token": tg.token,
                "apiBase": tg.api_base,
                "allowFrom": [str(OWNER), str(FRIEND)],
                "pollTimeout": 1,
                "groupPolicy": "open",
            },
        },
        "tools": {
            "exec": {"sandbox": "none"},
            "approval": {"mode": "risky", **approval},
        },
        "gateway": {"port": 0},
    }


def audit(nb) -> list[dict]:
    path = nb.path / "logs" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def victim(nb):
    return nb.write_file("workspace/victim.txt", "precious")


def test_approve_once_runs_the_command(nb, servers, start):
    llm, tg = servers
    target = victim(nb)
    start(config(llm, tg))
    tg.push_message(OWNER, "run rm victim.txt")
    request = tg.wait_for_request()
    assert request["chat_id"] == str(OWNER)
    assert "Command: rm victim.txt" in request["text"] and "deletes files" in request["text"]
    assert "Sandbox: off" in request["text"] and target.exists()
    tg.press(OWNER, request, "once")
    tg.wait_for(lambda: any("tool said" in t for t in tg.texts(OWNER)), 15, "the reply")
    assert not target.exists()
    assert tg.answers and tg.answers[0]["text"].startswith("Approved")
    assert tg.edited and "Approved once" in tg.edited[0]["text"]
    events = [e for e in audit(nb) if e["event"].startswith("approval")]
    assert [e["event"] for e in events] == ["approval_request", "approval_answer"]
    assert events[1]["decision"] == "approved once" and events[1]["by"].startswith(str(OWNER))


def test_deny_keeps_the_file_and_tells_the_model(nb, servers, start):
    llm, tg = servers
    target = victim(nb)
    start(config(llm, tg))
    tg.push_message(OWNER, "run rm victim.txt")
    tg.press(OWNER, tg.wait_for_request(), "deny")
    tg.wait_for(lambda: any("tool said" in t for t in tg.texts(OWNER)), 15, "the reply")
    assert target.exists()
    final = [t for t in tg.texts(OWNER) if "tool said" in t][0]
    assert "refused" in final and "did not run" in final


def test_slash_approve_answers_without_a_new_turn(nb, servers, start):
    llm, tg = servers
    target = victim(nb)
    start(config(llm, tg))
    tg.push_message(OWNER, "run rm victim.txt")
    request = tg.wait_for_request()
    code = request["text"].split("Code ")[1].split()[0]
    tg.push_message(OWNER, "/approve WRONG1")
    tg.wait_for(lambda: any("No request" in t for t in tg.texts(OWNER)), 10, "refusal")
    assert target.exists()
    tg.push_message(OWNER, f"/approve {code}")
    tg.wait_for(lambda: any("tool said" in t for t in tg.texts(OWNER)), 15, "the reply")
    assert not target.exists()
    asked = [last_user_text(r.json) for r in llm.requests]
    assert not any(a.startswith("/approve") for a in asked)  # an answer is not a turn


def test_group_stranger_and_non_approver_cannot_approve(nb, servers, start):
    llm, tg = servers
    target = victim(nb)
    start(config(llm, tg, approvers={"telegram": [str(OWNER)]}, requireOtherApprover=True))
    tg.push_message(FRIEND, "run rm victim.txt", chat_id=GROUP, chat_type="supergroup")
    request = tg.wait_for_request()
    assert request["chat_id"] == str(GROUP)
    tg.press(STRANGER, request, "once")  # not in allowFrom: nothing happens, nothing answered
    tg.press(FRIEND, request, "once")  # admitted, the requester, not an approver
    tg.wait_for(lambda: len(tg.answers) >= 1, 10, "an answer to the friend")
    time.sleep(1.0)
    assert len(tg.answers) == 1 and "Only an approver" in tg.answers[0]["text"]
    assert target.exists() and not tg.edited
    # a forged press: the right code with another call's hash
    forged = request["reply_markup"]["inline_keyboard"][0][0]["callback_data"][:-12] + "0" * 12
    tg.press(OWNER, request, "once", data=forged)
    tg.wait_for(lambda: len(tg.answers) >= 2, 10, "an answer to the forgery")
    assert "No request" in tg.answers[1]["text"] and target.exists()
    tg.press(OWNER, request, "once")
    tg.wait_for(lambda: any("tool said" in t for t in tg.texts(GROUP)), 15, "the reply")
    assert not target.exists()
    tg.press(OWNER, request, "once")  # replayed: the code was single-use
    tg.wait_for(lambda: len(tg.answers) >= 4, 10, "an answer to the replay")
    assert "No request" in tg.answers[3]["text"]
    refused = [e["reason"] for e in audit(nb) if e["event"] == "approval_refused"]
    assert refused == ["not an approver", "code and call do not match", "unknown code"]
    assert not any(
        str(STRANGER) in str(e.get("sender")) for e in audit(nb) if "approval" in e["event"]
    )


def test_no_answer_expires_as_denied(nb, servers, start):
    llm, tg = servers
    target = victim(nb)
    start(config(llm, tg, timeoutSeconds=5))
    tg.push_message(OWNER, "run rm victim.txt")
    tg.wait_for_request()
    tg.wait_for(lambda: any("tool said" in t for t in tg.texts(OWNER)), 20, "the reply")
    assert target.exists()
    assert any("expired" in t for t in tg.texts(OWNER))
    assert "approval_expired" in [e["event"] for e in audit(nb)]


def test_restart_voids_a_waiting_request(nb, servers, start):
    llm, tg = servers
    target = victim(nb)
    gw = start(config(llm, tg))
    tg.push_message(OWNER, "run rm victim.txt")
    old = tg.wait_for_request()
    gw.stop()  # SIGKILL while the request waits
    start(config(llm, tg))
    fresh = tg.wait_for_request(2)  # the turn ran again and asked again, with a new code
    assert fresh["reply_markup"] != old["reply_markup"]
    tg.press(OWNER, old, "once")  # the old button approves nothing
    tg.wait_for(lambda: len(tg.answers) >= 1, 10, "an answer to the old button")
    assert "No request" in tg.answers[0]["text"]
    time.sleep(1.0)
    assert target.exists()
    tg.press(OWNER, fresh, "once")
    tg.wait_for(lambda: any("tool said" in t for t in tg.texts(OWNER)), 15, "the reply")
    assert not target.exists()
