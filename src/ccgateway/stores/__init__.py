"""Where state lives: agent directory (SQL), sessions and event queues (process memory for now)."""
