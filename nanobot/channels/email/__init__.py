"""The e-mail channel: IMAP intake (IDLE or polling), SMTP replies, sender authentication."""
