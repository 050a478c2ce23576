"""Chat channels: Telegram, e-mail, WhatsApp; access control lives in base.py."""
