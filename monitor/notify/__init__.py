"""Alert delivery: rendering, the outbox dispatcher, and the Slack and console notifiers."""
