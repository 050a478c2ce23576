"""Secrets at rest on a converged host: every credential is encrypted by systemd-creds and
loaded with LoadCredentialEncrypted=; no test secret is anywhere on the container's
filesystems (outside /proc, /sys and the runtime credentials directory); the service still
decrypts and uses them. Secrets never appear in commands or output here: they travel hex-encoded
and are compared by hash inside the container."""

from __future__ import annotations

import hashlib

import pytest
from conftest import secrets_by_credential

pytestmark = pytest.mark.deploy

CREDS = "/etc/nanobot/credentials"
RUNTIME = "/run/credentials/nanobot.service"
HELPER = "/usr/local/lib/nanobot/credential-encrypt"

# Walks / inside the container and prints the number of files read, then "INDEX PATH" for
# every file that holds needle INDEX. Needles come hex-encoded, so this text holds none.
SEARCH = r"""
import os, stat, sys
needles = [bytes.fromhex(h) for h in sys.argv[1:]]
skip = {"/proc", "/sys", "/run/credentials"}
keep = max(map(len, needles)) - 1
hits, scanned = set(), 0
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
    for name in files:
        path = os.path.join(root, name)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            with open(path, "rb") as f:
                tail = b""
                while chunk := f.read(1 << 20):
                    buf = tail + chunk
                    hits.update((i, path) for i, n in enumerate(needles) if n in buf)
                    tail = buf[-keep:] if keep else b""
        except OSError:
            continue
        scanned += 1
print(scanned)
for i, path in sorted(hits):
    print(i, path)
"""
UNHEX = "import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1]))"


def _secrets(test_vars: dict) -> dict[str, str]:
    """Credential name -> the test secret the role was given for it."""
    return secrets_by_credential(test_vars)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode() + b"\n").hexdigest()  # the role stores value + "\n"


def test_credentials_are_encrypted_and_loaded_encrypted(host, test_vars):
    # The unit and its drop-ins (systemd 252's `systemctl show` prints these as [unprintable]).
    lines = host.check_output("systemctl cat nanobot.service").splitlines()
    assert not [line for line in lines if line.startswith("LoadCredential=")]
    for name, value in _secrets(test_vars).items():
        path = f"{CREDS}/{name}"
        assert f"LoadCredentialEncrypted={name}:{path}" in lines
        # Decryption by systemd-creds yields the secret (compared by hash, never printed) ...
        got = host.check_output(f"systemd-creds decrypt --name={name} {path} - | sha256sum")
        assert got.split()[0] == _sha(value), name
        # ... and the file itself is not the secret (its sha would match the plain bytes).
        assert host.check_output(f"sha256sum {path}").split()[0] != _sha(value), name


def test_no_test_secret_anywhere_on_the_filesystem(host, test_vars):
    needles = list(_secrets(test_vars).values())
    out = host.check_output(
        "python3 -c %s " + " ".join(["%s"] * len(needles)),
        SEARCH,
        *[n.encode().hex() for n in needles],
    )
    scanned, *hits = out.splitlines()
    print(f"\nsecrets-at-rest search: {scanned} files read, {len(hits)} holding a test secret")
    assert int(scanned) > 5000, "the search did not walk the root filesystem"
    assert hits == [], f"plaintext test secrets found in: {hits}"


def test_the_running_service_has_them_decrypted_and_answers(host, test_vars, turn):
    pid = host.check_output("systemctl show -p MainPID --value nanobot.service")
    for name, value in _secrets(test_vars).items():
        got = host.check_output(f"nsenter -t {pid} -m sha256sum {RUNTIME}/{name}")
        assert got.split()[0] == _sha(value), name
    # The gateway token authenticates the API, the provider key the model request (the
    # Telegram token and mail passwords: tests/test_channels.py).
    assert turn("hello") != ""


def test_rotation_re_encrypts_only_a_changed_secret(host):
    folder = host.check_output("mktemp -d /run/nanobot-rotate.XXXXXX")
    path = f"{folder}/rotate-test"

    def put(value: str) -> str:
        # The value travels hex-encoded and reaches the helper through a pipe.
        return host.check_output(
            f"python3 -c %s {value.encode().hex()} | {HELPER} rotate-test {path} host", UNHEX
        )

    try:
        assert put("first-value\n") == "changed"
        first = host.check_output(f"sha256sum {path}")
        assert put("first-value\n") == "unchanged"
        assert host.check_output(f"sha256sum {path}") == first
        assert put("second-value\n") == "changed"
        got = host.check_output(f"systemd-creds decrypt --name=rotate-test {path} - | sha256sum")
        assert got.split()[0] == hashlib.sha256(b"second-value\n").hexdigest()
        assert host.file(path).mode == 0o600
    finally:
        host.run(f"rm -rf {folder}")
