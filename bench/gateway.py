"""Gateway throughput: 50 chats each send one message at once through the Telegram channel.

The model answers every request after 500 ms; maxConcurrentTurns is 64. Prints, as the median
over RUNS runs, the time from the first message to the last reply, the first and the median
reply, the peak number of concurrent model calls and the gateway's peak RSS.
Budget (DESIGN.md): all 50 replies within 0.8 s.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from _common import proc_mib  # also puts tests/ on sys.path
from fakes.llm_server import ScriptedLLMServer, last_user_text, reply
from fakes.telegram_server import FakeTelegram
from harness import GatewayProcess, NanobotHome

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
CHATS = 50
MODEL_DELAY = 0.5


def one_run() -> dict:
    home = NanobotHome()
    try:
        with ScriptedLLMServer("openai") as llm, FakeTelegram() as tg:
            llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}", delay=MODEL_DELAY))
            chats = list(range(5000, 5000 + CHATS))
            home.write_config(
                {
                    "providers": {
                        "openai": {"apiKey": "sk-bench-000000000000", "apiBase": llm.url}
                    },
                    "agents": {"defaults": {"model": "gpt-bench", "maxConcurrentTurns": 64}},
                    "channels": {
                        "telegram": {
                            "enabled": True,
                            "token": tg.token,
                            "apiBase": tg.api_base,
                            "allowFrom": [str(c) for c in chats],
                            "pollTimeout": 1,
                        }
                    },
                    "gateway": {"port": 0},
                    "security": {"rateLimit": {"messagesPerMinute": 0}},
                }
            )
            gw = GatewayProcess(home).wait_ready()
            try:
                start = time.monotonic()
                for c in chats:
                    tg.push_message(c, f"hello {c}")
                sent = tg.wait_for_sent(CHATS, timeout=60)
                times = sorted(m["at"] - start for m in sent)
                return {
                    "all": times[-1],
                    "first": times[0],
                    "median": statistics.median(times),
                    "peak": llm.max_concurrent,
                    "rss": proc_mib(gw.proc.pid, "VmHWM"),
                }
            finally:
                gw.stop()
    finally:
        home.cleanup()


def main() -> int:
    runs = [one_run() for _ in range(RUNS)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"gateway: {CHATS} chats at once, model delay {MODEL_DELAY}s, median of {RUNS} runs")
    print(f"  all {CHATS} replies after  {med['all']:.3f} s   (budget 0.8 s)")
    print(f"  first reply after     {med['first']:.3f} s")
    print(f"  median reply after    {med['median']:.3f} s")
    print(f"  peak concurrent model calls {med['peak']:.0f}")
    print(f"  gateway peak RSS      {med['rss']:.1f} MiB")
    print(f"  budget: {'met' if med['all'] <= 0.8 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
