"""The CC-Gateway wire format and HTTP header rules, pure and shared by ``web`` and ``client``."""
