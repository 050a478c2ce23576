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
