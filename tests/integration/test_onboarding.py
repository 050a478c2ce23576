"""Onboarding for real people: local servers, the last line, `--check` for make run, --import."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

from tests.fakes.llm_server import ScriptedLLMServer
from tests.harness import REPO

FIXTURES = REPO / "tests" / "fixtures" / "nanobot_configs"
KEY = "sk-or-v1-import0test0literal0key0abcdef"
TG = "123456:import-test-telegram-token"


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def last_line(r) -> str:
    return r.stdout.strip().splitlines()[-1]


def test_onboard_with_a_local_server_checks_it_and_says_what_it_did(nb):
    with ScriptedLLMServer("openai") as llm:
        url = llm.url
        r = nb.run("onboard", "--api-base", url, "--model", "scripted")
    assert r.returncode == 0, r.stderr
    cfg = json.loads(nb.config.read_text())
    assert cfg["providers"] == {"custom": {"apiBase": url}}  # only what works
    assert cfg["agents"]["defaults"]["model"] == "scripted"
    assert "email" not in cfg["channels"]
    assert f"{url} answers and serves 'scripted'" in r.stdout
    assert last_line(r) == (
        f"Ready: nanobot will use scripted via your server at {url}. Run: nanobot agent"
    )
    check = nb.run("onboard", "--check")
    assert check.returncode == 0 and check.stdout == ""


def test_onboard_picks_the_served_model_and_notes_a_silent_server(nb):
    with ScriptedLLMServer("openai") as llm:
        r = nb.run("onboard", "--api-base", llm.url, "--provider", "ollama")
    assert "it serves: scripted" in r.stdout
    assert json.loads(nb.config.read_text())["agents"]["defaults"]["model"] == "scripted"
    nb.config.unlink()
    r = nb.run("onboard", "--api-base", "http://127.0.0.1:9/v1", "--model", "qwen2.5")
    assert "did not answer" in r.stdout and "start the server" in r.stdout
    assert last_line(r).startswith("Ready: nanobot will use qwen2.5 via your server")


def test_without_a_model_onboard_ends_with_what_to_set_and_check_fails_in_one_line(nb):
    r = nb.run("onboard", "--yes")
    assert r.returncode == 0
    assert last_line(r).startswith("Not ready: no language model is set up")
    assert "OPENAI_API_KEY" in last_line(r)
    check = nb.run("onboard", "--check")
    assert check.returncode == 3
    assert len(check.stdout.strip().splitlines()) == 1 and "Traceback" not in check.stderr
    assert nb.run("onboard", "--check", env={"OPENAI_API_KEY": "sk-x"}).returncode == 0


def test_make_run_stops_after_onboarding_with_one_line(nb, tmp_path):
    """The Makefile's run recipe, with the venv already installed (its stamp is the target)."""
    if shutil.which("make") is None:
        return
    home = nb.path
    r = subprocess.run(
        ["make", "-s", "-o", ".venv/bin/.installed", "run", f"NANOBOT_HOME={home}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert last_line(r).startswith("Not ready: no language model is set up")
    assert "Error" not in r.stderr and "make:" not in r.stderr


def test_status_explains_a_local_qwen_in_the_users_terms(nb):
    nb.write_config(
        {
            "agents": {"defaults": {"model": "qwen2.5-0.5b-instruct"}},
            "providers": {"custom": {"apiBase": "http://127.0.0.1:8080/v1"}},
        }
    )
    r = nb.run("status")
    assert r.returncode == 0, r.stderr
    assert "qwen2.5-0.5b-instruct via custom" in r.stdout
    assert "your server at providers.custom.apiBase = http://127.0.0.1:8080/v1" in r.stdout
    assert "dashscope" not in r.stdout.lower()


def make_old_home(base: Path, fixture: str) -> Path:
    """A nanobot home as nanobot leaves it: config 0644 with literal keys, a 0755 workspace."""
    old = base / "old-nanobot"
    (old / "workspace" / "memory").mkdir(parents=True)
    (old / "workspace" / "memory" / "MEMORY.md").write_text("The user likes tea.\n")
    data = json.loads((FIXTURES / fixture).read_text())
    data["providers"]["openrouter"]["apiKey"] = KEY
    data["channels"]["telegram"] |= {"enabled": True, "token": TG, "allowFrom": ["42"]}
    (old / "config.json").write_text(json.dumps(data, indent=2))
    for p in (old, old / "workspace", old / "workspace" / "memory"):
        p.chmod(0o755)
    (old / "config.json").chmod(0o644)
    (old / "workspace" / "memory" / "MEMORY.md").chmod(0o644)
    return old


def test_import_moves_literal_keys_fixes_modes_and_keeps_memory(nb):
    old = make_old_home(nb.base, "nanobot-0.1.3.post7-onboard.json")
    nb.chown(old)
    nb.path.rmdir()
    r = nb.run("onboard", "--import", str(old))
    assert r.returncode == 0, r.stderr
    text = nb.config.read_text()
    assert KEY not in text and TG not in text
    cfg = json.loads(text)
    ref = cfg["providers"]["openrouter"]["apiKey"]
    cred = Path(ref.removeprefix("file:"))
    assert ref.startswith("file:") and cred.read_text().strip() == KEY and mode(cred) == 0o600
    assert cfg["channels"]["telegram"]["token"].startswith("file:")
    assert mode(nb.config) == 0o600 and mode(nb.path) == 0o700
    memory = nb.path / "workspace" / "memory" / "MEMORY.md"
    assert memory.read_text() == "The user likes tea.\n"
    assert mode(nb.path / "workspace") == 0o700
    assert "Moved the literal providers.openrouter.apiKey" in r.stdout
    assert "Copied the workspace" in r.stdout and "still readable by others" in r.stdout
    assert KEY not in r.stdout + r.stderr and TG not in r.stdout + r.stderr
    assert last_line(r).startswith(
        "Ready: nanobot will use anthropic/claude-opus-4-5 via openrouter"
    )


def test_import_in_place_of_a_0_3_5_home(nb):
    old = make_old_home(nb.base, "nanobot-0.3.5-onboard.json")
    shutil.copytree(old, nb.path, dirs_exist_ok=True)
    nb.path.chmod(0o755)
    (nb.path / "config.json").chmod(0o644)
    nb.chown(nb.path)
    r = nb.run("onboard", "--import", str(nb.path))
    assert r.returncode == 0, r.stderr
    assert KEY not in nb.config.read_text() and mode(nb.config) == 0o600
    assert mode(nb.path) == 0o700 and f"Mode of {nb.path}: 755 → 700" in r.stdout
    assert "Workspace kept" in r.stdout
    backups = list(nb.path.glob("config.json.bak-*"))
    assert backups and mode(backups[0]) == 0o600
    assert "Ready:" in last_line(r)
