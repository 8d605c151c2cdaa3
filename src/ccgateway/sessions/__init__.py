"""Signed-in agents: sign-in and sign-out, GUID authentication and rotation, the event poll.

- ``manager``: ``SessionManager``, the rules of a session, over a ``SessionStore`` and ``EventBus``.
- ``pollrule``: the rule of an event poll (pure), which the session stores apply in one step.
- ``signin_events``: the events the CC-Gateway queues after a sign-in.
"""
