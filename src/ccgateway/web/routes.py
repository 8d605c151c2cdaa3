"""Every URL the gateway answers: start here to follow any request.

- ``ROUTES``: the CC-Gateway agent interfaces, under ``/agentgateway/resource/``;
- ``ADMIN_ROUTES``: our admin API, under ``/ccgateway/admin/v1`` (``admin``);
- ``/metrics``: Prometheus metrics (``metrics_page``).

CC-Gateway URLs live under ``/agentgateway/resource/``. Real clients double the slash after it
(``/agentgateway/resource//onlineagent/101``), so empty segments are ignored rather than redirected.
An unknown path answers HTTP 404 and a known path with the wrong method HTTP 405 (with ``Allow``),
both with the JSON envelope ``000-002``: the original's Tomcat answers 404/405 too, with HTML.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from ccgateway import retcodes
from ccgateway.agents.directory import MAX_WORK_NO, is_work_no
from ccgateway.errors import GatewayError
from ccgateway.web import admin, agentevent, metrics_page, onlineagent, recordfile
from ccgateway.web.state import AGENT_ID, INTERFACE

PREFIX = "/agentgateway/resource/"

AgentHandler = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: AgentHandler
    log_name: str
    head: bool = False  # HEAD answered as GET without a body (downloads; never the event poll)

    def matches(self, segments: list[str]) -> bool:
        parts = self.pattern.split("/")
        return len(parts) == len(segments) and all(
            p == "{agentid}" or p == s for p, s in zip(parts, segments, strict=True)
        )


ROUTES: tuple[Route, ...] = (
    Route("PUT", "onlineagent/{agentid}", onlineagent.login, "login"),
    Route("PUT", "onlineagent/{agentid}/forcelogin", onlineagent.force_login, "forceLogin"),
    Route("DELETE", "onlineagent/{agentid}/logout", onlineagent.logout, "logout"),
    Route("DELETE", "onlineagent/{agentid}/forcelogout", onlineagent.force_logout, "forceLogout"),
    Route("PUT", "onlineagent/{agentid}/updateGuid", onlineagent.update_guid, "updateGuid"),
    Route("GET", "agentevent/{agentid}", agentevent.get_agent_event, "getAgentEvent"),
    Route(
        "GET",
        "recordfile/{agentid}/videofiledownload",
        recordfile.video_file_download,
        "downloadVideoFile",
        head=True,
    ),
    Route(
        "GET",
        "recordfile/{agentid}/videofiledownloadEx",
        recordfile.video_file_download_ex,
        "downloadVideoFileEx",
        head=True,
    ),
    Route("GET", "recordfile/{agentid}", recordfile.record_file, "downloadRecordFile", head=True),
    Route(
        "GET",
        "recordfile/{agentid}/recordfiledownloadEx",
        recordfile.record_file_download_ex,
        "recordfiledownloadEx",
        head=True,
    ),
)


# Our admin API: (method, path under admin.PREFIX, handler), behind admin.admin_auth.
ADMIN_ROUTES: tuple[
    tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]], ...
] = (
    ("POST", "/recordings", admin.register_recording),
    ("DELETE", "/recordings/{record_id}", admin.remove_recording),
    ("POST", "/file-recordings", admin.register_file_recording),
    ("GET", "/conferences", admin.list_conferences),
    ("GET", "/conferences/{conference_id}", admin.show_conference),
    ("DELETE", "/conferences/{conference_id}", admin.remove_conference),
    ("GET", "/audit", admin.query_audit),
    ("POST", "/agents/{work_no}/signout", admin.sign_agent_out),
    ("POST", "/agents/{work_no}/unlock", admin.unlock_agent),
)


def parse_agent_id(segment: str) -> int:
    """The agent id of a path: decimal digits, 101-999999, else 000-002."""
    if segment.isascii() and segment.isdigit() and len(segment) <= len(str(MAX_WORK_NO)):
        agent_id = int(segment)
        if is_work_no(agent_id):
            return agent_id
    raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "agent id")


async def dispatch(request: web.Request) -> web.StreamResponse:
    segments = [s for s in request.match_info["tail"].split("/") if s]
    candidates = [route for route in ROUTES if route.matches(segments)]
    if not candidates:
        raise GatewayError(retcodes.BAD_INTERFACE_PARAMETER, "unknown path", http_status=404)
    route = next((r for r in candidates if r.method == request.method), None)
    if route is None and request.method == "HEAD":
        route = next((r for r in candidates if r.method == "GET" and r.head), None)
    if route is None:
        allowed = {r.method for r in candidates} | _with_head(candidates)
        raise GatewayError(
            retcodes.BAD_INTERFACE_PARAMETER,
            "method not allowed",
            http_status=405,
            headers={"Allow": ", ".join(sorted(allowed))},
        )
    request[INTERFACE] = route.log_name
    agent_segment = segments[route.pattern.split("/").index("{agentid}")]
    agent_id = parse_agent_id(agent_segment)
    request[AGENT_ID] = agent_id
    # The agent's request rate is spent where its GUID (or password) is accepted, by accepted
    # requests only (sessions/manager.py), not here: anyone may name any agent in a URL.
    return await route.handler(request, agent_id)


def _with_head(routes: list[Route]) -> set[str]:
    return {"HEAD"} if any(r.method == "GET" and r.head for r in routes) else set()


def add_routes(app: web.Application) -> None:
    """Every URL: the agent interfaces (one dispatcher over ``ROUTES``), the admin API, metrics."""
    app.router.add_route("*", PREFIX + "{tail:.*}", dispatch)
    for method, path, handler in ADMIN_ROUTES:
        if method == "GET":  # HEAD too, as aiohttp answers it
            app.router.add_get(admin.PREFIX + path, handler)
        else:
            app.router.add_route(method, admin.PREFIX + path, handler)
    app.router.add_route("*", metrics_page.PATH, metrics_page.metrics_page)
