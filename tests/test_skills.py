"""Skills: front matter, workspace over built-in, requirements, always vs index, cache until the
file changes, links refused, read_skill, and `nanobot skills list` with each skill's origin."""

from __future__ import annotations

import asyncio
import os
import time

from nanobot.agent.skills import ReadSkillTool, Skills, builtin_skills, parse
from nanobot.security.wsread import WorkspaceReader
from nanobot.tools.base import ToolContext


def write(ws, name, text):
    d = ws / "skills" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "SKILL.md").write_text(text)
    return d / "SKILL.md"


def test_front_matter_forms():
    s = parse(
        "---\nname: deploy\ndescription: Ship it\nrequires:\n  bins: [git, nosuchbin-xyz]\n"
        "  env: NOSUCH_ENV_XYZ\nalways: true\n---\n# Steps\n1. push\n",
        "folder",
        "workspace",
        "skills/folder/SKILL.md",
    )
    assert (s.name, s.description, s.always) == ("deploy", "Ship it", True)
    assert s.bins == ["git", "nosuchbin-xyz"] and s.env == ["NOSUCH_ENV_XYZ"]
    assert s.body == "# Steps\n1. push"
    assert s.missing() == "missing program nosuchbin-xyz, environment variable NOSUCH_ENV_XYZ"
    upstream = parse(
        '---\nname: gh\ndescription: GitHub\nmetadata: {"nanobot": {"requires": {"bins": ["sh"]}}}\n---\nbody',
        "gh",
        "workspace",
        "x",
    )
    assert upstream.bins == ["sh"] and upstream.missing() == ""
    assert parse("no front matter", "plain", "workspace", "x").name == "plain"


def test_builtins_exist_and_workspace_overrides(tmp_path):
    builtins = builtin_skills()
    assert {"reminders", "summarize", "skill-writer"} <= set(builtins)
    assert all(s.description for s in builtins.values())
    write(tmp_path, "summarize", "---\nname: summarize\ndescription: My own way\n---\nmine")
    skills = Skills(WorkspaceReader(tmp_path))
    assert skills.get("summarize").origin == "workspace" and skills.get("summarize").body == "mine"
    assert skills.get("reminders").origin == "built-in"


def test_prompt_has_always_skills_in_full_and_an_index(tmp_path):
    write(
        tmp_path,
        "house-rules",
        "---\nname: house-rules\ndescription: d\nalways: true\n---\nAlways answer in French.",
    )
    write(
        tmp_path,
        "needs-bin",
        "---\nname: needs-bin\ndescription: uses a tool\nrequires:\n  bins: [nosuchbin-xyz]\n---\nx",
    )
    section = Skills(WorkspaceReader(tmp_path)).prompt_section()
    assert "### Skill: house-rules\nAlways answer in French." in section
    assert "- needs-bin: uses a tool (unavailable: missing program nosuchbin-xyz)" in section
    assert "- reminders:" in section and "read_skill" in section


def test_parsed_once_and_reread_when_the_file_changes(tmp_path):
    path = write(tmp_path, "s", "---\nname: s\ndescription: first\n---\nv1")
    skills = Skills(WorkspaceReader(tmp_path))
    assert skills.get("s").description == "first"
    first = skills.get("s")
    skills._listed = None  # past the once-a-second recheck
    assert skills.get("s") is first  # same file version: the cached parse
    path.write_text("---\nname: s\ndescription: second version\n---\nv2")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    skills._listed = None
    assert skills.get("s").description == "second version"


def test_links_are_never_followed(tmp_path):
    secret = tmp_path / "secret.md"
    secret.write_text("---\nname: stolen\ndescription: SECRET\n---\nSECRET")
    ws = tmp_path / "ws"
    (ws / "skills" / "linked").mkdir(parents=True)
    (ws / "skills" / "linked" / "SKILL.md").symlink_to(secret)
    (ws / "skills" / "dirlink").symlink_to(tmp_path)
    skills = Skills(WorkspaceReader(ws))
    assert "stolen" not in skills.all() and "SECRET" not in skills.prompt_section()


def test_read_skill_tool(tmp_path):
    write(
        tmp_path,
        "needs-env",
        "---\nname: needs-env\ndescription: d\nrequires:\n  env: [NOSUCH_ENV_XYZ]\n---\nDo it.",
    )
    t = ReadSkillTool(Skills(WorkspaceReader(tmp_path)))
    out = asyncio.run(t.execute(ToolContext(), name="needs-env")).text
    assert out.startswith("Skill needs-env (workspace) — unavailable here: missing environment")
    assert out.endswith("Do it.")
    assert "known:" in asyncio.run(t.execute(ToolContext(), name="nope")).text


def test_skills_list_command_shows_each_origin(tmp_path):
    import subprocess
    import sys

    write(tmp_path / "workspace", "summarize", "---\nname: summarize\ndescription: mine\n---\nx")
    write(
        tmp_path / "workspace",
        "gh",
        "---\nname: gh\ndescription: d\nrequires:\n  bins: [nosuchbin-xyz]\n---\nx",
    )
    env = {**os.environ, "NANOBOT_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "nanobot", "skills", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.split()[:3] == ["summarize", "workspace", "ok"] for line in lines)
    assert any(line.split()[:2] == ["reminders", "built-in"] for line in lines)
    assert any(
        line.startswith("gh") and "unavailable: missing program nosuchbin-xyz" in line
        for line in lines
    )
