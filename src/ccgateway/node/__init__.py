"""What one running node keeps for itself: its clock, its short-lived read caches, its flow control.

- ``clock``: time in epoch milliseconds, injectable (tests move a ``ManualClock``).
- ``recent``: a small time-bounded cache of records read on every request (agents, conferences).
- ``limits``: the node's request rates and download slots (``FlowControl``).
"""
