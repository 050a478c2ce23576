"""Gateway memory over many handled messages: does RSS stay flat?

The real gateway process, a local model server answering at once. Messages arrive through the
local HTTP API (8 clients) and through Telegram (the fake Bot API, 100 chats), spread over
1,000 sessions. Prints RSS when idle, after 10,000 messages and after MESSAGES in all.
The model echoes each message and, asked for a session summary, writes one of steady length as
a model does; an echo there would put each summary inside the next, so every prompt would grow
until SUMMARY_MAX_CHARS and the figure would measure longer prompts, not handled messages.
Budget (DESIGN.md): idle ≤ 35 MiB; ≤ 1 MiB growth from 10k to 200k handled messages.
BENCH_MESSAGES (default 200000) scales the run down for a quick look.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from _common import proc_mib  # also puts tests/ on sys.path
from fakes.llm_server import ScriptedLLMServer, last_user_text, reply
from fakes.telegram_server import FakeTelegram
from harness import GatewayProcess, NanobotHome
from nanobot.agent.compaction import SUMMARISER

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "200000"))
WARM = 10_000
TOKEN = "bench-gateway-token-0123456789"
CHATS = 100
SUMMARY = "- The user sent numbered test messages; the assistant echoed each one back."


def _answer(body: dict) -> dict:
    messages = body.get("messages") or [{}]
    if messages[0].get("content") == SUMMARISER:
        return reply(SUMMARY)
    return reply(f"echo: {last_user_text(body)}")


def _post(port: int, session: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"user": session, "messages": [{"role": "user", "content": "hi"}]})
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    conn.request("POST", "/v1/chat/completions", body, headers)
    status = conn.getresponse().status
    conn.close()
    return status


def _api_batch(gw: GatewayProcess, start: int, count: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda i: _post(gw.port, f"s{i % 1000}"), range(start, start + count))
        )
    failed = sum(s != 200 for s in statuses)
    if failed:
        print(f"  warning: {failed} API requests failed", file=sys.stderr)


def _telegram_batch(tg: FakeTelegram, start: int, count: int) -> None:
    done = len(tg.sent)
    for i in range(start, start + count):
        tg.push_message(7000 + i % CHATS, f"m{i}")
        if (i - start) % 500 == 499:  # keep the backlog bounded, as real traffic would
            tg.wait_for_sent(done + (i - start) - 400, timeout=120)
    tg.wait_for_sent(done + count, timeout=300)


def run(kind: str) -> tuple[float, float, float]:
    home = NanobotHome()
    try:
        # 200,000 recorded requests would take the benchmark's own memory into gigabytes.
        with ScriptedLLMServer("openai", keep_requests=False) as llm, FakeTelegram() as tg:
            llm.respond_with(_answer)
            cfg: dict = {
                "providers": {"openai": {"apiKey": "sk-bench-000000000000", "apiBase": llm.url}},
                "agents": {"defaults": {"model": "gpt-bench", "maxHistoryMessages": 20}},
                "gateway": {"port": 0, "token": TOKEN},
                "security": {"rateLimit": {"messagesPerMinute": 0}},
            }
            if kind == "telegram":
                cfg["channels"] = {
                    "telegram": {
                        "enabled": True,
                        "token": tg.token,
                        "apiBase": tg.api_base,
                        "allowFrom": [str(7000 + c) for c in range(CHATS)],
                        "pollTimeout": 1,
                    }
                }
            home.write_config(cfg)
            gw = GatewayProcess(home).wait_ready()
            batch = _api_batch if kind == "api" else _telegram_batch
            target = gw if kind == "api" else tg
            try:
                time.sleep(1)
                idle = proc_mib(gw.proc.pid)
                batch(target, 0, WARM)
                time.sleep(1)
                warm = proc_mib(gw.proc.pid)
                batch(target, WARM, MESSAGES - WARM)
                time.sleep(1)
                return idle, warm, proc_mib(gw.proc.pid)
            finally:
                gw.stop()
    finally:
        home.cleanup()


def main() -> int:
    for kind in ("api", "telegram"):
        started = time.monotonic()
        idle, warm, last = run(kind)
        took = time.monotonic() - started
        print(f"gateway RSS, messages through the {kind} ({took:.0f} s)")
        print(f"  idle                    {idle:.1f} MiB   (budget 35 MiB)")
        print(f"  after {WARM:,} messages   {warm:.1f} MiB")
        growth = last - warm
        print(
            f"  after {MESSAGES:,} messages  {last:.1f} MiB   growth {growth:+.2f} MiB (budget 1 MiB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
