"""Background services of the gateway: scheduled jobs (cron) and the heartbeat."""
