"""config.json is read, never written, by the service: the unit bind-mounts it read-only
(ReadOnlyPaths=), so even though the nanobot user owns the file and its folder, a process in
the service's mount namespace can neither write, replace nor delete it. The checks run as
the nanobot user inside the running gateway's own mount namespace (nsenter), where a
hijacked agent would be."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.deploy

CONFIG = "/var/lib/nanobot/.nanobot/config.json"

# Tries each write; prints "NAME ERRNO-NAME" per attempt ("NAME ok" if it succeeded).
ATTEMPTS = r"""
import errno, os, sys
path = sys.argv[1]
def attempt(name, fn):
    try:
        fn()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
def replace():
    tmp = os.path.join(os.path.dirname(path), ".config.json.hijack")
    with open(tmp, "w") as f:
        f.write("{}")
    try:
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
attempt("append", lambda: open(path, "a").close())
attempt("chmod", lambda: os.chmod(path, 0o666))
attempt("replace", replace)
attempt("unlink", lambda: os.unlink(path))
with open(path, "rb") as f:
    print("read", len(f.read()))
"""


def test_the_unit_mounts_config_json_read_only(host):
    lines = host.check_output("systemctl cat nanobot.service").splitlines()
    assert f"ReadOnlyPaths=-{CONFIG}" in lines
    nanobotctl = host.file("/usr/local/sbin/nanobotctl").content_string
    assert f"--property=ReadOnlyPaths=-{CONFIG}" in nanobotctl


def test_the_service_user_cannot_write_config_json(host, main_pid):
    before = host.check_output(f"sha256sum {CONFIG}")
    out = host.check_output(
        f"nsenter -t {main_pid} -m setpriv --reuid=nanobot --regid=nanobot --clear-groups "
        "python3 -c %s %s",
        ATTEMPTS,
        CONFIG,
    )
    print(f"\nas nanobot in the service's mount namespace: {out.splitlines()}")
    got = dict(line.split(" ", 1) for line in out.splitlines())
    assert got["append"] == "EROFS", got
    assert got["chmod"] == "EROFS", got
    assert got["replace"] == "EBUSY", got  # a mount point cannot be renamed over
    assert got["unlink"] == "EBUSY", got
    assert int(got["read"]) > 0, "the service must still read it"
    assert host.check_output(f"sha256sum {CONFIG}") == before
    # Outside that namespace the role (root) still renders it.
    assert host.file(CONFIG).user == "nanobot" and host.file(CONFIG).mode == 0o600


def test_the_audit_trail_stays_appendable(host, main_pid):
    """The gateway appends and rotates logs/audit.jsonl itself (see SECURITY.md: the HMAC chain
    and the anchor protect it, not a file mode): the same namespace must allow that."""
    out = host.run(
        f"nsenter -t {main_pid} -m setpriv --reuid=nanobot --regid=nanobot --clear-groups "
        "test -w /var/lib/nanobot/.nanobot/logs/audit.jsonl"
    )
    assert out.rc == 0, "the audit trail must stay writable for the service"
