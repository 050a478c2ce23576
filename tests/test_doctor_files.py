"""`nanobot doctor` on file: secrets, the credentials folder, the workspace's filesystem and
Telegram groups — attacked with loose modes, writable folders and foreign owners, then --fix."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nanobot.security.secretfiles import FAIL, WARN, file_refs, inspect, repair

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534
KEY = "sk-doctor-file-secret-0123456789abcdef"


def doctor(home: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NANOBOT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "nanobot", "doctor", "--json", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def checks(r: subprocess.CompletedProcess) -> dict:
    return {c["id"]: c for c in json.loads(r.stdout)["checks"]}


def setup(tmp_path: Path, secret_mode=0o600, folder_mode=0o700, extra: dict | None = None):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    keys = tmp_path / "keys"
    keys.mkdir(mode=folder_mode)
    os.chmod(keys, folder_mode)
    secret = keys / "openai"
    secret.write_text(KEY)
    os.chmod(secret, secret_mode)
    cfg = {"providers": {"openai": {"apiKey": f"file:{secret}"}}, **(extra or {})}
    (home / "config.json").write_text(json.dumps(cfg))
    os.chmod(home / "config.json", 0o600)
    return home, keys, secret


def test_private_file_secret_passes(tmp_path):
    home, _, secret = setup(tmp_path)
    c = checks(doctor(home))["secret_file.providers.openai.apiKey"]
    assert c["status"] == "PASS" and str(secret) in c["message"]


def test_world_readable_secret_fails_and_fix_repairs_it(tmp_path):
    home, _, secret = setup(tmp_path, secret_mode=0o644)
    r = doctor(home)
    c = checks(r)["secret_file.providers.openai.apiKey"]
    assert c["status"] == "FAIL" and "others can get at it" in c["message"] and c["fix"]
    assert KEY not in r.stdout + r.stderr
    r = doctor(home, "--fix")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert any(f"chmod 600 {secret}" in x for x in json.loads(r.stdout)["fixed"])
    assert checks(r)["secret_file.providers.openai.apiKey"]["status"] == "PASS"


def test_folder_others_can_write_fails_and_fix_drops_the_write_bit(tmp_path):
    home, keys, _ = setup(tmp_path, folder_mode=0o777)
    c = checks(doctor(home))["secret_file.providers.openai.apiKey"]
    assert c["status"] == "FAIL" and f"{keys} (a parent folder) others can write" in c["message"]
    doctor(home, "--fix")
    assert stat.S_IMODE(keys.stat().st_mode) == 0o755


def test_group_readable_secret_is_a_warning(tmp_path):
    home, _, _ = setup(tmp_path, secret_mode=0o640)
    assert checks(doctor(home))["secret_file.providers.openai.apiKey"]["status"] == "WARN"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a file to another user")
def test_secret_owned_by_someone_else_fails_and_is_not_touched(tmp_path):
    home, _, secret = setup(tmp_path, secret_mode=0o644)
    os.chown(secret, NOBODY, NOBODY)
    r = doctor(home, "--fix")
    c = checks(r)["secret_file.providers.openai.apiKey"]
    assert c["status"] == "FAIL" and f"belongs to uid {NOBODY}" in c["message"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o644  # not ours: a person decides


def test_symlinked_secret_is_named_and_its_target_checked(tmp_path):
    home, keys, secret = setup(tmp_path, secret_mode=0o644)
    link = keys / "link"
    link.symlink_to(secret)
    found = inspect(link, os.geteuid())
    assert any(f.level == WARN and "symlink" in f.problem for f in found)
    assert any(f.level == FAIL and f.path == secret for f in found)
    assert "skipped" in repair(link, os.geteuid())[0]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o644


def test_file_refs_expand_variables_and_find_nested_keys(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "providers": {"groq": {"apiKey": "file:${CREDS}/groq"}},
                "channels": {"telegram": {"token": "file:~/tg"}},
                "gateway": {"token": "${TOKEN}"},
            }
        )
    )
    refs = dict(file_refs(cfg, {"CREDS": "/run/creds"}))
    assert refs == {
        "providers.groq.apiKey": Path("/run/creds/groq"),
        "channels.telegram.token": Path("~/tg").expanduser(),
    }


def test_credentials_folder_and_files_are_checked_and_fixed(tmp_path):
    home, _, _ = setup(tmp_path)
    creds = home / "credentials"
    creds.mkdir(mode=0o755)
    os.chmod(creds, 0o755)
    (creds / "bridge_token").write_text("t" * 40)
    os.chmod(creds / "bridge_token", 0o644)
    c = checks(doctor(home))["credentials"]
    assert c["status"] == "FAIL" and "others can get at it" in c["message"]
    os.chmod(creds, 0o700)
    c = checks(doctor(home))["credentials"]
    assert c["status"] == "FAIL" and "bridge_token" in c["message"]
    os.chmod(creds, 0o755)
    r = doctor(home, "--fix")
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    assert stat.S_IMODE((creds / "bridge_token").stat().st_mode) == 0o600
    assert checks(r)["credentials"]["status"] == "PASS"


def test_workspace_on_the_state_filesystem_is_a_warning(tmp_path):
    home, _, _ = setup(tmp_path)
    (home / "workspace").mkdir()
    c = checks(doctor(home))["workspace_fs"]
    assert c["status"] == "WARN" and "nanobot_workspace_size" in c["fix"]


def test_workspace_on_its_own_filesystem_passes(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem to put the workspace on")
    ws = shm / f"nanobot-ws-{os.getpid()}"
    ws.mkdir()
    try:
        home, _, _ = setup(tmp_path, extra={"agents": {"defaults": {"workspace": str(ws)}}})
        assert checks(doctor(home))["workspace_fs"]["status"] == "PASS"
    finally:
        ws.rmdir()


@pytest.mark.parametrize(
    ("policy", "allow", "status"),
    [
        (None, ["123"], "WARN"),
        ("mention", ["123"], "WARN"),
        ("open", ["123"], "WARN"),
        ("off", ["123"], "PASS"),
    ],
)
def test_group_policy_meeting_an_allow_list_is_a_warning(tmp_path, policy, allow, status):
    tg = {"enabled": True, "token": "123456:" + "t" * 35, "allowFrom": allow}
    if policy:
        tg["groupPolicy"] = policy
    home, _, _ = setup(tmp_path, extra={"channels": {"telegram": tg}})
    c = checks(doctor(home))["group_policy"]
    assert c["status"] == status
    if status == "WARN":
        assert "every member" in c["message"] and '"off"' in c["fix"]
