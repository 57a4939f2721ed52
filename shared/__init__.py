"""Event contracts and plumbing shared by every thidua service."""
