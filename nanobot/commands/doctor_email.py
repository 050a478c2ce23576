"""`nanobot doctor`, the e-mail channel (only when channels.email is enabled): consent, TLS on
both legs, allowFrom entries that can match, sender authentication, and mailbox passwords
written literally in the config. An empty allowFrom is the shared allow_from.email check."""

from __future__ import annotations

from nanobot.commands.doctor import FAIL, PASS, WARN, Check

_K = "channels.email."
_PASSWORDS = ("imapPassword", "smtpPassword")


def check_email(cfg, info) -> list[Check]:
    """The e-mail checks in the order a user would fix them; [] when the channel is off."""
    c = cfg.channels.email
    if not c.enabled:
        return []
    return [
        _consent(c),
        _tls(c),
        *_allow_entries(c),
        _sender_auth(c),
        _literal_passwords(info.literal_secrets),
    ]


def _consent(c) -> Check:
    if c.consent_granted:
        return Check("email_consent", PASS, "e-mail: consentGranted (the mailbox is read)")
    return Check(
        "email_consent",
        WARN,
        f"{_K}enabled is true but consentGranted is not: the channel never touches the mailbox",
        f"set {_K}consentGranted to true once nanobot may read and answer that mailbox",
    )


def _legs(c) -> tuple[str, str]:
    imap = "IMAPS" if c.imap_use_ssl else "IMAP with STARTTLS"
    if not c.auto_reply_enabled:
        smtp = "SMTP unused (autoReplyEnabled false)"
    elif c.smtp_use_ssl:
        smtp = "SMTPS"
    elif c.smtp_use_tls:
        smtp = "SMTP with STARTTLS"
    else:
        smtp = "SMTP in PLAIN TEXT"
    return imap, smtp


def _tls(c) -> Check:
    imap, smtp = _legs(c)
    plain_smtp = c.auto_reply_enabled and not (c.smtp_use_ssl or c.smtp_use_tls)
    if plain_smtp and not c.allow_insecure:
        return Check(
            "email_tls",
            FAIL,
            "e-mail: smtpUseTls and smtpUseSsl are both false: the channel refuses to start",
            f"set {_K}smtpUseTls to true (port 587) or smtpUseSsl to true (port 465)",
        )
    if c.allow_insecure:
        risks = []
        if not c.imap_use_ssl:
            risks.append("IMAP falls back to plain text when the server offers no STARTTLS")
        if plain_smtp:
            risks.append("SMTP sends the password and every reply in plain text")
        what = "; ".join(risks) or "unused now, but it lets a later change go unencrypted"
        return Check(
            "email_tls",
            WARN,
            f"e-mail: {_K}allowInsecure is true: {what} ({imap}; {smtp})",
            f"set {_K}allowInsecure to false, imapUseSsl to true (port 993) and smtpUseTls "
            "to true (port 587)",
        )
    return Check(
        "email_tls", PASS, f"e-mail: TLS on both legs, certificates verified ({imap}; {smtp})"
    )


def _allow_entries(c) -> list[Check]:
    from nanobot.security.access import is_allowed

    entries = [str(e).strip() for e in c.allow_from]
    bad = [e for e in entries if e and e != "*" and not is_allowed("email", e, [e])]
    if not bad:
        return []  # empty, "*" and the count: the shared allow_from.email check
    shown = ", ".join(repr(e[:60]) for e in bad[:5])
    return [
        Check(
            "email_allow_entries",
            WARN,
            f"{_K}allowFrom entries that are not one bare address never match: {shown}",
            'write each allowed sender as one address, e.g. "you@example.com" (domains, '
            "names and <brackets> are not matched)",
        )
    ]


def _sender_auth(c) -> Check:
    from nanobot.channels.email.settings import AUTHSERV_HINT

    if not (c.verify_dkim or c.verify_spf):
        return Check(
            "email_sender_auth",
            WARN,
            f"e-mail: sender authentication is off ({_K}verifyDkim and verifySpf are false): "
            "anyone who writes a From address listed in allowFrom is answered",
            f"set {_K}verifyDkim and verifySpf to true and list your server in "
            f"trustedAuthservIds — {AUTHSERV_HINT.split('; or')[0]}",
        )
    ids = [t for t in c.trusted_authserv_ids if str(t).strip()]
    if not ids:
        return Check(
            "email_sender_auth",
            FAIL,
            f"e-mail: {_K}trustedAuthservIds is empty: no sender can be authenticated, so the "
            "channel refuses to start",
            f"set {_K}trustedAuthservIds — {AUTHSERV_HINT}",
        )
    kinds = " or ".join(k for k, on in (("DKIM", c.verify_dkim), ("SPF", c.verify_spf)) if on)
    return Check(
        "email_sender_auth",
        PASS,
        f"e-mail: senders must pass {kinds} as judged by {', '.join(ids[:3])}",
    )


def _literal_passwords(literal_paths: list[str]) -> Check:
    keys = [p for p in literal_paths if p.startswith(_K) and p[len(_K) :] in _PASSWORDS]
    if not keys:
        return Check("email_password", PASS, "e-mail: no mailbox password written in the config")
    return Check(
        "email_password",
        WARN,
        f"e-mail: {', '.join(keys)} written literally in the config (whoever reads it can "
        "read and send the bot's mail)",
        'use a reference instead: "${NANOBOT_IMAP_PASSWORD}", "file:/path/to/secret" or '
        '"keyring:nanobot/imap"',
    )
