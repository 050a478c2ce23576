"""Background services: cron and heartbeat."""
