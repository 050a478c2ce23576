"""Gateway throughput: a burst of chats, each sending one message at once through Telegram.

The real gateway process and the fake Bot API; the model answers every request after 500 ms and
maxConcurrentTurns is at least the chat count. For 50 and 500 chats prints, as the median over
RUNS runs: the time from the first message to the last reply, the peak number of model calls in
flight, the gateway's CPU time per turn and its peak RSS.
Budgets (DESIGN.md): 50 chats ≤ 0.7 s; 500 chats ≤ 1.5 s with all 500 calls in flight;
CPU ≤ 2 ms per turn; ≤ 60 MiB with 500 turns in flight.
Usage: python bench/gateway.py [CHATS …]   (default: 50 500)
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from _common import proc_cpu, proc_mib  # also puts tests/ on sys.path
from fakes.llm_server import ScriptedLLMServer, last_user_text, reply
from fakes.telegram_server import FakeTelegram
from harness import GatewayProcess, NanobotHome

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
MODEL_DELAY = 0.5
BUDGET = {50: 0.7, 500: 1.5}


def one_run(chats: int) -> dict:
    home = NanobotHome()
    try:
        with ScriptedLLMServer("openai") as llm, FakeTelegram() as tg:
            llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}", delay=MODEL_DELAY))
            ids = list(range(5000, 5000 + chats))
            home.write_config(
                {
                    "providers": {
                        "openai": {"apiKey": "sk-bench-000000000000", "apiBase": llm.url}
                    },
                    "agents": {
                        "defaults": {"model": "gpt-bench", "maxConcurrentTurns": max(64, chats)}
                    },
                    "channels": {
                        "telegram": {
                            "enabled": True,
                            "token": tg.token,
                            "apiBase": tg.api_base,
                            "allowFrom": [str(c) for c in ids],
                            "pollTimeout": 1,
                        }
                    },
                    "gateway": {"port": 0},
                    "security": {"rateLimit": {"messagesPerMinute": 0}},
                }
            )
            gw = GatewayProcess(home).wait_ready()
            try:
                time.sleep(0.5)  # let start-up work settle before measuring CPU
                cpu0 = proc_cpu(gw.proc.pid)
                start = time.monotonic()
                for c in ids:
                    tg.push_message(c, f"hello {c}")
                sent = tg.wait_for_sent(chats, timeout=120)
                times = sorted(m["at"] - start for m in sent)
                return {
                    "all": times[-1],
                    "median": statistics.median(times),
                    "peak": llm.max_concurrent,
                    "cpu_ms": (proc_cpu(gw.proc.pid) - cpu0) * 1000 / chats,
                    "rss": proc_mib(gw.proc.pid, "VmHWM"),
                }
            finally:
                gw.stop()
    finally:
        home.cleanup()


def report(chats: int) -> bool:
    runs = [one_run(chats) for _ in range(RUNS)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    budget = BUDGET.get(chats)
    print(f"gateway: {chats} chats at once, model delay {MODEL_DELAY}s, median of {RUNS} runs")
    print(f"  all {chats} replies after {med['all']:.3f} s   (budget {budget} s)")
    print(f"  median reply after    {med['median']:.3f} s")
    print(f"  peak model calls in flight {med['peak']:.0f} of {chats}")
    print(f"  gateway CPU per turn  {med['cpu_ms']:.2f} ms   (budget 2 ms)")
    print(f"  gateway peak RSS      {med['rss']:.1f} MiB   (budget 60 MiB)")
    ok = (budget is None or med["all"] <= budget) and med["cpu_ms"] <= 2 and med["rss"] <= 60
    if chats >= 500:
        ok = ok and med["peak"] >= chats
    print(f"  budget: {'met' if ok else 'MISSED'}")
    return ok


def main(argv: list[str]) -> int:
    for chats in [int(a) for a in argv] or [50, 500]:
        report(chats)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
