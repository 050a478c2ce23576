"""`nanobot doctor`: the reference Security Checklist as PASS/WARN/FAIL checks; --fix repairs modes."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
MAX_EXEC_TIMEOUT = 600

_BY_HAND = "(or nanobot doctor --fix)"
# The fix for each check that is not PASS; {placeholders} come from the check.
FIXES = {
    "config_mode": "chmod 600 {path} " + _BY_HAND,
    "config_missing": "nanobot onboard",
    "home_mode": "chmod 700 {path} " + _BY_HAND,
    "non_root": "run nanobot as a dedicated user: sudo useradd --system --create-home nanobot; "
    "sudo -u nanobot nanobot gateway",
    "allow_from.telegram": "add your Telegram user id to channels.telegram.allowFrom (message "
    '@userinfobot to learn it), e.g. "allowFrom": ["123456789"]',
    "allow_from.whatsapp": "add your phone number with its country code to "
    'channels.whatsapp.allowFrom, e.g. "allowFrom": ["+1234567890"]',
    "allow_from.email": "add the addresses that may write to the bot to "
    'channels.email.allowFrom, e.g. "allowFrom": ["you@example.com"]',
    "allow_from": "list the allowed senders in {key}",
    "whatsapp_bridge_token": 'set channels.whatsapp.bridgeToken (e.g. "${{WHATSAPP_BRIDGE_TOKEN}}")'
    ", or run nanobot onboard to generate one",
    "restrict_to_workspace": 'set "tools": {{"restrictToWorkspace": true}}',
    "exec_timeout": "set tools.exec.timeout to {max} or less (default 60)",
    "sandbox": "apt-get install bubblewrap, allow unprivileged user namespaces, and set "
    'tools.exec.sandbox to "auto"',
    "literal_secrets": 'use references instead: "${{OPENAI_API_KEY}}" (environment) or '
    '"file:/path/to/secret" (systemd credentials: "file:${{CREDENTIALS_DIRECTORY}}/name")',
    "gateway_bind": 'set gateway.token (e.g. "${{NANOBOT_GATEWAY_TOKEN}}") or gateway.host to '
    "127.0.0.1",
    "rate_limit": "set security.rateLimit.messagesPerMinute (default 20)",
    "audit_disabled": "set security.audit.enabled to true",
    "audit_chain": "investigate (nanobot audit tail); keep the files as evidence, then move "
    "them aside to start a new chain",
    "audit_seal": "nanobot audit init (prints a verification key: keep it off this machine)",
    "logs_dir_mode": "chmod 700 {path} " + _BY_HAND,
    "log_file_modes": "chmod 600 {path}/*.log* {path}/audit.jsonl* " + _BY_HAND,
    "log_symlinks": "replace them with regular files; logs must not point elsewhere",
    "config_warnings": "see each warning",
    "secret_file": "chmod 600 the file, chmod go-w its folders, chown them to nanobot's user "
    + _BY_HAND,
    "credentials": "chmod 700 {path}; chmod 600 the files in it " + _BY_HAND,
    "workspace_fs": "give the workspace its own size-limited filesystem (the deployment role's "
    "nanobot_workspace_size), so a full workspace cannot stop sessions, inbox and audit writes",
    "group_policy": 'set channels.telegram.groupPolicy to "off" unless every member of the '
    "groups the bot is in may read what the bot answers",
}


@dataclass
class Check:
    """One checklist item: id (stable, for --json), PASS/WARN/FAIL, what was found, the fix."""

    id: str
    status: str
    message: str
    fix: str = ""


def _check(cid: str, status: str, message: str, fix_key: str | None = None, **fmt) -> Check:
    """A Check whose fix text (only when not PASS) comes from FIXES[fix_key or cid]."""
    if status == PASS:
        return Check(cid, status, message)
    key = fix_key or cid
    return Check(
        cid, status, message, FIXES.get(key, FIXES.get(key.split(".")[0], "")).format(**fmt)
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument(
        "--fix",
        action="store_true",
        help="chmod 600 config, log and secret files, chmod 700 NANOBOT_HOME, logs/ and "
        "credentials/, drop group/other write from the folders above file: secrets, then check",
    )


def run(args: argparse.Namespace) -> int:
    """Exit 0 when nothing FAILs, 1 when something does, 2 when the config cannot be loaded."""
    from nanobot import paths
    from nanobot.config.loader import load_config
    from nanobot.errors import ConfigError

    config_path = args.config or paths.config_path()
    home = paths.home()
    fixed = []
    if args.fix:
        from nanobot.commands.doctor_files import fix_secrets

        fixed = fix_modes(home, config_path) + fix_secrets(home, config_path)
    if not args.json:
        for line in fixed:
            print(f"fixed: {line}")
    try:
        cfg, info = load_config(config_path)
    except ConfigError as e:
        if args.json:
            print(json.dumps({"checks": [], "ok": False, "fixed": fixed, "error": str(e)}))
        print(str(e), file=sys.stderr)
        return 2
    checks = run_checks(cfg, info, home, config_path, os.geteuid())
    ok = not any(c.status == FAIL for c in checks)
    if args.json:
        out = {"checks": [asdict(c) for c in checks], "ok": ok, "fixed": fixed}
        print(json.dumps(out, indent=2))
    else:
        for c in checks:
            tail = f" — fix: {c.fix}" if c.fix and c.status != PASS else ""
            print(f"{c.status:<4}  {c.message}{tail}")
        counts = {s: sum(c.status == s for c in checks) for s in (PASS, WARN, FAIL)}
        print(f"nanobot doctor: {counts[PASS]} ok, {counts[WARN]} warnings, {counts[FAIL]} failing")
    return 0 if ok else 1


def run_checks(
    cfg, info, home: Path, config_path: Path, uid: int, sandbox_status=None
) -> list[Check]:
    """Every check in checklist order. sandbox_status is bwrap_status()'s answer (asked when None)."""
    from nanobot import paths
    from nanobot.commands.doctor_approval import check_approval, check_exec_network
    from nanobot.commands.doctor_email import check_email
    from nanobot.commands.doctor_files import (
        check_credentials,
        check_group_policy,
        check_secret_files,
        check_workspace_fs,
    )
    from nanobot.commands.doctor_secrets import check_secret_stores
    from nanobot.config.loader import workspace_path
    from nanobot.security.audit import audit_path
    from nanobot.security.auditseal import anchor_path, seal_path

    checks = [
        check_config_mode(config_path, info.exists),
        check_home_mode(home),
        check_user(uid),
        *check_channels(cfg),
        *check_email(cfg, info),
        check_restrict(cfg),
        check_exec_timeout(cfg),
        check_sandbox(cfg.tools.exec.sandbox, sandbox_status),
        check_exec_network(cfg, sandbox_status),
        check_approval(cfg),
        check_secrets(info.literal_secrets),
        *check_secret_stores(info.origins),
        check_gateway(cfg),
        check_rate_limit(cfg),
        *check_audit(cfg.security.audit.enabled, audit_path(), anchor_path(), seal_path()),
        *check_logs(paths.logs_dir()),
        *check_secret_files(config_path, uid),
        check_credentials(home / "credentials", uid),
        check_workspace_fs(workspace_path(cfg), home),
        check_group_policy(cfg),
    ]
    # File modes have checks of their own; the loader says which warnings are about them.
    others = [w for w in info.warnings if w not in info.permission_warnings]
    if others:
        checks.append(_check("config_warnings", WARN, "; ".join(others)))
    return checks


def _mode(st: os.stat_result) -> str:
    return oct(stat.S_IMODE(st.st_mode))[2:].zfill(4)


def check_config_mode(path: Path, exists: bool) -> Check:
    if not exists:
        return _check("config_mode", WARN, f"no config file at {path}", "config_missing")
    st = path.stat()
    if st.st_mode & 0o077:
        msg = f"{path.name} mode {_mode(st)}: readable or writable by group/others"
        return _check("config_mode", FAIL, msg, path=path)
    return _check("config_mode", PASS, f"{path.name} mode {_mode(st)}")


def check_home_mode(home: Path) -> Check:
    if not home.is_dir():
        return _check("home_mode", WARN, f"NANOBOT_HOME {home} does not exist", "config_missing")
    st = home.stat()
    if st.st_mode & 0o077:
        msg = f"NANOBOT_HOME {home} mode {_mode(st)}: open to group/others"
        return _check("home_mode", FAIL, msg, path=home)
    return _check("home_mode", PASS, f"NANOBOT_HOME mode {_mode(st)}")


def check_user(uid: int) -> Check:
    if uid == 0:
        return _check("non_root", FAIL, "running as root: a hijacked agent would own the machine")
    return _check("non_root", PASS, f"running as non-root user (uid {uid})")


def check_channels(cfg) -> list[Check]:
    """One check per enabled channel (allowFrom), and the WhatsApp bridge token."""
    out = []
    for f in fields(cfg.channels):
        ch = getattr(cfg.channels, f.name)
        if not getattr(ch, "enabled", False):
            continue
        key, cid = f"channels.{f.name}.allowFrom", f"allow_from.{f.name}"
        allow = [str(e).strip() for e in ch.allow_from]
        if not allow:
            msg = f"{key} is empty: anyone can talk to the bot"
            out.append(_check(cid, FAIL, msg, key=key))
        elif "*" in allow:
            msg = f'{key} is "*": anyone can talk to the bot (on purpose?)'
            out.append(_check(cid, WARN, msg, key=key))
        else:
            out.append(_check(cid, PASS, f"{key} lists {len(allow)} sender(s)"))
        if f.name == "whatsapp" and not ch.bridge_token:
            msg = "channels.whatsapp.bridgeToken is empty: any local process can use the bridge"
            out.append(_check("whatsapp_bridge_token", FAIL, msg))
    return out or [_check("allow_from", PASS, "no channels enabled (terminal only)")]


def check_restrict(cfg) -> Check:
    if not cfg.tools.restrict_to_workspace:
        msg = "restrictToWorkspace is off: file tools and exec may touch any path"
        return _check("restrict_to_workspace", FAIL, msg)
    return _check("restrict_to_workspace", PASS, "restrictToWorkspace on")


def check_exec_timeout(cfg) -> Check:
    t = cfg.tools.exec.timeout
    if t > MAX_EXEC_TIMEOUT:
        msg = f"tools.exec.timeout is {t} s: a runaway command holds its turn that long"
        return _check("exec_timeout", WARN, msg, max=MAX_EXEC_TIMEOUT)
    return _check("exec_timeout", PASS, f"exec timeout {t} s")


def check_sandbox(mode: str, status: tuple[bool, str] | None = None) -> Check:
    """mode is tools.exec.sandbox; status is bwrap_status()'s (available, reason)."""
    if mode == "none":
        msg = 'tools.exec.sandbox is "none": commands run unsandboxed, only the guard protects exec'
        return _check("sandbox", WARN, msg)
    if status is None:
        from nanobot.security.sandbox import bwrap_status

        status = bwrap_status()
    available, reason = status
    if available:
        return _check("sandbox", PASS, f"exec sandbox: bubblewrap in use ({mode})")
    if mode == "bwrap":
        msg = f'tools.exec.sandbox is "bwrap" but it cannot run ({reason}): exec refuses all'
        return _check("sandbox", FAIL, msg)
    return _check("sandbox", WARN, f"exec sandbox unavailable ({reason}): commands run unsandboxed")


def check_secrets(literal_paths: list[str]) -> Check:
    """Names the keys holding literal secrets; never their values."""
    if literal_paths:
        msg = f"secrets written literally in the config: {', '.join(literal_paths)}"
        return _check("literal_secrets", WARN, msg)
    return _check("literal_secrets", PASS, "no literal secrets in the config")


def _loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name (or "" = every address) may resolve to anything


def check_gateway(cfg) -> Check:
    g = cfg.gateway
    if _loopback(g.host):
        return _check("gateway_bind", PASS, f"gateway binds {g.host} (loopback)")
    if not g.token:
        msg = (
            f"gateway binds {g.host or 'every address'} without gateway.token: anyone who "
            "reaches the port can use the local API"
        )
        return _check("gateway_bind", FAIL, msg)
    return _check("gateway_bind", PASS, f"gateway binds {g.host} and requires gateway.token")


def check_rate_limit(cfg) -> Check:
    r = cfg.security.rate_limit
    if r.messages_per_minute <= 0:
        msg = "security.rateLimit.messagesPerMinute is 0: senders may flood the bot (and the bill)"
        return _check("rate_limit", WARN, msg)
    msg = f"rate limit {r.messages_per_minute:g} messages/minute, burst {r.burst}"
    return _check("rate_limit", PASS, msg)


def check_audit(
    enabled: bool, path: Path, anchor: Path | None = None, seal: Path | None = None
) -> list[Check]:
    """The trail verifies (chain, numbering, anchor) and is sealed (`nanobot audit init`)."""
    if not enabled:
        msg = "audit trail disabled: security decisions are not recorded"
        return [_check("audit_chain", WARN, msg, "audit_disabled")]
    from nanobot.security.auditverify import verify

    res = verify(path, anchor=anchor, seal=seal)
    if not res.ok:
        where, line_no, reason = res.first_bad
        at = f"{where}:{line_no}" if line_no else where
        return [_check("audit_chain", FAIL, f"audit chain BROKEN at {at}: {reason}")]
    msg = f"audit chain intact ({res.lines_checked} lines in {res.files} files)"
    out = [_check("audit_chain", PASS, msg)]
    if seal is not None:
        if seal.exists():
            out.append(_check("audit_seal", PASS, "audit trail sealed (forward-secure key)"))
        else:
            msg = "audit trail not sealed: a rewritten event could not be told from a real one"
            out.append(_check("audit_seal", WARN, msg))
    return out


def _loose(st: os.stat_result) -> str:
    """FAIL when others have any access, WARN when only the group has, else PASS."""
    return FAIL if st.st_mode & 0o007 else WARN if st.st_mode & 0o070 else PASS


def _worst(statuses) -> str:
    statuses = set(statuses)
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS


def _log_files(logs: Path) -> list[Path]:
    found = {*logs.glob("*.log"), *logs.glob("*.log.*"), *logs.glob("audit.jsonl*")}
    return sorted(found)


def check_logs(logs: Path) -> list[Check]:
    """logs/ 0700 and every log and audit file 0600: FAIL when others can read, WARN for group."""
    if not logs.is_dir():
        return [_check("logs_mode", PASS, f"no logs yet ({logs} does not exist)")]
    st = logs.lstat()
    out = [_check("logs_dir_mode", _loose(st), f"logs dir mode {_mode(st)}", path=logs)]
    bad, links = [], []
    for p in _log_files(logs):
        pst = p.lstat()
        if stat.S_ISLNK(pst.st_mode):
            links.append(p.name)
        elif _loose(pst) != PASS:
            bad.append((p.name, _loose(pst), _mode(pst)))
    if bad:
        listed = ", ".join(f"{name} {mode}" for name, _, mode in bad)
        status = _worst(s for _, s, _ in bad)
        msg = f"log files readable by group/others: {listed}"
        out.append(_check("log_file_modes", status, msg, path=logs))
    else:
        out.append(_check("log_file_modes", PASS, "log files mode 0600"))
    if links:
        msg = f"symlinks among the log files: {', '.join(links)}"
        out.append(_check("log_symlinks", WARN, msg))
    return out


def fix_modes(home: Path, config_path: Path) -> list[str]:
    """chmod what is safe to chmod; symlinks are never followed. Returns what was done."""
    logs = home / "logs"
    targets = [(home, 0o700), (config_path, 0o600), (logs, 0o700)]
    if logs.is_dir() and not logs.is_symlink():
        targets += [(p, 0o600) for p in _log_files(logs)]
    done = []
    for path, mode in targets:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            done.append(f"skipped {path}: a symlink (fix its target by hand)")
            continue
        if stat.S_IMODE(st.st_mode) & 0o077 == 0:
            continue
        try:
            os.chmod(path, mode)
        except OSError as e:
            done.append(f"could not chmod {path}: {e.strerror}")
            continue
        done.append(f"chmod {oct(mode)[2:]} {path} (was {_mode(st)})")
    return done
