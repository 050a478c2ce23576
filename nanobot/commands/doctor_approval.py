"""Doctor lines for issue 16's controls: the exec network mode and approvals in the chat."""

from __future__ import annotations

from nanobot.commands.doctor import FAIL, PASS, WARN, Check


def check_exec_network(cfg, sandbox_status: tuple[bool, str] | None = None) -> Check:
    """tools.exec.network: on, off, or the allowlist (which only bubblewrap can enforce)."""
    ex = cfg.tools.exec
    if ex.network is True:
        return Check("exec_network", PASS, "exec network: on (commands reach any host)")
    if ex.network is False:
        return Check("exec_network", PASS, "exec network: off")
    from nanobot.security.egress import parse_domains

    try:
        domains = parse_domains(ex.allowed_domains)
    except ValueError as e:
        return Check("exec_network", FAIL, f"exec network allowlist: {e}", "fix the entry")
    if ex.sandbox == "none" or not _bwrap_ok(sandbox_status):
        return Check(
            "exec_network",
            FAIL,
            'tools.exec.network is "allowlist" but the bubblewrap sandbox is not in use: '
            "exec refuses every command",
            'install bubblewrap and set tools.exec.sandbox to "auto" or "bwrap"',
        )
    if not domains:
        return Check(
            "exec_network",
            WARN,
            "exec network allowlist is empty: commands reach no host",
            'list domains in tools.exec.allowedDomains (e.g. ["pypi.org", "*.pythonhosted.org"])'
            " or set tools.exec.network to false",
        )
    shown = ", ".join(domains[:8]) + (f" (+{len(domains) - 8} more)" if len(domains) > 8 else "")
    return Check(
        "exec_network", PASS, f"exec network: allowlist through the egress proxy ({shown})"
    )


def _bwrap_ok(status: tuple[bool, str] | None) -> bool:
    if status is None:
        from nanobot.security.sandbox import bwrap_status

        status = bwrap_status()
    return status[0]


def check_approval(cfg) -> Check:
    """tools.approval: off, or who answers and how long a request waits."""
    ap = cfg.tools.approval
    if ap.mode == "off":
        return Check(
            "approval",
            PASS,
            "approvals: off (risky tool calls run without asking; tools.approval.mode)",
        )
    who = ", ".join(f"{ch}: {len(ids)}" for ch, ids in sorted(ap.approvers.items()) if ids)
    who = f"approvers {who}" if who else "approvers = each channel's allowFrom"
    other = "; another approver must answer" if ap.require_other_approver else ""
    return Check(
        "approval",
        PASS,
        f"approvals: {ap.mode}, {who}, requests expire after {ap.timeout_seconds} s{other}",
    )
