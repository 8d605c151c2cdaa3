"""Signed-in agents: sign-in and sign-out, GUID authentication and rotation, the event poll.

- ``manager``: ``SessionManager``, the rules of a session, over a ``SessionStore`` and ``EventBus``.
- ``signin_events``: the events the CC-Gateway queues after a sign-in.
"""
