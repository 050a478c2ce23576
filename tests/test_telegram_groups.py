"""channels.telegram.groupPolicy against FakeTelegram: mention (default), open, off."""

from __future__ import annotations

import pytest
from test_telegram_channel import cfg_for, new_bus, run, running, wait_offset

from fakes.telegram_server import FakeTelegram
from nanobot.config.schema import Config
from nanobot.security.audit import configure_audit


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("NANOBOT_HOME", str(h))
    configure_audit(Config())
    yield h
    off = Config()
    off.security.audit.enabled = False
    configure_audit(off)


@pytest.fixture
def tg():
    with FakeTelegram() as fake:
        yield fake


def group_update(tg, text, *, reply_to_bot=False, text_mention=False, user=42):
    bot_id = int(tg.token.split(":")[0])
    msg = {
        "message_id": 1000 + len(tg.pending_updates()),
        "date": 0,
        "from": {"id": user, "is_bot": False, "first_name": "U", "username": "alice"},
        "chat": {"id": -100777, "type": "supergroup"},
        "text": text,
    }
    if reply_to_bot:
        msg["reply_to_message"] = {
            "message_id": 5,
            "from": {"id": bot_id, "is_bot": True, "first_name": "Test"},
            "chat": msg["chat"],
            "text": "earlier answer",
        }
    if text_mention:
        msg["entities"] = [
            {"type": "text_mention", "offset": 0, "length": 3, "user": {"id": bot_id}}
        ]
    return tg.push_update({"message": msg})


def delivered(home, tg, policy, pushes) -> list[str]:
    """Texts that reach the inbox when pushes(tg) queues updates, under policy."""
    bus = new_bus(home)
    last = pushes(tg)

    async def go():
        cfg = cfg_for(tg) if policy is None else cfg_for(tg, group_policy=policy)
        async with running(cfg, bus):
            await wait_offset(home, last + 1)  # the offset moves once every update was judged
        got = []
        while not bus.inbound.empty():
            got.append(bus.inbound.get_nowait().content)
        return got

    return run(go())


def plain_and_addressed(tg):
    group_update(tg, "hello everyone")
    group_update(tg, "@nanobot_test_bot what is 2+2?")
    group_update(tg, "hey @NANOBOT_TEST_BOT, case does not matter")
    group_update(tg, "/reset@nanobot_test_bot")
    group_update(tg, "answering you", reply_to_bot=True)
    group_update(tg, "Bot, via a text mention", text_mention=True)
    group_update(tg, "@nanobot_test_botnot someone else")
    return group_update(tg, "@other_bot not me")


def test_mention_is_the_default_and_answers_only_when_addressed(home, tg):
    got = delivered(home, tg, None, plain_and_addressed)
    assert got == [
        "@nanobot_test_bot what is 2+2?",
        "hey @NANOBOT_TEST_BOT, case does not matter",
        "/reset@nanobot_test_bot",
        "answering you",
        "Bot, via a text mention",
    ]


def test_open_answers_every_allowed_group_message(home, tg):
    got = delivered(home, tg, "open", plain_and_addressed)
    assert "hello everyone" in got and "@other_bot not me" in got


def test_off_ignores_groups_but_not_private_chats(home, tg):
    assert delivered(home, tg, "off", plain_and_addressed) == []


def test_strangers_stay_refused_in_groups_whatever_the_policy(home, tg):
    got = delivered(home, tg, "open", lambda t: group_update(t, "@nanobot_test_bot hi", user=666))
    assert got == []


@pytest.mark.parametrize("policy", ["mention", "open", "off"])
def test_private_chats_are_not_affected(home, tg, policy):
    def pushes(t):
        return t.push_message(42, "just us", username="alice")

    assert delivered(home, tg, policy, pushes) == ["just us"]


def test_unknown_policy_is_a_config_error(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    nbhome = tmp_path / "h"
    nbhome.mkdir(mode=0o700)
    (nbhome / "config.json").write_text(
        json.dumps({"channels": {"telegram": {"groupPolicy": "everyone"}}})
    )
    (nbhome / "config.json").chmod(0o600)
    r = subprocess.run(
        [sys.executable, "-m", "nanobot", "status"],
        cwd=Path(__file__).resolve().parents[1],
        env={"NANOBOT_HOME": str(nbhome), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "channels.telegram.groupPolicy" in r.stderr
    assert "mention, open, off" in r.stderr
