"""Security controls: guard, sandbox, path policy, access, rate limits, redaction, audit, doctor."""
