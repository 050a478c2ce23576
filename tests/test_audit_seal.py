"""Attacks on the sealed, anchored audit trail: truncation, deletion, rewriting with a recomputed
chain, a stolen current key, and the CLI that an operator uses to find out."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nanobot.security.audit import GENESIS, AuditLog, verify
from nanobot.security.auditseal import (
    SyslogSender,
    epoch_key,
    init_seal,
    load_anchor,
    load_seal,
    mac_of,
    save_anchor,
    sealed_line,
    split_mac,
)

ROOT = Path(__file__).resolve().parents[1]
EPOCH = 0.15  # seconds per sealing epoch in these tests


class Trail:
    """A NANOBOT_HOME-like layout with a sealed, anchored trail of several epochs."""

    def __init__(self, root: Path, sealed: bool = True, **kw) -> None:
        self.home = root
        self.path = root / "logs" / "audit.jsonl"
        self.anchor = root / "state" / "audit-anchor.json"
        self.seal = root / "credentials" / "audit-seal.json"
        self.key = init_seal(self.seal, EPOCH) if sealed else None
        self.kw = kw

    def write(self, n: int, epochs: int = 1) -> None:
        for e in range(epochs):
            log = AuditLog(self.path, anchor=self.anchor, seal=self.seal, **self.kw)
            for i in range(n):
                log.record("access", channel="telegram", sender=f"{e}-{i}", decision="allowed")
            log.close()
            if e < epochs - 1:
                time.sleep(EPOCH + 0.02)

    def check(self, key: bytes | None = None, **kw):
        return verify(self.path, anchor=self.anchor, seal=self.seal, key=key, **kw)

    def lines(self, path: Path | None = None) -> list[bytes]:
        return (path or self.path).read_bytes().splitlines()

    def put(self, lines: list[bytes], path: Path | None = None) -> None:
        (path or self.path).write_bytes(b"\n".join(lines) + b"\n")


@pytest.fixture
def trail(tmp_path):
    t = Trail(tmp_path / "home")
    t.write(4, epochs=3)
    return t


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def relink(lines: list[bytes], start: int, key_for=None, renumber: bool = False) -> list[bytes]:
    """What an attacker does after an edit: recompute prev (and seq, and MACs with key_for)."""
    out = list(lines[:start])
    for raw in lines[start:]:
        obj = json.loads(raw)
        obj.pop("mac", None)
        obj["prev"] = sha(out[-1]) if out else GENESIS
        if renumber:
            obj["seq"] = json.loads(out[-1])["seq"] + 1 if out else 1
        if key_for is None:
            # keep the old MAC: the attacker cannot make a new one without the epoch's key
            old = split_mac(raw)
            line = json.dumps(obj).encode()
            out.append(line[:-1] + b', "mac": "' + old[1].encode() + b'"}' if old else line)
        else:
            out.append(sealed_line(obj, key_for(obj)))
    return out


def fake_anchor(t: Trail, lines: list[bytes]) -> None:
    last = json.loads(lines[-1])
    anchor = load_anchor(t.anchor)
    anchor.seq, anchor.head = last["seq"], sha(lines[-1])
    save_anchor(t.anchor, anchor)


def test_intact_sealed_trail_verifies_with_the_key(trail):
    lines = [json.loads(x) for x in trail.lines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert {e["epoch"] for e in lines} == {0, 1, 2}
    assert sum(e["event"] == "audit_seal" for e in lines) == 2
    res = trail.check(trail.key)
    assert res.ok, res.first_bad
    assert res.epochs_checked == 3 and res.last_seq == len(lines)
    assert not trail.check(b"\x01" * 32).ok  # a wrong key fails at the first sealed line


def test_the_stored_key_has_moved_on_and_the_old_ones_are_gone(trail):
    state = load_seal(trail.seal)
    assert state.epoch == 2
    assert state.key_bytes == epoch_key(trail.key, 2)
    text = trail.seal.read_text()
    for old in (trail.key, epoch_key(trail.key, 1)):
        assert old.hex() not in text


def test_deleting_the_tail_is_reported(trail):
    lines = trail.lines()
    trail.put(lines[:-3])
    res = trail.check()
    assert not res.ok
    n = len(lines)
    assert f"events {n - 2}..{n} are missing at the end" in res.first_bad[2]


def test_emptying_or_deleting_the_file_is_reported(trail):
    n = len(trail.lines())
    trail.path.write_bytes(b"")
    res = trail.check()
    assert not res.ok and "the trail is gone: the anchor (" in res.first_bad[2]
    assert f"records {n} events" in res.first_bad[2]
    trail.path.unlink()
    assert not trail.check().ok


def test_deleting_file_and_anchor_is_reported_and_the_logged_anchor_names_the_loss(trail):
    n, head = len(trail.lines()), sha(trail.lines()[-1])
    trail.path.unlink()
    trail.anchor.unlink()
    res = trail.check()
    assert not res.ok and "the anchor is missing" in res.first_bad[2]
    res = verify(trail.path, key=trail.key, expect=(n, head))
    assert not res.ok and f"the trail is gone: the logged anchor records {n}" in res.first_bad[2]


def test_deleting_a_rotated_file_is_reported(tmp_path):
    t = Trail(tmp_path / "home", max_bytes=2500, backup_count=3)
    t.write(40)
    files = sorted(t.path.parent.glob("audit.jsonl.*[0-9]"))
    assert len(files) == 3
    assert t.check(t.key).ok
    floor = load_anchor(t.anchor).floor
    assert floor > 1  # older lines were rotated away on purpose, and the anchor knows it
    oldest = t.path.with_name("audit.jsonl.3")
    first_kept = json.loads(t.lines(t.path.with_name("audit.jsonl.2"))[0])["seq"]
    oldest.unlink()
    res = t.check()
    assert not res.ok
    assert res.first_bad[0] == str(t.path.with_name("audit.jsonl.2"))
    assert f"events {floor}..{first_kept - 1} are missing before this line" in res.first_bad[2]


def test_deleting_lines_at_the_start_is_reported(trail):
    trail.put(relink(trail.lines()[2:], 0, renumber=False))
    res = trail.check()
    assert not res.ok and "events 1..2 are missing before this line" in res.first_bad[2]


def test_removing_an_event_and_recomputing_the_chain(trail):
    lines = trail.lines()
    del lines[5]
    forged = relink(lines, 5)
    trail.put(forged)
    fake_anchor(trail, forged)
    res = trail.check()  # no key: the seq gap gives it away
    assert not res.ok and res.first_bad[1] == 6 and "events 6..6 are missing" in res.first_bad[2]
    renumbered = relink(lines, 5, renumber=True)
    trail.put(renumbered)
    fake_anchor(trail, renumbered)
    assert trail.check().ok  # chain, numbering and anchor all agree: only the key can tell
    res = trail.check(trail.key)
    assert not res.ok and res.first_bad[1] == 6
    epoch = json.loads(renumbered[5])["epoch"]
    assert f"the seal of epoch {epoch} fails on this line" in res.first_bad[2]


def test_rewriting_an_event_and_recomputing_the_chain(trail):
    lines = trail.lines()
    obj = json.loads(lines[2])
    obj["decision"] = "denied"
    lines[2] = json.dumps(obj).encode()  # the old MAC kept: the attacker has no key for a new one
    forged = relink(lines, 3)
    trail.put([*lines[:3], *forged[3:]])
    fake_anchor(trail, forged)
    assert trail.check().ok  # without the key the rewrite cannot be seen…
    res = trail.check(trail.key)  # …with it, the line is named
    assert not res.ok and res.first_bad[1] == 3 and "seal of epoch 0 fails" in res.first_bad[2]
    obj.pop("mac")
    lines[2] = json.dumps(obj).encode()  # dropping the MAC instead
    forged = relink(lines, 3)
    trail.put([*lines[:3], *forged[3:]])
    fake_anchor(trail, forged)
    res = trail.check()
    assert not res.ok and res.first_bad[1] == 3 and "no seal" in res.first_bad[2]


def test_a_stolen_current_key_cannot_rewrite_earlier_epochs(trail):
    stolen = load_seal(trail.seal)  # what an intruder reads today: epoch 2's key
    lines = trail.lines()
    target = next(i for i, x in enumerate(lines) if json.loads(x)["epoch"] == 0)
    obj = json.loads(lines[target])
    obj["decision"] = "denied"
    obj.pop("mac")
    lines[target] = sealed_line(obj, stolen.key_bytes)
    forged = relink(lines, target + 1, key_for=lambda o: stolen.key_bytes)
    trail.put(forged)
    fake_anchor(trail, forged)
    res = trail.check(trail.key)
    assert not res.ok and res.first_bad[1] == target + 1
    assert "the seal of epoch 0 fails" in res.first_bad[2]
    # Claiming the line belongs to the stolen key's epoch breaks the epoch order instead.
    obj["epoch"] = stolen.epoch
    lines[target] = sealed_line(obj, stolen.key_bytes)
    trail.put(relink(lines, target + 1, key_for=lambda o: stolen.key_bytes))
    res = trail.check(trail.key)
    assert not res.ok and res.first_bad[1] <= target + 2


def test_removing_an_epoch_seal_line_is_named(trail):
    lines = trail.lines()
    i = next(i for i, x in enumerate(lines) if json.loads(x)["event"] == "audit_seal")
    del lines[i]
    forged = relink(lines, i, renumber=True)
    trail.put(forged)
    fake_anchor(trail, forged)
    res = trail.check()
    assert not res.ok and "epoch 0 ends without its audit_seal line" in res.first_bad[2]


def test_torn_line_is_repaired_within_a_sealed_trail(trail):
    with open(trail.path, "ab") as f:
        f.write(b'{"ts": "2026-01-01T00:00:00.000Z", "seq": 99, "ev')
    trail.write(2)
    res = trail.check(trail.key)
    assert res.ok, res.first_bad
    assert any("torn line" in n for n in res.notes)


def test_unsealed_trail_is_still_anchored(tmp_path):
    t = Trail(tmp_path / "home", sealed=False)
    t.write(5)
    res = t.check()
    assert res.ok and any("audit init" in n for n in res.notes)
    t.put(t.lines()[:-1])
    assert not t.check().ok


def test_anchor_goes_to_the_system_log(tmp_path):
    addr = str(tmp_path / "log.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(addr)
    sink.settimeout(2)
    try:
        t = Trail(tmp_path / "home")
        log = AuditLog(t.path, anchor=t.anchor, seal=t.seal, syslog=SyslogSender(addr, 3600))
        log.record("a")
        first = sink.recv(4096).decode()
        log.record("b")  # within min_interval: not sent again…
        time.sleep(EPOCH + 0.02)
        log.record("c")  # …but a seal always is
        sealed = sink.recv(4096).decode()
        log.close()
    finally:
        sink.close()
    assert re.fullmatch(r"<86>nanobot-audit\[\d+\]: anchor seq=1 head=[0-9a-f]{64} epoch=0", first)
    assert " seq=3 " in sealed and "epoch=0" in sealed  # the seal line closes epoch 0
    logged = sealed.split(": ", 1)[1]
    t.path.unlink()
    t.anchor.unlink()
    r = cli(t.home, "audit", "verify", "--anchor", logged)
    assert r.returncode == 1 and "the trail is gone: the logged anchor records 3" in r.stdout


def cli(home: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NANOBOT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "nanobot", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_init_verify_with_key_and_tail(tmp_path):
    home = tmp_path / "home"
    r = cli(home, "audit", "init", "--every", "1")
    assert r.returncode == 0, r.stderr
    key = re.search(r"^\s+([0-9a-f]{64})$", r.stdout, re.M)[1]
    assert key not in (home / "credentials" / "audit-seal.json").read_text()
    assert cli(home, "audit", "init").returncode == 1  # never silently replaced
    keyfile = tmp_path / "key"
    keyfile.write_text(key + "\n")
    for arg in (key, f"file:{keyfile}"):
        r = cli(home, "audit", "verify", "--key", arg)
        assert r.returncode == 0 and "seals checked in 1 epoch(s)" in r.stdout, r.stdout
    r = cli(home, "audit", "verify", "--key", "ab" * 32)
    assert r.returncode == 1 and "the seal of epoch 0 fails" in r.stdout
    assert cli(home, "audit", "verify", "--key", "nothex").returncode == 2
    r = cli(home, "audit", "tail")
    assert r.returncode == 0 and "audit_init epoch_seconds=60.0" in r.stdout
    assert "mac" not in r.stdout and "seq" not in r.stdout
    audit = home / "logs" / "audit.jsonl"
    audit.write_bytes(b"")
    r = cli(home, "audit", "verify")
    assert r.returncode == 1 and "the trail is gone" in r.stdout


def test_mac_covers_every_byte_but_itself():
    key = b"k" * 32
    line = sealed_line({"ts": "t", "seq": 1, "event": "x", "prev": GENESIS, "epoch": 0}, key)
    body, mac = split_mac(line)
    assert mac == mac_of(key, body) and json.loads(line)["mac"] == mac
    assert split_mac(line.replace(b'"x"', b'"y"'))[1] != mac_of(key, body.replace(b"x", b"y"))


def test_a_quiet_trail_still_moves_its_key_on_at_the_tick(tmp_path):
    t = Trail(tmp_path / "home")
    t.write(2)
    first = load_seal(t.seal).epoch
    time.sleep(EPOCH + 0.02)
    log = AuditLog(t.path, anchor=t.anchor, seal=t.seal)
    log.tick()  # nothing happened, yet the epoch is over: sealed and the key replaced
    log.tick()  # not due again: nothing written
    log.close()
    events = [json.loads(x)["event"] for x in t.lines()]
    assert events.count("audit_seal") == 1 and events[-1] == "audit_seal"
    assert load_seal(t.seal).epoch == first + 1
    assert t.check(t.key).ok
