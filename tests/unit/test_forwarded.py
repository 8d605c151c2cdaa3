"""Which address counts as the client's behind a reverse proxy (``web/forwarded.py``)."""

from __future__ import annotations

import ipaddress

import pytest

from ccgateway.config import IPNetwork
from ccgateway.web.forwarded import client_address

NGINX = [ipaddress.ip_network("127.0.0.1/32")]
PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # nginx appends the address it saw: that is the client
        ("127.0.0.1", ["203.0.113.7"], NGINX, "203.0.113.7"),
        # a client's own X-Forwarded-For is left of nginx's entry: ignored
        ("127.0.0.1", ["198.51.100.1, 203.0.113.7"], NGINX, "203.0.113.7"),
        ("127.0.0.1", ["198.51.100.1", "203.0.113.7"], NGINX, "203.0.113.7"),
        # through two trusted proxies: the nearest untrusted hop
        ("10.0.0.2", ["203.0.113.7, 10.0.0.9"], PROXIES, "203.0.113.7"),
        ("fd00::2", ["2001:db8::5, fd00::9"], PROXIES, "2001:db8::5"),
        # every hop trusted: the farthest one
        ("10.0.0.2", ["10.0.0.3, 10.0.0.9"], PROXIES, "10.0.0.3"),
        # a peer that is not a trusted proxy: its header means nothing
        ("203.0.113.9", ["198.51.100.1"], NGINX, "203.0.113.9"),
        ("127.0.0.1", ["198.51.100.1"], [], "127.0.0.1"),
        # no header, an empty one, or junk where nginx's entry should be: the peer
        ("127.0.0.1", [], NGINX, "127.0.0.1"),
        ("127.0.0.1", [""], NGINX, "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.7, not-an-address"], NGINX, "127.0.0.1"),
        # junk further left stops the walk at the last good untrusted hop
        ("10.0.0.2", ["junk, 10.0.0.3"], PROXIES, "10.0.0.3"),
    ],
)
def test_client_address(
    peer: str, forwarded: list[str], trusted: list[IPNetwork], expected: str
) -> None:
    assert client_address(peer, forwarded, trusted) == expected
