"""Growth: does a long history or many handled messages make nanobot slower or bigger?

1. Turn cost on a session holding 10,000 stored messages vs an empty one (in-process, a local
   model server answering at once; median of RUNS turns). Budget: ≤ 1.5×.
2. Gateway RSS when idle and after 10,000 messages handled through the local HTTP API across
   1,000 sessions. Budget: ≤ 40 MiB, flat.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from _common import proc_mib  # also puts tests/ on sys.path
from fakes.llm_server import ScriptedLLMServer
from harness import GatewayProcess, NanobotHome

RUNS = int(os.environ.get("BENCH_RUNS", "30"))
STORED = 10_000
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "10000"))
TOKEN = "bench-gateway-token-0123456789"


def turn_costs() -> tuple[float, float]:
    from nanobot.agent.sessions import SessionStore
    from nanobot.config.loader import load_config
    from nanobot.logs import setup_logging
    from nanobot.runtime import build_agent
    from nanobot.tools.base import ToolContext

    with tempfile.TemporaryDirectory() as home, ScriptedLLMServer("openai") as llm:
        os.environ.update(
            NANOBOT_HOME=home, OPENAI_API_KEY="sk-bench-00000000000000", OPENAI_BASE_URL=llm.url
        )
        setup_logging()
        cfg, info = load_config()
        agent = build_agent(cfg, info)
        store = SessionStore(agent.sessions.dir)
        batch = [{"role": "user", "content": f"stored message {i} " + "x" * 80} for i in range(500)]
        for _ in range(STORED // len(batch)):
            store.append("cli:big", *batch)

        async def timed(key: str) -> list[float]:
            out = []
            for i in range(RUNS):
                ctx = ToolContext(chat_id=key, session_key=key)
                start = time.perf_counter()
                await agent.handle(f"turn {i}", ctx)
                out.append(time.perf_counter() - start)
            return out

        empty = statistics.median(asyncio.run(timed("cli:fresh")))
        big = statistics.median(asyncio.run(timed("cli:big")))
        agent.executor.shutdown()
        return empty, big


def post(port: int, session: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"user": session, "messages": [{"role": "user", "content": "hi"}]})
    conn.request(
        "POST",
        "/v1/chat/completions",
        body,
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    status = conn.getresponse().status
    conn.close()
    return status


def gateway_rss() -> tuple[float, float, float]:
    home = NanobotHome()
    try:
        with ScriptedLLMServer("openai") as llm:
            home.write_config(
                {
                    "providers": {
                        "openai": {"apiKey": "sk-bench-000000000000", "apiBase": llm.url}
                    },
                    "agents": {"defaults": {"model": "gpt-bench"}},
                    "gateway": {"port": 0, "token": TOKEN},
                }
            )
            gw = GatewayProcess(home).wait_ready()
            try:
                time.sleep(1)
                idle = proc_mib(gw.proc.pid)
                with ThreadPoolExecutor(8) as pool:
                    statuses = list(
                        pool.map(lambda i: post(gw.port, f"s{i % 1000}"), range(MESSAGES))
                    )
                failed = sum(s != 200 for s in statuses)
                if failed:
                    print(f"  warning: {failed} requests failed", file=sys.stderr)
                time.sleep(1)
                after = proc_mib(gw.proc.pid)
                half = MESSAGES // 2
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda i: post(gw.port, f"t{i % 1000}"), range(half)))
                again = proc_mib(gw.proc.pid)
                return idle, after, again
            finally:
                gw.stop()
    finally:
        home.cleanup()


def main() -> int:
    empty, big = turn_costs()
    print(f"session growth: median turn over {RUNS} turns (local model answering at once)")
    print(f"  empty session              {empty * 1000:.2f} ms")
    print(
        f"  session with {STORED:,} msgs   {big * 1000:.2f} ms   ratio {big / empty:.2f}× (budget 1.5×)"
    )
    idle, after, again = gateway_rss()
    print("gateway RSS (local HTTP API, 8 clients, 1,000 sessions)")
    print(f"  idle                       {idle:.1f} MiB")
    print(f"  after {MESSAGES:,} messages       {after:.1f} MiB")
    print(f"  after {MESSAGES // 2:,} more         {again:.1f} MiB   (budget ≤ 40 MiB, flat)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
