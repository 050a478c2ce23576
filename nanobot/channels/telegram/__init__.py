"""The Telegram channel: Bot API transport, update parsing, HTML formatting, attachments."""
