"""The client's address behind a reverse proxy: X-Forwarded-For, from trusted proxies only.

Behind nginx every request arrives from nginx. With ``TRUSTED_PROXIES`` naming it, a request
whose peer is one of them gets, as ``request.remote``, the nearest address in its
X-Forwarded-For that is not a trusted proxy (read from the right: nginx appends the address it
saw, and anything further left came from the client, who may write what it likes). The audit,
the access log and the per-agent rate limits then see the agent's address. A request from any
other peer keeps its peer address, whatever headers it sends; so does one whose header holds
something that is not an address. Connection limits stay with the peer (nginx): they count
connections, which are nginx's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Handler

from ccgateway.config import IPNetwork
from ccgateway.web.state import gateway


def client_address(peer: str, forwarded: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """The client's address: ``peer``, or what trusted proxies say in X-Forwarded-For."""
    if not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded for hop in header.split(",")]
    address = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address
        address = hop
        if not _trusted(hop, trusted):
            return hop
    return address


def _trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


@web.middleware
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    trusted = gateway(request).settings.trusted_proxies
    if not trusted or request.remote is None:
        return await handler(request)
    forwarded = request.headers.getall("X-Forwarded-For", [])
    remote = client_address(request.remote, forwarded, trusted)
    return await handler(request if remote == request.remote else request.clone(remote=remote))
