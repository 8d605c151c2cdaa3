"""ccgateway: a CC-Gateway compatible agent gateway for downloading call recordings."""

__version__ = "0.1.0"
