"""The agent's side of a gateway session: sign in, stay signed in, events, downloads.

``async with AgentClient(server, 101, password, ca="cert.pem") as agent:`` signs in (forcing the
sign-in over an existing session on ``100-002`` when ``force`` is set), starts the background
event poll that keeps the agent signed in and receives the rotating GUID, and signs out on exit.

The poll runs whether or not :meth:`AgentClient.events` is read; events wait in a bounded
buffer that drops the oldest (with a warning) when full. The poll stops on ``100-006`` (or three
``000-003`` in a row): the session is gone, and the events iterator raises :class:`SignedOutError`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ccgateway.client._connection import Connection, Reply
from ccgateway.client._download import DownloadResult, Progress, RetryPolicy, download
from ccgateway.client._errors import (
    CertificateError,
    ClientError,
    ProtocolError,
    SignedOutError,
    TransportError,
)
from ccgateway.client._events import AgentEvent, EventBuffer
from ccgateway.client._targets import Target

log = logging.getLogger("ccgateway.client")

ALREADY_SIGNED_IN = "100-002"
NOT_SIGNED_IN = "100-006"
STALE_GUID = "000-003"
_STALE_POLLS = 3
_MAX_POLL_BACKOFF = 5.0
_LOUD_POLL_FAILURES = 3

ManyProgress = Callable[[Target, int, int | None], None]


class AgentClient:
    """An async client for one agent on one gateway (see the module notes)."""

    def __init__(
        self,
        server: str,
        agent_id: int,
        password: str,
        *,
        force: bool = False,
        phone_number: str | None = None,
        ca: str | os.PathLike[str] | None = None,
        fingerprint: str | None = None,
        poll_pause: float = 0.2,
        poll_timeout: float = 60.0,
        event_buffer: int = 1000,
        retry: RetryPolicy | None = None,
        sign_in_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self._password = password
        self._force = force
        self._phone = phone_number or str(agent_id)
        self._fields = dict(sign_in_fields or {})
        self._conn = Connection(server, ca=ca, fingerprint=fingerprint)
        self._poll_pause = poll_pause
        self._poll_timeout = poll_timeout
        self._buffer_size = event_buffer
        self._buffer = EventBuffer(event_buffer)
        self._retry = retry or RetryPolicy()
        self._poller: asyncio.Task[None] | None = None
        self._signed_in = self._closing = False
        self.sign_in_result: Mapping[str, Any] = {}

    def __repr__(self) -> str:
        return f"<AgentClient {self.agent_id} at {self.server}>"

    @property
    def server(self) -> str:
        return str(self._conn.base)

    @property
    def guid(self) -> str | None:
        """The GUID requests are sent with now (it rotates under AUTHMODE=2)."""
        return self._conn.guid

    @property
    def signed_in(self) -> bool:
        return self._signed_in

    async def __aenter__(self) -> AgentClient:
        await self.sign_in()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- session --------------------------------------------------------------------------------

    async def sign_in(self) -> Mapping[str, Any]:
        """Sign in (force sign-in on 100-002 when asked) and start the keep-alive poll."""
        if self._signed_in:
            raise ClientError(f"agent {self.agent_id} is signed in already by this client")
        self._conn.open()
        self._conn.guid = None
        self._closing = False
        body = {"password": self._password, "phonenum": self._phone, **self._fields}
        path, interface = f"onlineagent/{self.agent_id}", "login"
        try:
            reply = await self._conn.call("PUT", path, interface, json_body=body)
            if reply.retcode == ALREADY_SIGNED_IN and self._force:
                log.info("agent %s already signed in: forcing the sign-in", self.agent_id)
                path, interface = path + "/forcelogin", "forcelogin"
                reply = await self._conn.call("PUT", path, interface, json_body=body)
            reply.raise_for_retcode(interface)
            if self._conn.guid is None:
                raise ProtocolError("the sign-in answer carries no Set-GUID")
        except BaseException:
            await self._conn.close()
            raise
        result = reply.body.get("result")
        self.sign_in_result = result if isinstance(result, dict) else {}
        self._signed_in = True
        if self._poller is None and self._buffer.ended:  # signed in again after a close
            self._buffer = EventBuffer(self._buffer_size)
        self._poller = asyncio.create_task(self._poll_loop(), name=f"ccgw-poll-{self.agent_id}")
        return self.sign_in_result

    async def close(self) -> None:
        """Sign out (a failure is logged, not raised), close the connections, stop polling.

        The connections close before the poll is cancelled: closing aborts the poll in flight
        at once, where a cancelled TLS request would linger in a graceful shutdown. A poll that
        was connecting still ends in one (its TLS connection is closed gracefully, untracked by
        aiohttp), so once the poll has stopped, this waits until every connection is closed:
        none is left open when the caller's event loop ends.
        """
        self._closing = True
        if self._signed_in:
            self._signed_in = False
            try:
                reply = await self._conn.call(
                    "DELETE", f"onlineagent/{self.agent_id}/logout", "logout", time_limit=10
                )
                if not reply.ok:  # the session ended already (taken over, timed out)
                    log.info("sign-out answered %s %s", reply.retcode, reply.message)
            except ClientError as exc:
                log.warning("sign-out failed: %s", exc)
        self._buffer.end()
        await self._conn.close_session()
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.wait([self._poller])
            self._poller = None
        await self._conn.wait_closed()

    # -- events ---------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[AgentEvent]:
        """The agent's events as they come; ends on close, raises SignedOutError if signed out."""
        while (event := await self._buffer.get()) is not None:
            yield event

    async def next_event(self) -> AgentEvent | None:
        """The next event (waiting for it), None once the client is closed."""
        return await self._buffer.get()

    async def _poll_loop(self) -> None:
        try:
            await self._poll_forever()
        except ClientError as exc:
            if not self._closing:
                self._signed_in = not isinstance(exc, SignedOutError)
                self._buffer.end(exc)
        except Exception as exc:  # a bug must not vanish inside a background task
            log.exception("event poll stopped")
            self._buffer.end(ClientError(f"event poll stopped: {exc}"))

    async def _poll_forever(self) -> None:
        failures = stale = 0
        path = f"agentevent/{self.agent_id}"
        while True:
            try:
                reply = await self._conn.call(
                    "GET", path, "agentevent", time_limit=self._poll_timeout
                )
            except CertificateError:
                raise
            except (TransportError, ProtocolError) as exc:
                if self._closing:
                    return
                failures += 1
                delay = min(_MAX_POLL_BACKOFF, 0.25 * 2.0**failures)
                level = logging.WARNING if failures >= _LOUD_POLL_FAILURES else logging.INFO
                log.log(level, "event poll failed (%s); again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            stale = stale + 1 if reply.retcode == STALE_GUID else 0
            self._check_poll(reply, stale)
            event = reply.body.get("event") if reply.ok else None
            if event:
                try:
                    self._buffer.put(AgentEvent.from_wire(event))
                except ProtocolError as exc:
                    log.warning("skipped an event: %s", exc)
                continue  # re-poll at once after an event, as the JavaScript SDK does
            await asyncio.sleep(self._poll_pause)

    def _check_poll(self, reply: Reply, stale: int) -> None:
        if reply.retcode == NOT_SIGNED_IN or stale >= _STALE_POLLS:
            raise SignedOutError(reply.retcode, reply.message, "agentevent")
        if not reply.ok and reply.retcode != STALE_GUID:
            log.warning("event poll refused: %s %s", reply.retcode, reply.message)

    # -- downloads ------------------------------------------------------------------------------

    async def download(
        self,
        target: Target,
        dest: str | os.PathLike[str],
        *,
        resume: bool = False,
        progress: Progress | None = None,
        require_digest: bool = True,
    ) -> DownloadResult:
        """Download ``target`` into the file ``dest`` (or into ``dest`` if it is a directory).

        ``resume`` continues a ``.part`` left by an earlier run; within one call every
        interruption is resumed anyway. The file appears only once verified.
        """
        return await download(
            self._conn,
            self.agent_id,
            target,
            Path(dest),
            resume=resume,
            retry=self._retry,
            progress=progress,
            require_digest=require_digest,
        )

    async def download_many(
        self,
        jobs: Iterable[tuple[Target, str | os.PathLike[str]]],
        *,
        concurrency: int = 4,
        resume: bool = False,
        progress: ManyProgress | None = None,
        require_digest: bool = True,
    ) -> list[DownloadResult | Exception]:
        """Download several targets, at most ``concurrency`` at once; one result or error each."""
        if concurrency < 1:
            raise ValueError("concurrency is at least 1")
        limit = asyncio.Semaphore(concurrency)

        async def one(target: Target, dest: str | os.PathLike[str]) -> DownloadResult | Exception:
            report = None if progress is None else _bind(progress, target)
            async with limit:
                try:
                    return await self.download(
                        target, dest, resume=resume, progress=report, require_digest=require_digest
                    )
                except Exception as exc:  # returned, so one failure does not stop the others
                    return exc

        return list(await asyncio.gather(*(one(t, d) for t, d in jobs)))


def _bind(progress: ManyProgress, target: Target) -> Progress:
    return lambda done, total: progress(target, done, total)
