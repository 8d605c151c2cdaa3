"""The agent directory: work numbers, roles, rights, and password hashing (``directory``)."""
