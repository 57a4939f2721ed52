"""Plans service: the org registry, plans, their phases, cascade and deployment."""
