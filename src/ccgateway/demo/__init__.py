"""``serve --demo``: demo agents (``seed``) and playable H.264 demo recordings (``media``)."""
