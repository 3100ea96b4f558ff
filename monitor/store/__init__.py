"""State and outbox persistence behind one small protocol (SQLite by default, Redis for scale-out)."""
