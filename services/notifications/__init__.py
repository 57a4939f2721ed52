"""Notifications service: plans, reminders and decisions reach people."""
