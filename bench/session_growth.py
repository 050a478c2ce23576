"""Session growth: does a long history make a turn slower?

Turn cost on a session holding 100,000 stored messages vs an empty one (in process, a local
model server answering at once; median of RUNS turns). Budget (DESIGN.md): ≤ 1.3×.
Runs on its own (`python bench/session_growth.py`) or from `make bench`. Memory growth over
many handled messages is bench/memory.py.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time

import _common  # noqa: F401 — puts tests/ and the checkout on sys.path

# isort: split
from fakes.llm_server import ScriptedLLMServer

RUNS = int(os.environ.get("BENCH_RUNS", "30"))
STORED = int(os.environ.get("BENCH_STORED", "100000"))


def turn_costs() -> tuple[float, float]:
    from nanobot import workers
    from nanobot.agent.sessions import SessionStore
    from nanobot.config.loader import load_config
    from nanobot.logs import setup_logging
    from nanobot.route.message import InboundMessage
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
                await agent.handle(InboundMessage("cli", "me", key, f"turn {i}"), ctx)
                out.append(time.perf_counter() - start)
            return out

        empty = statistics.median(asyncio.run(timed("cli:fresh")))
        big = statistics.median(asyncio.run(timed("cli:big")))
        workers.shutdown()
        return empty, big


def main() -> int:
    empty, big = turn_costs()
    print(f"session growth: median turn over {RUNS} turns (local model answering at once)")
    print(f"  empty session              {empty * 1000:.2f} ms")
    ratio = big / empty
    print(f"  session with {STORED:,} msgs  {big * 1000:.2f} ms   ratio {ratio:.2f}× (budget 1.3×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
