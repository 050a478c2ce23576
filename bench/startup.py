"""Start-up cost: `nanobot agent -m hi` against a local model server that answers at once.

Prints the median wall time and peak RSS over RUNS runs next to `python -c "import requests"`.
Budget (DESIGN.md): ≤ 0.25 s and ≤ 40 MiB.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile

from _common import REPO, measure, summary
from fakes.llm_server import ScriptedLLMServer

RUNS = int(os.environ.get("BENCH_RUNS", "15"))


def main() -> int:
    with tempfile.TemporaryDirectory() as home, ScriptedLLMServer("openai") as llm:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "NANOBOT_HOME": os.path.join(home, ".nanobot"),
            "OPENAI_API_KEY": "sk-bench-0000000000000000",
            "OPENAI_BASE_URL": llm.url,
            "PYTHONPATH": str(REPO),
        }
        agent = [sys.executable, "-m", "nanobot", "agent", "-m", "hi"]
        if os.geteuid() == 0:
            agent.append("--allow-root")
        baseline = [sys.executable, "-c", "import requests"]
        measure(agent, env)  # first run creates the workspace; not counted
        runs = (("nanobot agent -m hi", agent), ('python -c "import requests"', baseline))
        rows: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _ in runs}
        for _ in range(RUNS):  # interleaved, so load on the machine hits both alike
            for name, argv in runs:
                wall, mib, code = measure(argv, env)
                if code != 0:
                    print(f"{name}: exit code {code}", file=sys.stderr)
                    return 1
                rows[name][0].append(wall)
                rows[name][1].append(mib)
    print(f"start-up over {RUNS} runs (seconds; peak RSS in MiB)")
    for name, (walls, rss) in rows.items():
        print(f"  {name:30s} wall {summary(walls)}   RSS median {statistics.median(rss):.1f}")
    walls, rss = rows["nanobot agent -m hi"]
    floor = statistics.median(rows['python -c "import requests"'][0])
    ratio = statistics.median(walls) / floor
    ok = ratio <= 1.5 and statistics.median(rss) <= 32
    print(f"  agent / floor = {ratio:.2f}×")
    print(f"  budget ≤ 1.5× the floor and ≤ 32 MiB: {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
