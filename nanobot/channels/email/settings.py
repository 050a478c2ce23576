"""Start-up checks of channels.email: a config that cannot work stops the start naming the key."""

from __future__ import annotations

from nanobot.channels.email.parse import sender_address
from nanobot.errors import ConfigError

_K = "channels.email."
AUTHSERV_HINT = (
    "open a mail you received in that mailbox, view its source, and copy the first word after "
    '"Authentication-Results:" (e.g. mx.google.com); or set verifyDkim and verifySpf to false '
    "if your server adds no such header"
)


def check_config(cfg) -> None:
    """Raise ConfigError naming the first key that keeps the channel from working."""
    missing = [
        ("imapHost", cfg.imap_host, "your IMAP server, e.g. imap.example.com"),
        ("imapUsername", cfg.imap_username, "the mailbox's login name"),
        ("imapPassword", cfg.imap_password, 'the mailbox password (or "${NAME}" / "file:PATH")'),
        ("fromAddress", cfg.from_address, "the bot's own address, e.g. bot@example.com"),
    ]
    if cfg.auto_reply_enabled:
        missing.append(("smtpHost", cfg.smtp_host, "your SMTP server, e.g. smtp.example.com"))
    for key, value, what in missing:
        if not str(value).strip():
            raise ConfigError(f"{_K}{key} is empty — set it to {what}")
    if sender_address(cfg.from_address) != cfg.from_address.lower():
        raise ConfigError(f"{_K}fromAddress must be one bare address such as bot@example.com")
    if (
        cfg.auto_reply_enabled
        and not (cfg.smtp_use_tls or cfg.smtp_use_ssl)
        and not cfg.allow_insecure
    ):
        raise ConfigError(
            f"{_K}smtpUseTls and smtpUseSsl are both false, so the password would travel in "
            f"clear text — set smtpUseTls to true (port 587), or {_K}allowInsecure to true"
        )
    if (cfg.verify_dkim or cfg.verify_spf) and not [t for t in cfg.trusted_authserv_ids if t]:
        raise ConfigError(
            f"{_K}trustedAuthservIds is empty, so no sender could be authenticated — "
            + AUTHSERV_HINT
        )
    if not cfg.imap_mailbox.strip():
        raise ConfigError(f"{_K}imapMailbox is empty — set it to INBOX or another folder")


def own_addresses(cfg) -> set[str]:
    """Our own addresses (mail from them is never answered)."""
    out = {cfg.from_address.lower()}
    user = sender_address(cfg.imap_username)
    if user:
        out.add(user)
    return out


def summary(cfg) -> list[str]:
    """What `nanobot status` shows of channels.email: servers, TLS, mailbox, consent, intake
    mode and sender authentication; never a password."""
    imap_tls = "IMAPS" if cfg.imap_use_ssl else "STARTTLS"
    if not cfg.imap_use_ssl and cfg.allow_insecure:
        imap_tls += ", plain text allowed"
    lines = [
        f"IMAP {cfg.imap_host or '(no imapHost)'}:{cfg.imap_port} ({imap_tls}), "
        f"mailbox {cfg.imap_mailbox}, as {cfg.imap_username or '(no imapUsername)'}"
    ]
    if not cfg.auto_reply_enabled:
        lines.append("SMTP off (autoReplyEnabled false: replies are recorded, not sent)")
    else:
        smtp_tls = "SMTPS" if cfg.smtp_use_ssl else "STARTTLS" if cfg.smtp_use_tls else "PLAIN TEXT"
        lines.append(
            f"SMTP {cfg.smtp_host or '(no smtpHost)'}:{cfg.smtp_port} ({smtp_tls}), "
            f"from {cfg.from_address or '(no fromAddress)'}"
        )
    if cfg.consent_granted:
        intake = f"IDLE where offered, else polling every {cfg.poll_interval_seconds} s"
        lines.append(f"consent granted; {intake}; markSeen {'on' if cfg.mark_seen else 'off'}")
    else:
        lines.append("consent NOT granted (mailbox untouched): set channels.email.consentGranted")
    if cfg.verify_dkim or cfg.verify_spf:
        kinds = " or ".join(
            k for k, on in (("DKIM", cfg.verify_dkim), ("SPF", cfg.verify_spf)) if on
        )
        ids = ", ".join(cfg.trusted_authserv_ids) or "nobody (trustedAuthservIds is empty)"
        lines.append(f"senders must pass {kinds} as judged by {ids}")
    else:
        lines.append("sender authentication OFF (verifyDkim and verifySpf are false)")
    return lines
