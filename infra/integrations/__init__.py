"""Integrations: destinations (webhooks, Slack, PagerDuty, email) that receive incident
events, each a follower of the event store with its own position."""
