"""The hash-chained audit trail: format, redaction, rotation, torn lines, tampering, CLI."""

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from nanobot.config.schema import Config
from nanobot.security import audit as audit_mod
from nanobot.security.audit import (
    GENESIS,
    AuditLog,
    configure_audit,
    get_audit,
    iter_lines_reversed,
    verify,
)
from nanobot.security.redact import REDACTOR

ROOT = Path(__file__).resolve().parents[1]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "logs" / "audit.jsonl"


def write_events(path: Path, n: int, **kw) -> AuditLog:
    log = AuditLog(path, **kw)
    for i in range(n):
        log.record("access", channel="telegram", sender=str(i), decision="allowed", reason="ok")
    log.close()
    return log


def test_lines_are_chained_and_private(log_path):
    write_events(log_path, 3)
    raw = lines_of(log_path)
    events = [json.loads(x) for x in raw]
    assert events[0]["prev"] == GENESIS
    assert events[1]["prev"] == sha(raw[0])
    assert events[2]["prev"] == sha(raw[1])
    assert list(events[0]) == [
        "ts",
        "seq",
        "event",
        "channel",
        "sender",
        "decision",
        "reason",
        "prev",
    ]
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", events[0]["ts"])
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log_path.parent.stat().st_mode) == 0o700
    assert verify(log_path).ok


def test_values_are_redacted_and_cut(log_path):
    secret = "hunter2-correct-horse-battery"
    REDACTOR.add(secret)
    try:
        log = AuditLog(log_path)
        long_with_secret = "x" * 495 + secret  # the cut falls inside the secret
        log.record(
            "tool_call",
            tool="exec",
            args={"command": f"echo {secret}", "nested": [secret, {"k": secret}], secret: 1},
            note=long_with_secret,
            token="sk-" + "a" * 40,
            path=Path("/tmp/x"),
            duration_ms=12,
            exit_code=None,
        )
        log.close()
    finally:
        REDACTOR.clear()
    text = log_path.read_text()
    assert secret not in text and "hunter2" not in text
    assert "sk-aaaa" not in text
    ev = json.loads(text)
    assert ev["args"]["command"] == "echo [REDACTED]"
    assert ev["args"]["nested"] == ["[REDACTED]", {"k": "[REDACTED]"}]
    assert ev["note"].startswith("x" * 495) and "chars]" in ev["note"]
    assert len(ev["note"]) < 540
    assert ev["path"] == "/tmp/x" and ev["duration_ms"] == 12 and ev["exit_code"] is None


def test_big_containers_are_cut(log_path):
    log = AuditLog(log_path)
    log.record("tool_call", args={f"k{i}": "v" for i in range(500)}, items=list(range(500)))
    log.close()
    ev = json.loads(log_path.read_text())
    assert len(ev["args"]) == 51 and ev["items"][-1] == "…+450 more"


def test_reserved_names_cannot_overwrite_the_chain(log_path):
    log = AuditLog(log_path)
    log.record("x", prev="f" * 64, ts="forged")
    log.record("y")
    log.close()
    ev = json.loads(lines_of(log_path)[0])
    assert ev["prev"] == GENESIS and ev["_prev"] == "f" * 64 and ev["ts"] != "forged"
    assert verify(log_path).ok


def test_chain_continues_after_reopen(log_path):
    write_events(log_path, 2)
    write_events(log_path, 2)
    raw = lines_of(log_path)
    assert json.loads(raw[2])["prev"] == sha(raw[1])
    res = verify(log_path)
    assert res.ok and res.lines_checked == 4 and res.files == 1


def test_reopen_reads_only_the_end_of_the_file(log_path):
    # A 64 GiB sparse file: reading it whole would exhaust memory; the writer must seek.
    write_events(log_path, 1)
    last = lines_of(log_path)[0]
    with open(log_path, "r+b") as f:
        f.truncate(64 * 2**30)
        f.seek(0, os.SEEK_END)
        f.write(b"\n" + last + b"\n")
    try:
        write_events(log_path, 1, max_bytes=2**40)
        with open(log_path, "rb") as f:
            f.seek(-4096, os.SEEK_END)
            tail = f.read().splitlines()
        assert json.loads(tail[-1])["prev"] == sha(last)
        r = nanobot(log_path.parent.parent, "audit", "tail", "-n", "2", "--file", str(log_path))
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 2
    finally:
        for p in log_path.parent.glob("audit.jsonl*"):
            p.unlink()


def test_existing_loose_file_is_tightened(log_path):
    write_events(log_path, 1)
    os.chmod(log_path, 0o644)
    write_events(log_path, 1)
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600


def test_torn_last_line_is_repaired_and_named(log_path):
    write_events(log_path, 3)
    with open(log_path, "ab") as f:
        f.write(b'{"ts": "2026-01-01T00:00:00.000Z", "event": "acc')  # crash mid-write
    before = verify(log_path)
    assert before.ok and any(":4: torn last line" in n for n in before.notes)
    write_events(log_path, 1)
    raw = lines_of(log_path)
    repair = json.loads(raw[4])
    assert repair["event"] == "chain_repair" and repair["prev"] == sha(raw[3])
    assert repair["torn_bytes"] == len(raw[3])
    assert json.loads(raw[5])["prev"] == sha(raw[4])
    res = verify(log_path)
    assert res.ok and res.lines_checked == 6
    assert any(":4: torn line" in n and "line 5" in n for n in res.notes)


def test_garbage_line_without_repair_is_reported(log_path):
    write_events(log_path, 3)
    raw = lines_of(log_path)
    log_path.write_bytes(b"\n".join([raw[0], b"not json", raw[1], raw[2]]) + b"\n")
    res = verify(log_path)
    assert not res.ok
    assert res.first_bad[0] == str(log_path) and res.first_bad[1] == 2
    assert "not a valid audit event" in res.first_bad[2]


@pytest.mark.parametrize("tamper", ["edit", "delete", "insert", "swap"])
def test_tampering_is_reported_with_line_number(log_path, tamper):
    write_events(log_path, 6)
    raw = lines_of(log_path)
    if tamper == "edit":
        raw[2] = raw[2].replace(b'"decision": "allowed"', b'"decision": "denied"')
    elif tamper == "delete":
        del raw[2]
    elif tamper == "insert":
        forged = json.loads(raw[2])
        forged["sender"] = "intruder"
        raw.insert(3, json.dumps(forged).encode())
    else:
        raw[2], raw[3] = raw[3], raw[2]
    log_path.write_bytes(b"\n".join(raw) + b"\n")
    res = verify(log_path)
    assert not res.ok
    file, line_no, reason = res.first_bad
    assert file == str(log_path)
    assert line_no == {"edit": 4, "delete": 3, "insert": 4, "swap": 3}[tamper]
    assert f"line {line_no - 1}" in reason


def test_rotation_keeps_the_chain_across_files(log_path):
    write_events(log_path, 120, max_bytes=4000, backup_count=3)
    names = sorted(p.name for p in log_path.parent.iterdir())
    assert names == [
        "audit.jsonl",
        "audit.jsonl.1",
        "audit.jsonl.2",
        "audit.jsonl.3",
        "audit.jsonl.lock",
    ]
    for p in log_path.parent.glob("audit.jsonl*"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert p.stat().st_size <= 4000
    last_of_1 = lines_of(log_path.with_name("audit.jsonl.1"))[-1]
    assert json.loads(lines_of(log_path)[0])["prev"] == sha(last_of_1)
    res = verify(log_path)
    assert res.ok and res.files == 4
    assert res.lines_checked == sum(len(lines_of(p)) for p in log_path.parent.glob("audit.jsonl*"))
    assert any("rotated away" in n for n in res.notes)  # 120 events do not fit in 4 files


def test_rotation_without_backups(log_path):
    write_events(log_path, 60, max_bytes=2000, backup_count=0)
    assert not log_path.with_name("audit.jsonl.1").exists()
    assert verify(log_path).ok


def test_missing_middle_backup_is_reported(log_path):
    write_events(log_path, 100, max_bytes=4000, backup_count=3)
    log_path.with_name("audit.jsonl.2").unlink()
    res = verify(log_path)
    assert not res.ok
    assert res.first_bad[0] == str(log_path.with_name("audit.jsonl.1"))
    assert res.first_bad[1] == 1 and "audit.jsonl.2" in res.first_bad[2]


def test_edit_in_an_older_file_is_reported_at_the_next(log_path):
    write_events(log_path, 100, max_bytes=4000, backup_count=3)
    older = log_path.with_name("audit.jsonl.2")
    raw = lines_of(older)
    raw[-1] = raw[-1].replace(b'"reason": "ok"', b'"reason": "OK"')
    older.write_bytes(b"\n".join(raw) + b"\n")
    res = verify(log_path)
    assert not res.ok
    assert res.first_bad[:2] == (str(log_path.with_name("audit.jsonl.1")), 1)
    assert "the last line of" in res.first_bad[2] and "audit.jsonl.2" in res.first_bad[2]


def test_renamed_backup_breaks_the_chain(log_path):
    write_events(log_path, 100, max_bytes=4000, backup_count=3)
    one, two = log_path.with_name("audit.jsonl.1"), log_path.with_name("audit.jsonl.2")
    tmp = log_path.with_name("tmp")
    one.rename(tmp), two.rename(one), tmp.rename(two)
    assert not verify(log_path).ok


def test_no_file_verifies_empty(log_path):
    res = verify(log_path)
    assert res.ok and res.lines_checked == 0 and res.files == 0


def test_threads_never_fork_the_chain(log_path):
    log = AuditLog(log_path, max_bytes=20_000, backup_count=50)

    def worker(n):
        for i in range(200):
            log.record("tool_call", tool="exec", n=n, i=i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    res = verify(log_path)
    assert res.ok and res.lines_checked == 1600


def test_two_processes_share_one_chain(log_path, tmp_path):
    go = tmp_path / "go"
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from nanobot.security.audit import AuditLog
        log = AuditLog(Path({str(log_path)!r}), max_bytes=30_000, backup_count=200)
        Path(sys.argv[1]).touch()
        while not Path({str(go)!r}).exists():
            time.sleep(0.005)
        for i in range(1000):
            log.record("tool_call", tool="exec", i=i)
        """
    )
    ready = [tmp_path / f"ready{n}" for n in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(r)], cwd=ROOT) for r in ready]
    for _ in range(2000):  # both writers start together so their lines interleave
        if all(r.exists() for r in ready):
            break
        threading.Event().wait(0.01)
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    res = verify(log_path)
    assert res.ok, res.first_bad
    assert res.lines_checked == 2000


def test_write_failure_does_not_raise(tmp_path, caplog):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the folder should be")
    log = AuditLog(blocker / "audit.jsonl")
    log.record("gateway_start")  # must not raise into the gateway
    assert "audit: cannot write" in caplog.text


def test_disabled_log_writes_nothing(log_path):
    log = AuditLog(log_path, enabled=False)
    log.record("access", sender="1")
    assert not log_path.exists() and not log_path.parent.exists()


def test_get_audit_is_a_noop_until_configured(tmp_path, monkeypatch):
    monkeypatch.setattr(audit_mod, "_AUDIT", audit_mod._AUDIT)  # restored after the test
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path / "home"))
    get_audit().record("gateway_start")
    assert not (tmp_path / "home").exists()
    cfg = Config()
    cfg.security.audit.max_bytes = 50_000
    log = configure_audit(cfg)
    assert get_audit() is log and log.max_bytes == 50_000
    log.record("gateway_start")
    path = tmp_path / "home" / "logs" / "audit.jsonl"
    assert json.loads(path.read_text())["event"] == "gateway_start"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    cfg.security.audit.enabled = False
    configure_audit(cfg).record("gateway_stop")
    assert len(lines_of(path)) == 1


def test_reverse_reader_across_blocks(tmp_path):
    p = tmp_path / "f"
    lines = [b"a" * 10_000, b"", b"b", b"c" * 20_000, b"d"]
    p.write_bytes(b"\n".join(lines) + b"\n")
    assert list(iter_lines_reversed(p)) == lines[::-1]
    p.write_bytes(b"\n".join(lines))  # torn: no final newline
    assert list(iter_lines_reversed(p)) == lines[::-1]
    p.write_bytes(b"")
    assert list(iter_lines_reversed(p)) == []


# -- the CLI: `nanobot audit verify|tail` in a real subprocess --


def nanobot(home: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NANOBOT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "nanobot", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    log = AuditLog(
        h / "logs" / "audit.jsonl",
        max_bytes=3000,
        backup_count=5,
        anchor=h / "state" / "audit-anchor.json",
    )
    for i in range(30):
        decision = "denied" if i % 10 == 3 else "allowed"
        log.record("access", channel="telegram", sender=str(i), decision=decision, reason="x y")
    log.record("http_request", path="/x", status=404, client="127.0.0.1", decision="rejected")
    log.record("rate_limit", channel="email", sender="a@b.c", kind="message")
    log.record("tool_call", tool="exec", args={"command": "rm -rf /"}, decision="blocked by guard")
    log.record("http_request", path="/api", status=200, client="127.0.0.1", decision="allowed")
    log.close()
    return h


def test_cli_verify_ok_and_broken(home):
    files = len(list((home / "logs").glob("audit.jsonl*"))) - 1  # not the .lock
    r = nanobot(home, "audit", "verify")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"audit chain OK: 34 lines in {files} files"
    path = home / "logs" / "audit.jsonl"
    raw = lines_of(path)
    raw[0] = raw[0].replace(b'"event"', b'"evnt"')
    path.write_bytes(b"\n".join(raw) + b"\n")
    r = nanobot(home, "audit", "verify")
    assert r.returncode == 1
    assert r.stdout.startswith(f"audit chain BROKEN at {path}:2: prev hash does not match line 1")


def test_cli_tail_reads_across_files(home):
    r = nanobot(home, "audit", "tail", "-n", "5")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) == 5
    assert re.fullmatch(r"\S+Z access telegram sender=29 decision=allowed reason=\"x y\"", out[0])
    assert out[-1].endswith("http_request path=/api status=200 client=127.0.0.1 decision=allowed")
    assert "prev" not in r.stdout
    r = nanobot(home, "audit", "tail", "-n", "40")
    assert len(r.stdout.splitlines()) == 34  # more than one file holds them


def test_cli_tail_denied(home):
    r = nanobot(home, "audit", "tail", "--denied")
    out = r.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in out] == [
        'access telegram sender=3 decision=denied reason="x y"',
        'access telegram sender=13 decision=denied reason="x y"',
        'access telegram sender=23 decision=denied reason="x y"',
        "http_request path=/x status=404 client=127.0.0.1 decision=rejected",
        "rate_limit email sender=a@b.c kind=message",
        'tool_call tool=exec args={"command":"rm -rf /"} decision="blocked by guard"',
    ]
    r = nanobot(home, "audit", "tail", "--denied", "-n", "2")
    assert [line.split(" ")[1] for line in r.stdout.splitlines()] == ["rate_limit", "tool_call"]


def test_cli_without_audit_file(tmp_path):
    r = nanobot(tmp_path, "audit", "verify")
    assert r.returncode == 0 and "0 lines in 0 files" in r.stdout
    r = nanobot(tmp_path, "audit", "tail")
    assert r.returncode == 0 and "no audit events yet" in r.stdout
