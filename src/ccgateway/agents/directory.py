"""The agent directory's rules: work numbers, roles, rights, password hashing, and what a session
was granted on.

A session records ``credential_of`` its agent's entry at sign-in. Removing the agent, adding it
again, a new password, an administrator's sign-out (a new session epoch each) and a changed VDN,
role or video right all change it, which ends the session (``sessions.manager``).

Passwords are hashed with Argon2id (memory-hard) at the OWASP-recommended cost (19 MiB, t=2, p=1).
Hashing runs in a pool of two threads of its own, so sign-in bursts neither block the event loop
nor multiply memory. At most ``max_waiting`` sign-ins (SIGNIN_QUEUE_MAX) wait for a thread; one more
is refused at once (000-009, HTTP 503, ``Retry-After``), so a flood of sign-ins cannot make a real
one wait for seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import secrets

import argon2

from ccgateway.node.limits import node_busy
from ccgateway.node.recent import RecentCache
from ccgateway.stores.base import AgentRecord, AgentStore, Role

MIN_WORK_NO = 101
MAX_WORK_NO = 999_999
MAX_PASSWORD_LENGTH = 32
CACHE_S = 2.0

_hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the agent does not exist, so both answers cost the same time.
_UNKNOWN_AGENT_HASH = _hasher.hash("not-a-password-of-anyone")


class AgentError(ValueError):
    """An agent directory operation was refused; the message says why."""


def is_work_no(value: int) -> bool:
    return MIN_WORK_NO <= value <= MAX_WORK_NO


def new_session_epoch() -> str:
    return secrets.token_hex(16)


def credential_of(agent: AgentRecord) -> str:
    """The fingerprint of what a session of ``agent`` is granted on (see the module's doc)."""
    granted = (agent.work_no, agent.session_epoch, agent.vdn, agent.role.value)
    material = "\x00".join(str(part) for part in (*granted, int(agent.may_download_video)))
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


class AgentDirectory:
    def __init__(
        self, store: AgentStore, *, concurrent_hashes: int = 2, max_waiting: int = 64
    ) -> None:
        self.store = store
        self._signing_in_max = concurrent_hashes + max_waiting
        self._signing_in = 0  # sign-ins hashing or waiting for a hashing thread
        # A pool of its own: each thread that ever hashed keeps its 19 MiB arena (glibc), so
        # hashing must not spread over the default executor's threads.
        self._hashing = concurrent.futures.ThreadPoolExecutor(
            concurrent_hashes, thread_name_prefix="argon2"
        )
        self._recent: RecentCache[int, AgentRecord | None] = RecentCache(CACHE_S)

    async def get(self, work_no: int) -> AgentRecord | None:
        """The agent as recently read: rights and removals take effect within ``CACHE_S``."""
        return await self._recent.get(work_no, self.store.get)

    async def get_fresh(self, work_no: int) -> AgentRecord | None:
        """The agent as stored now (and recently read from now on)."""
        self._recent.forget(work_no)
        return await self.get(work_no)

    async def list(self) -> list[AgentRecord]:
        """Every agent, as stored now, by work number."""
        return await self.store.list()

    def close(self) -> None:
        self._hashing.shutdown(wait=False, cancel_futures=True)

    async def add(
        self,
        work_no: int,
        password: str,
        *,
        name: str = "",
        vdn: int = 1,
        role: Role = Role.AGENT,
        may_download_video: bool = True,
    ) -> AgentRecord:
        if not is_work_no(work_no):
            raise AgentError(f"work number {work_no} is outside {MIN_WORK_NO}-{MAX_WORK_NO}")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise AgentError(f"password is longer than {MAX_PASSWORD_LENGTH} characters")
        if vdn < 1:
            raise AgentError("vdn must be a positive integer")
        agent = AgentRecord(
            work_no=work_no,
            name=name,
            vdn=vdn,
            role=role,
            may_download_video=may_download_video,
            password_hash=await self._hash(password),
            session_epoch=new_session_epoch(),
        )
        if not await self.store.add(agent):
            raise AgentError(f"agent {work_no} already exists")
        return agent

    async def set_password(self, work_no: int, password: str) -> None:
        if len(password) > MAX_PASSWORD_LENGTH:
            raise AgentError(f"password is longer than {MAX_PASSWORD_LENGTH} characters")
        password_hash = await self._hash(password)
        if not await self.store.set_password_hash(
            work_no, password_hash, session_epoch=new_session_epoch()
        ):
            raise AgentError(f"no agent {work_no}")
        self._recent.forget(work_no)

    async def end_sessions(self, work_no: int) -> None:
        """A new session epoch: the agent's session ends on every node within ``CACHE_S``."""
        if not await self.store.set_session_epoch(work_no, new_session_epoch()):
            raise AgentError(f"no agent {work_no}")
        self._recent.forget(work_no)

    async def remove(self, work_no: int) -> None:
        if not await self.store.remove(work_no):
            raise AgentError(f"no agent {work_no}")
        self._recent.forget(work_no)

    async def authenticate(self, work_no: int, password: str) -> AgentRecord | None:
        """The agent if ``password`` is theirs; None for a wrong password or an unknown agent.

        Refused (000-009) when ``max_waiting`` sign-ins already wait for a hashing thread.
        """
        if self._signing_in >= self._signing_in_max:
            raise node_busy(1.0)
        self._signing_in += 1
        try:
            return await self._authenticate(work_no, password)
        finally:
            self._signing_in -= 1

    async def _authenticate(self, work_no: int, password: str) -> AgentRecord | None:
        agent = await self.store.get(work_no)
        stored = agent.password_hash if agent is not None else _UNKNOWN_AGENT_HASH
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._hashing, _verify, stored, password)
        if agent is None or not ok:
            return None
        if _hasher.check_needs_rehash(agent.password_hash):
            new_hash = await self._hash(password)
            await self.store.set_password_hash(work_no, new_hash)
            agent = dataclasses.replace(agent, password_hash=new_hash)
        self._recent.forget(work_no)  # what this sign-in is granted on, for the next reads
        return agent

    async def _hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._hashing, hash_password, password)
