"""Benchmark: wall time of `exec echo hi` through ExecTool: bare (no sandbox, no reaper),
sandbox "none" (the reaper), bubblewrap without its seccomp filter, and bubblewrap with it
(what runs in production), and bubblewrap with tools.exec.network "allowlist" (its own network
namespace, a per-call egress proxy socket and the in-sandbox forwarder). Budgets: bubblewrap
plus seccomp add at most 10 ms (median) over bare; the allowlist mode at most 20 ms over plain
bubblewrap."""

from __future__ import annotations

import asyncio
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nanobot.config.schema import ExecConfig  # noqa: E402
from nanobot.security.egress import EgressProxy  # noqa: E402
from nanobot.security.pathpolicy import PathPolicy  # noqa: E402
from nanobot.security.sandbox import BwrapSandbox, NoSandbox, bwrap_status  # noqa: E402
from nanobot.tools.base import ToolContext  # noqa: E402
from nanobot.tools.shell import ExecTool  # noqa: E402

RUNS = 50
WARMUP = 3
BUDGET_MS = 10.0
ALLOWLIST_BUDGET_MS = 20.0


class _Bare:
    """No sandbox and no reaper: /bin/sh -c as it is."""

    name = "bare"

    def wrap(self, argv, cwd, env):
        return list(argv), dict(env), []

    def explain(self, returncode, output):
        return None


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


async def measure(tools: dict[str, ExecTool]) -> dict[str, list[float]]:
    """Run `echo hi` RUNS times per tool, interleaved so drift hits every tool alike."""
    ctx = ToolContext()
    times: dict[str, list[float]] = {name: [] for name in tools}
    for i in range(WARMUP + RUNS):
        for name, tool in tools.items():
            start = time.perf_counter()
            result = await tool.execute(ctx, command="echo hi")
            elapsed = (time.perf_counter() - start) * 1000
            if "hi" not in result.text:
                raise SystemExit(f"{name}: unexpected result {result.text!r}")
            if i >= WARMUP:
                times[name].append(elapsed)
    return times


def main() -> int:
    ok, reason = bwrap_status()
    if not ok:
        print(f"bubblewrap cannot run here: {reason}")
        return 1
    with tempfile.TemporaryDirectory(prefix="nanobot-bench-") as tmp:
        home = Path(tmp) / "home"
        workspace = home / "workspace"
        workspace.mkdir(parents=True)
        cfg = ExecConfig()
        tools = {
            "none": ExecTool(PathPolicy(workspace, True, home), cfg, NoSandbox()),
            "bwrap": ExecTool(
                PathPolicy(workspace, True, home), cfg, BwrapSandbox(workspace, home)
            ),
        }
        # The same tool with a sandbox that loads no filter: what seccomp alone costs; and
        # with none at all (not even the reaper of sandbox "none"): the true baseline.
        plain = copy.copy(tools["bwrap"])
        plain.sandbox = BwrapSandbox(workspace, home, seccomp=False)
        bare = copy.copy(tools["none"])
        bare.sandbox = _Bare()
        allowlist = copy.copy(tools["bwrap"])
        allowlist.sandbox = BwrapSandbox(
            workspace, home, network="allowlist", egress=EgressProxy(["example.org"])
        )
        tools = {
            "bare": bare,
            "none+reaper": tools["none"],
            "bwrap-noseccomp": plain,
            "bwrap": tools["bwrap"],
            "bwrap-allowlist": allowlist,
        }
        times = asyncio.run(measure(tools))
    print(f"exec `echo hi` through ExecTool, {RUNS} runs each ({WARMUP} warm-up runs dropped)")
    for name, values in times.items():
        print(f"  {name:16} median {statistics.median(values):6.2f} ms   p90 {p90(values):6.2f} ms")
    med = {name: statistics.median(values) for name, values in times.items()}
    added = med["bwrap"] - med["bare"]
    added_p90 = p90(times["bwrap"]) - p90(times["bare"])
    print(
        f"  added by the reaper (sandbox none): median {med['none+reaper'] - med['bare']:+.2f} ms"
    )
    print(f"  added by seccomp alone: median {med['bwrap'] - med['bwrap-noseccomp']:+.2f} ms")
    print(f"  added by bwrap+seccomp: median {added:+.2f} ms, p90 {added_p90:+.2f} ms")
    verdict = "within" if added <= BUDGET_MS else "OVER"
    print(f"  budget {BUDGET_MS:.0f} ms added (median): {verdict} budget")
    egress = med["bwrap-allowlist"] - med["bwrap"]
    egress_p90 = p90(times["bwrap-allowlist"]) - p90(times["bwrap"])
    egress_ok = egress <= ALLOWLIST_BUDGET_MS
    print(
        f"  added by network allowlist over bwrap: median {egress:+.2f} ms, p90 "
        f"{egress_p90:+.2f} ms (budget {ALLOWLIST_BUDGET_MS:.0f} ms: "
        f"{'within' if egress_ok else 'OVER'} budget)"
    )
    return 0 if added <= BUDGET_MS and egress_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
