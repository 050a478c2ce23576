"""Chat channels: Telegram, WhatsApp and e-mail; the terminal and the local API are in request.py.

CHANNELS is the channel table (kept here, free of imports, so code that only needs the names —
the message and cron tools' target checks — does not load the channels themselves).
"""

# config section under `channels` → "module:Class"; a section missing here cannot be enabled.
CHANNELS = {
    "telegram": "nanobot.channels.telegram.channel:TelegramChannel",
    "whatsapp": "nanobot.channels.whatsapp:WhatsAppChannel",
    "email": "nanobot.channels.email.channel:EmailChannel",
}
