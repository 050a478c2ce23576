"""kill -9 at the worst moment, many times: no finished turn runs twice, no message is lost.

Each round pushes a burst of messages from many chats and kills the gateway the instant the
last reply of the burst reaches the fake Telegram server (before Telegram's answer gets back),
then starts it again. The model server counts requests per message: a turn that ran twice
would ask the model twice for the same text.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter

from fakes.llm_server import ScriptedLLMServer, last_user_text, reply
from fakes.telegram_server import FakeTelegram
from harness import GatewayProcess
from nanobot.route.store import Store

ROUNDS = 20
CHATS = 10


def config(llm, tg, chats) -> dict:
    return {
        "providers": {"openai": {"apiKey": "sk-test-crash-0123456789", "apiBase": llm.url}},
        "agents": {"defaults": {"model": "gpt-test", "maxConcurrentTurns": CHATS}},
        "channels": {
            "telegram": {
                "enabled": True,
                "token": tg.token,
                "apiBase": tg.api_base,
                "allowFrom": [str(c) for c in chats],
                "pollTimeout": 1,
            }
        },
        "security": {"rateLimit": {"messagesPerMinute": 1000, "burst": 1000}},
        "gateway": {"port": 0},
    }


def stored_replies(nb) -> set[str]:
    """The texts the store holds as replies not yet confirmed delivered (read while down)."""
    store = Store(nb.path / "state", compact=False)
    try:
        return {out.content.removeprefix("echo: ") for _, out in store.unsent()}
    finally:
        store.close()


def test_kill_9_as_each_burst_is_answered_never_runs_a_turn_twice(nb):
    chats = [1000 + i for i in range(CHATS)]
    with ScriptedLLMServer("openai") as llm, FakeTelegram() as tg:
        llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}"))
        nb.write_config(config(llm, tg, chats))
        pushed: list[str] = []
        unconfirmed: set[str] = set()  # replies stored but not yet recorded as delivered
        for n in range(ROUNDS):
            burst = {f"c{c} r{n}" for c in chats}
            answered: set[str] = set()
            killed = threading.Event()
            gw = GatewayProcess(nb).wait_ready()

            def on_sent(sent: dict, burst=burst, answered=answered, gw=gw, killed=killed):
                text = sent["visible"].removeprefix("echo: ")
                if text in burst:
                    answered.add(text)
                if answered == burst and not killed.is_set():
                    killed.set()
                    gw.proc.send_signal(signal.SIGKILL)  # the reply reached Telegram; we die

            tg.on_sent = on_sent
            for text in sorted(burst):
                tg.push_message(int(text.split()[0][1:]), text)
            pushed += sorted(burst)
            assert killed.wait(30), f"round {n}: burst not answered:\n{gw.output()[-3000:]}"
            gw.wait(10)
            tg.on_sent = None
            unconfirmed |= stored_replies(nb)
        # A last start: whatever a crash left unanswered or unconfirmed is settled now.
        final = GatewayProcess(nb).wait_ready()
        try:
            tg.wait_for(
                lambda: {m["visible"].removeprefix("echo: ") for m in tg.sent} >= set(pushed),
                timeout=30,
                what="every message answered",
            )
        finally:
            final.signal(signal.SIGTERM)
            final.wait(30)

    asked = Counter(last_user_text(r.json) for r in llm.requests)
    twice = {text: n for text, n in asked.items() if n > 1}
    assert not twice, f"turns run more than once: {twice}"
    assert set(asked) == set(pushed)
    sent = Counter(m["visible"] for m in tg.sent)
    duplicated = {text for text, n in sent.items() if n > 1}
    print(
        f"{ROUNDS} crashes × {CHATS} chats: 0 turns run twice; {len(duplicated)} reply text(s) "
        f"sent twice, all of them replies Telegram took before the kill but the gateway had not "
        f"yet recorded ({len(unconfirmed)} such replies were stored at the kills)"
    )
    # The only duplicate the route can make: a reply the channel accepted just before the
    # kill, resent from the store after the restart.
    assert all(sent[t] == 2 for t in duplicated)
    assert {t.removeprefix("echo: ") for t in duplicated} <= unconfirmed
    store = Store(nb.path / "state", compact=False)
    assert (store.pending(), store.unsent()) == ([], [])
