"""The scripts' lane (``ccgateway.stores.redis.lane.ScriptLane``) against a real Redis.

Redis runs at ``TEST_REDIS_URL`` (see conftest): without it these cases are skipped, unless
``CI=true``, where they fail. A few cases need a server that misbehaves on cue: a local fake.
Every script gets its own text (a uuid in a Lua comment), so Redis has never seen it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio
import redis.exceptions

from ccgateway.stores.redis import open_redis
from ccgateway.stores.redis.lane import Arg, RespError, Script, ScriptLane
from tests.contract.conftest import REDIS_URL, redis_client

ECHO = "return ARGV[1]"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def fresh(body: str) -> Script:
    """``body`` as a script Redis has never seen."""
    return Script(f"-- {uuid.uuid4().hex}\n{body}")


async def call(
    lane: ScriptLane, script: Script, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()
) -> Any:
    """Run ``script`` and wait (a bounded time: a hang fails) for its reply."""
    return await asyncio.wait_for(await lane.run(script, keys, args), 5)


def lane_address(lane: ScriptLane) -> str:
    """The lane's connection as Redis' CLIENT LIST names it (``ip:port``)."""
    protocol = lane._protocol
    assert protocol is not None and protocol._transport is not None
    host, port = protocol._transport.get_extra_info("sockname")[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def last_command(client: redis.asyncio.Redis, lane: ScriptLane) -> str:
    """The last command Redis ran for the lane's connection."""
    address = lane_address(lane)
    (entry,) = [entry for entry in await client.client_list() if entry["addr"] == address]
    return str(entry["cmd"])


def url_with(*, db: int | None = None, password: str | None = None) -> str:
    """``REDIS_URL`` with another database or password."""
    parts = urlsplit(REDIS_URL)
    if parts.scheme != "redis":
        pytest.skip(f"needs a redis:// TEST_REDIS_URL, not {parts.scheme}://")
    netloc = parts.netloc.rpartition("@")[2]
    if password is not None:
        netloc = f"{parts.username or ''}:{password}@{netloc}"
    elif "@" in parts.netloc:
        netloc = parts.netloc
    return urlunsplit(
        parts._replace(netloc=netloc, path=f"/{db}" if db is not None else parts.path)
    )


def db_of(client: redis.asyncio.Redis) -> int:
    return int(client.connection_pool.connection_kwargs.get("db") or 0)


@contextlib.asynccontextmanager
async def fake_redis(handle: Handler) -> AsyncIterator[int]:
    """A local server whose connections ``handle`` serves; yields its port."""
    tasks: set[asyncio.Task[Any]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.append(writer)
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for writer in writers:
            writer.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_until(reader: asyncio.StreamReader, marker: bytes, count: int = 1) -> bytes:
    data = b""
    while data.count(marker) < count:
        chunk = await reader.read(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
async def client(prefix: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A redis-py client for ``REDIS_URL``; deletes the test's keys afterwards."""
    async with redis_client(prefix) as client:
        yield client


@pytest.fixture
async def lane(client: redis.asyncio.Redis) -> AsyncIterator[ScriptLane]:
    lane = ScriptLane.for_client(client)
    assert lane is not None
    try:
        yield lane
    finally:
        await lane.aclose()


# -- running scripts ----------------------------------------------------------------------------


async def test_runs_a_script_and_returns_its_reply(lane: ScriptLane) -> None:
    script = Script("return {KEYS[1], ARGV[1], tonumber(ARGV[2]), false}")
    assert await call(lane, script, ["k"], ["é", 7]) == [b"k", "é".encode(), 7, None]


async def test_the_script_sees_the_database_of_the_url(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    db = 4 if db_of(client) == 3 else 3
    other = await open_redis(url_with(db=db))
    lane = ScriptLane.for_client(other)
    assert lane is not None
    key = f"{prefix}in-db"
    try:
        setter = Script("return redis.call('SET', KEYS[1], ARGV[1])")
        assert await call(lane, setter, [key], ["here"]) == "OK"
        assert await other.get(key) == b"here"
        assert await client.get(key) is None
    finally:
        await other.delete(key)
        await lane.aclose()
        await other.aclose()


async def test_an_unknown_script_goes_by_eval_then_by_evalsha(
    client: redis.asyncio.Redis, lane: ScriptLane
) -> None:
    script = fresh(ECHO)
    sha = script.sha.decode()
    assert await client.script_exists(sha) == [False]
    assert await call(lane, script, [], ["one"]) == b"one"
    assert await last_command(client, lane) == "eval"
    assert await client.script_exists(sha) == [True]  # Redis names it by the lane's SHA-1
    assert await call(lane, script, [], ["two"]) == b"two"
    assert await last_command(client, lane) == "evalsha"


async def test_concurrent_runs_each_get_their_own_reply(lane: ScriptLane) -> None:
    known, unknown = fresh(ECHO), fresh(ECHO)
    assert await call(lane, known, [], ["loaded"]) == b"loaded"
    # Sizes vary up to ~20 kB, so replies split across reads; the unknown script's EVALSHAs are
    # answered NOSCRIPT and sent again as EVAL, among the known one's replies.
    values = [f"{i}:" + "x" * (i * 97) for i in range(200)]
    futures = await asyncio.gather(
        *(lane.run(known if i % 2 else unknown, [], [value]) for i, value in enumerate(values))
    )
    replies = await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert replies == [value.encode() for value in values]


async def test_a_caller_cancelled_in_flight_leaves_the_lane_usable(lane: ScriptLane) -> None:
    script = fresh(ECHO)
    sent: asyncio.Future[asyncio.Future[Any]] = asyncio.get_running_loop().create_future()

    async def poll() -> Any:
        reply = await lane.run(script, [], ["kept"])
        sent.set_result(reply)
        return await asyncio.shield(reply)

    caller = asyncio.ensure_future(poll())
    reply = await sent
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await asyncio.wait_for(reply, 5) == b"kept"  # still collected after the cancel
    assert await call(lane, script, [], ["next"]) == b"next"


async def test_dropped_replies_go_to_no_one_else(lane: ScriptLane) -> None:
    known, unknown = fresh(ECHO), fresh(ECHO)
    assert await call(lane, known, [], ["loaded"]) == b"loaded"
    futures = await asyncio.gather(
        *(lane.run(unknown if i % 5 else known, [], [str(i)]) for i in range(200))
    )
    for future in futures[::3]:
        future.cancel()  # the caller stops waiting: its reply is read and dropped
    kept = [(i, future) for i, future in enumerate(futures) if i % 3]
    replies = await asyncio.wait_for(asyncio.gather(*(future for _, future in kept)), 10)
    assert replies == [str(i).encode() for i, _ in kept]
    assert await call(lane, unknown, [], ["after"]) == b"after"


# -- errors -------------------------------------------------------------------------------------


async def test_an_error_reply_raises_resp_error_and_the_lane_keeps_working(
    client: redis.asyncio.Redis, lane: ScriptLane, prefix: str
) -> None:
    with pytest.raises(RespError, match="boom") as caught:
        await call(lane, fresh("return redis.error_reply('boom')"))
    assert isinstance(caught.value, redis.exceptions.ResponseError)

    text = f"{prefix}text"
    await client.set(text, "not a number")
    with pytest.raises(RespError, match="not an integer"):
        await call(lane, fresh("return redis.call('INCR', KEYS[1])"), [text])
    with pytest.raises(RespError, match="compil"):  # through the EVAL fallback
        await call(lane, fresh("return +"))

    echo, boom = fresh(ECHO), fresh("return redis.error_reply(ARGV[1])")
    futures = [await lane.run(boom if i % 2 else echo, [], [f"r{i}"]) for i in range(6)]
    replies = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)
    for i, reply in enumerate(replies):
        if i % 2:  # Redis 7 prefixes "ERR ": "ERR r1"
            assert isinstance(reply, RespError) and str(reply).endswith(f"r{i}"), reply
        else:
            assert reply == f"r{i}".encode()
    assert await call(lane, echo, [], ["fine"]) == b"fine"


async def test_a_wrong_password_fails_clearly_without_hanging(
    client: redis.asyncio.Redis,
) -> None:
    # Not connected: redis-py would fail its own AUTH first. The lane signs in on first use.
    wrong = redis.asyncio.Redis.from_url(url_with(password=f"wrong-{uuid.uuid4().hex}"))
    lane = ScriptLane.for_client(wrong)
    assert lane is not None
    try:
        for _ in range(2):  # and again on the next run
            with pytest.raises(RespError) as caught:
                async with asyncio.timeout(5):
                    await lane.run(fresh(ECHO), [], ["x"])
            # Without a password set: "ERR AUTH <password> called without any password
            # configured ..."; with one: "WRONGPASS invalid username-password pair ...".
            assert "password" in str(caught.value).lower()
    finally:
        await lane.aclose()
        await wrong.aclose()
    with pytest.raises(redis.exceptions.ConnectionError):
        await lane.run(fresh(ECHO), [], ["x"])


async def test_cannot_reach_redis_is_a_connection_error() -> None:
    async with fake_redis(lambda reader, writer: asyncio.sleep(0)) as port:
        pass  # closed: nothing listens on the port now
    unreachable = redis.asyncio.Redis(host="127.0.0.1", port=port)
    lane = ScriptLane.for_client(unreachable)
    assert lane is not None
    try:
        with pytest.raises(redis.exceptions.ConnectionError, match="cannot reach Redis"):
            async with asyncio.timeout(5):
                await lane.run(fresh(ECHO), [], ["x"])
    finally:
        await lane.aclose()
        await unreachable.aclose()


# -- connection loss ----------------------------------------------------------------------------


async def test_a_killed_connection_fails_at_most_one_run_then_reconnects(
    client: redis.asyncio.Redis, lane: ScriptLane
) -> None:
    script = fresh(ECHO)
    assert await call(lane, script, [], ["before"]) == b"before"
    killed = lane_address(lane)
    assert await client.client_kill_filter(addr=killed) == 1
    failures = 0
    for attempt in range(2):
        try:
            assert await call(lane, script, [], [f"after-{attempt}"]) == f"after-{attempt}".encode()
            break
        except redis.exceptions.ConnectionError:
            failures += 1
    else:
        pytest.fail("the lane did not reconnect after its connection was killed")
    assert failures <= 1
    assert lane_address(lane) != killed

    # Once the loss is noticed, the next run connects again without failing.
    protocol = lane._protocol
    assert protocol is not None
    assert await client.client_kill_filter(addr=lane_address(lane)) == 1
    for _ in range(500):  # up to 5 s
        if protocol.lost is not None:
            break
        await asyncio.sleep(0.01)
    assert protocol.lost is not None
    assert await call(lane, script, [], ["again"]) == b"again"


async def test_runs_waiting_on_a_lost_connection_fail_with_connection_error() -> None:
    async def drop_after_two(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_until(reader, b"EVALSHA", 2)
        writer.close()

    async with fake_redis(drop_after_two) as port:
        fake = redis.asyncio.Redis(host="127.0.0.1", port=port)
        lane = ScriptLane.for_client(fake)
        assert lane is not None
        try:
            first = await lane.run(fresh(ECHO), [], ["1"])
            second = await lane.run(fresh(ECHO), [], ["2"])
            for reply in (first, second):
                with pytest.raises(redis.exceptions.ConnectionError, match="lost"):
                    await asyncio.wait_for(reply, 5)
        finally:
            await lane.aclose()
            await fake.aclose()


async def test_l14_a_redis_that_never_answers_fails_the_run_in_time_and_the_lane_reconnects() -> (
    None
):
    """L14: the lane had no read timeout: a hung Redis stalled every poll of the node for ever.
    Now a run with no reply for ``reply_timeout_s`` fails with redis-py's ``TimeoutError`` (the
    runs queued behind it too), and the next run opens a new connection."""
    connections: list[int] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.read()  # reads every request, answers none, until the lane hangs up

    async with fake_redis(never_answer) as port:
        fake = redis.asyncio.Redis(host="127.0.0.1", port=port)
        lane = ScriptLane.for_client(fake, reply_timeout_s=0.3)
        assert lane is not None
        try:
            started = asyncio.get_running_loop().time()
            first = await lane.run(fresh(ECHO), [], ["1"])
            second = await lane.run(fresh(ECHO), [], ["2"])
            for reply in (first, second):
                with pytest.raises(redis.exceptions.TimeoutError, match="no reply from Redis"):
                    await asyncio.wait_for(reply, 5)
            assert asyncio.get_running_loop().time() - started < 2
            third = await lane.run(fresh(ECHO), [], ["3"])  # a new connection
            with pytest.raises(redis.exceptions.TimeoutError):
                await asyncio.wait_for(third, 5)
            assert len(connections) == 2
        finally:
            await lane.aclose()
            await fake.aclose()


# -- closing ------------------------------------------------------------------------------------


async def test_after_aclose_run_raises_connection_error(lane: ScriptLane) -> None:
    script = fresh(ECHO)
    assert await call(lane, script, [], ["open"]) == b"open"
    pending = await lane.run(script, [], ["pending"])
    await lane.aclose()
    with pytest.raises(redis.exceptions.ConnectionError):
        await asyncio.wait_for(pending, 5)  # settled, not left hanging
    with pytest.raises(redis.exceptions.ConnectionError):
        await lane.run(script, [], ["closed"])
    await lane.aclose()  # twice is harmless


async def test_aclose_while_connecting_closes_the_lane(lane: ScriptLane) -> None:
    script = fresh(ECHO)
    connecting = asyncio.ensure_future(lane.run(script, [], ["racing"]))
    await asyncio.sleep(0)  # the run is now connecting
    await lane.aclose()
    with contextlib.suppress(redis.exceptions.ConnectionError):
        await asyncio.wait_for(await connecting, 5)
    with pytest.raises(redis.exceptions.ConnectionError):
        await lane.run(script, [], ["closed"])


def test_for_client_declines_tls() -> None:
    tls = redis.asyncio.Redis.from_url("rediss://127.0.0.1:6379/0")
    assert ScriptLane.for_client(tls) is None


async def test_a_run_cancelled_while_signing_in_logs_no_error() -> None:
    selected = asyncio.Event()

    async def answer_late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_until(reader, b"SELECT")
        selected.set()
        await asyncio.sleep(0.05)  # meanwhile the run is cancelled
        writer.write(b"+OK\r\n")
        await writer.drain()
        await reader.read()  # until the lane hangs up (or the test ends)

    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        async with fake_redis(answer_late) as port:
            fake = redis.asyncio.Redis(host="127.0.0.1", port=port, db=1)
            lane = ScriptLane.for_client(fake)
            assert lane is not None
            try:
                run = asyncio.ensure_future(lane.run(fresh(ECHO), [], ["x"]))
                await asyncio.wait_for(selected.wait(), 5)
                run.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await run
                await asyncio.sleep(0.2)  # the late "+OK" arrives
            finally:
                await lane.aclose()
                await fake.aclose()
    finally:
        loop.set_exception_handler(previous)
    assert [context.get("message") for context in errors] == []
