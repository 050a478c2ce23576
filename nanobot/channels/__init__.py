"""Chat channels (Telegram today); access control for all of them lives in base.py."""
