"""`nanobot skills list`: every skill the agent sees, where it comes from and whether it can run.

Skills are instructions the agent follows, so adding one is like running its author's code:
nothing here installs skills; put a SKILL.md in the workspace's skills/<name>/ yourself.
"""

from __future__ import annotations

import argparse

from nanobot.agent.skills import Skills
from nanobot.config.loader import load_config, workspace_path
from nanobot.security.wsread import WorkspaceReader


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="show each skill, its origin and whether it can be used")


def run(args: argparse.Namespace) -> int:
    if args.action != "list":
        print("usage: nanobot skills list")
        return 2
    cfg, _ = load_config(args.config)
    ws = workspace_path(cfg)
    skills = sorted(Skills(WorkspaceReader(ws)).all().values(), key=lambda s: s.name)
    if not skills:
        print("No skills.")
        return 0
    width = max(len(s.name) for s in skills)
    for s in skills:
        why = s.missing()
        state = f"unavailable: {why}" if why else ("always in the prompt" if s.always else "ok")
        print(f"{s.name:<{width}}  {s.origin:<9}  {state}")
        print(f"{'':<{width}}  {s.location}")
        if s.description:
            print(f"{'':<{width}}  {s.description}")
    print(f"\nWorkspace skills live in {ws}/skills/<name>/SKILL.md and override built-in ones.")
    if cfg.agents.defaults.isolation == "sender":
        print('isolation is "sender": each person\'s own skills/ folder adds to these.')
    return 0
