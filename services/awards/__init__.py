"""Awards service: nominations, quotas, decisions."""
