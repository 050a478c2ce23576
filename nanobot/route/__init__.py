"""The one message route: admission → durable inbox → dispatcher → turn → durable reply → deliver."""
