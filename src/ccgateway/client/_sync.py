"""A blocking wrapper over :class:`AgentClient`, for scripts that are not async.

It is a shim, not a second client: an event loop runs in a daemon thread (the background poll
needs one between calls), and each method hands the async method's coroutine to it and waits.
Progress callbacks run on that thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from ccgateway.client._agent import AgentClient, ManyProgress
from ccgateway.client._download import DownloadResult, Progress
from ccgateway.client._events import AgentEvent
from ccgateway.client._targets import Target

T = TypeVar("T")


class SyncAgentClient:
    """``with SyncAgentClient(server, 101, password, ca=...) as agent: agent.download(...)``.

    Takes the arguments of :class:`AgentClient`.
    """

    def __init__(self, server: str, agent_id: int, password: str, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"ccgw-client-{agent_id}", daemon=True
        )
        self._thread.start()
        try:
            self._client = self._run(_make(server, agent_id, password, options))
        except BaseException:
            self._stop()
            raise

    def __repr__(self) -> str:
        return f"<SyncAgentClient {self._client.agent_id} at {self._client.server}>"

    def _run(self, coro: Coroutine[Any, Any, T], wait: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(wait)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"nothing within {wait} s") from None

    def _stop(self) -> None:
        if self._loop.is_running():
            self._run(_shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncAgentClient:
        self.sign_in()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def guid(self) -> str | None:
        return self._client.guid

    @property
    def signed_in(self) -> bool:
        return self._client.signed_in

    def sign_in(self) -> Mapping[str, Any]:
        return self._run(self._client.sign_in())

    def close(self) -> None:
        """Sign out, close the connections and stop the loop's thread."""
        if not self._loop.is_closed():
            try:
                self._run(self._client.close())
            finally:
                self._stop()

    def events(self, wait: float | None = None) -> Iterator[AgentEvent]:
        """Events as they come; TimeoutError when none came within ``wait`` seconds."""
        while (event := self._run(self._client.next_event(), wait)) is not None:
            yield event

    def download(
        self,
        target: Target,
        dest: str | os.PathLike[str],
        *,
        resume: bool = False,
        progress: Progress | None = None,
        require_digest: bool = True,
    ) -> DownloadResult:
        return self._run(
            self._client.download(
                target, dest, resume=resume, progress=progress, require_digest=require_digest
            )
        )

    def download_many(
        self,
        jobs: Iterable[tuple[Target, str | os.PathLike[str]]],
        *,
        concurrency: int = 4,
        resume: bool = False,
        progress: ManyProgress | None = None,
        require_digest: bool = True,
    ) -> list[DownloadResult | Exception]:
        return self._run(
            self._client.download_many(
                list(jobs),
                concurrency=concurrency,
                resume=resume,
                progress=progress,
                require_digest=require_digest,
            )
        )


async def _make(server: str, agent_id: int, password: str, options: dict[str, Any]) -> AgentClient:
    return AgentClient(server, agent_id, password, **options)


async def _shutdown() -> None:
    """Cancel what is left on the loop, as asyncio.run does.

    No wait for TLS connections to close here: :meth:`AgentClient.close` returns once they are.
    """
    loop = asyncio.get_running_loop()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others)
    await loop.shutdown_asyncgens()
