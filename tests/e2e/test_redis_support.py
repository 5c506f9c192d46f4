"""tests/support/redis.py gives the rate-limit tests a real redis-server they can rely on: it
answers on its own loopback port, runs any command, stops, crashes and hangs on demand, comes
back on the same port (empty: nothing is persisted), and takes a password."""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import urlsplit

import pytest

from tests.support.redis import COMMAND_TIMEOUT, RedisReplyError, RedisServer, encode


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_starts_on_a_loopback_port_and_answers_ping() -> None:
    async with RedisServer() as redis:
        assert redis.running and redis.pid is not None
        assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
        url = urlsplit(redis.url)
        assert (url.scheme, url.hostname, url.port, url.path) == (
            "redis",
            "127.0.0.1",
            redis.port,
            "/0",
        )
        assert await redis.command("PING") == "PONG"
        # Bound to loopback, without persistence: what the test suite asked for.
        assert await redis.command("CONFIG", "GET", "bind") == [b"bind", b"127.0.0.1"]
        assert await redis.command("CONFIG", "GET", "save") == [b"save", b""]
        assert await redis.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]


async def test_commands_and_their_replies() -> None:
    """Each RESP2 reply type comes back as its Python value; an error reply is raised."""
    async with RedisServer() as redis:
        assert await redis.command("SET", "client:a", "v1", "PX", 60000) == "OK"
        assert await redis.command("GET", "client:a") == b"v1"
        assert await redis.command("GET", "missing") is None
        assert await redis.command("INCRBY", "n", 5) == 5
        assert await redis.command("SET", "bin", b"\x00\r\n\xff") == "OK"
        assert await redis.command("GET", "bin") == b"\x00\r\n\xff"
        ttl = await redis.command("PTTL", "client:a")
        assert isinstance(ttl, int) and 0 < ttl <= 60000
        assert await redis.command("DBSIZE") == 3
        keys = await redis.command("KEYS", "*")
        assert isinstance(keys, list) and set(keys) == {b"bin", b"client:a", b"n"}
        with pytest.raises(RedisReplyError, match="WRONGTYPE"):
            await redis.command("LPUSH", "n", "x")
        with pytest.raises(RedisReplyError, match="unknown command"):
            await redis.command("NOSUCHCOMMAND")
        assert await redis.command("FLUSHALL") == "OK"
        assert await redis.command("DBSIZE") == 0


async def test_one_connection_for_several_commands() -> None:
    """A transaction needs one connection; an error inside EXEC's answer is returned in place."""
    async with RedisServer() as redis:
        connection = await redis.connect()
        try:
            assert await connection.command("MULTI") == "OK"
            assert await connection.command("SET", "s", "x") == "QUEUED"
            assert await connection.command("INCR", "s") == "QUEUED"
            replies = await connection.command("EXEC")
        finally:
            await connection.close()
        assert isinstance(replies, list) and replies[0] == "OK"
        assert isinstance(replies[1], RedisReplyError)


async def test_stops_by_its_pid_and_restarts_empty_on_the_same_port() -> None:
    async with RedisServer() as redis:
        port, url, pid = redis.port, redis.url, redis.pid
        assert pid is not None
        await redis.command("SET", "k", "v")
        await redis.stop()
        assert not redis.running and not _alive(pid)
        assert [redis.pid] == [None]  # (in a list: mypy would narrow the property for good)
        with pytest.raises(ConnectionRefusedError):
            await redis.command("PING")
        await redis.stop()  # stopping a stopped server is a no-op
        await redis.start()
        assert (redis.port, redis.url) == (port, url)
        assert redis.pid not in (None, pid)
        assert await redis.command("PING") == "PONG"
        assert await redis.command("DBSIZE") == 0, "nothing persisted across the restart"


async def test_a_crash_and_a_restart() -> None:
    """kill() is SIGKILL, no shutdown; an open client connection sees it closed."""
    async with RedisServer() as redis:
        connection = await redis.connect()
        try:
            assert await connection.command("PING") == "PONG"
            pid = redis.pid
            assert pid is not None
            await redis.kill()
            assert not _alive(pid)
            with pytest.raises((OSError, asyncio.IncompleteReadError)):
                await connection.command("PING")
        finally:
            await connection.close()
        await redis.start()
        assert await redis.command("PING") == "PONG"


async def test_a_paused_server_accepts_but_never_answers() -> None:
    """pause() is the hung store a client timeout is for: connecting works, the reply never
    comes; resume() answers what was waiting."""
    async with RedisServer() as redis:
        connection = await redis.connect()
        try:
            await redis.pause()
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await redis.command("PING", timeout=0.2)
            assert time.monotonic() - started < 2
            connection.writer.write(encode("PING"))
            await connection.writer.drain()
            await redis.resume()
            assert await redis.command("PING") == "PONG"
            async with asyncio.timeout(COMMAND_TIMEOUT):
                assert await connection.reader.readuntil(b"\r\n") == b"+PONG\r\n"
        finally:
            await connection.close()


async def test_a_paused_server_still_stops() -> None:
    async with RedisServer() as redis:
        pid = redis.pid
        assert pid is not None
        await redis.pause()
        await redis.stop()
        assert not _alive(pid)


async def test_password() -> None:
    """With a password, the URL carries it, and a client that does not authenticate is refused."""
    async with RedisServer(password="s3cret/+@") as redis:
        url = urlsplit(redis.url)
        assert url.username == "" and url.hostname == "127.0.0.1"
        assert url.password == "s3cret%2F%2B%40"  # percent-encoded in the URL
        assert redis.url == f"redis://:s3cret%2F%2B%40@127.0.0.1:{redis.port}/0"
        assert await redis.command("PING") == "PONG"
        with pytest.raises(RedisReplyError, match="NOAUTH"):
            await redis.command("GET", "k", password=False)
        with pytest.raises(RedisReplyError, match="WRONGPASS"):
            await redis.command("PING", password="wrong")
        await redis.stop()
        await redis.start()
        with pytest.raises(RedisReplyError, match="NOAUTH"):
            await redis.command("DBSIZE", password=False)
        assert await redis.command("DBSIZE") == 0


async def test_two_servers_each_on_its_own_port() -> None:
    async with RedisServer() as first, RedisServer() as second:
        assert first.port != second.port
        await first.command("SET", "only", "first")
        assert await second.command("GET", "only") is None


async def test_the_server_is_gone_after_the_block() -> None:
    async with RedisServer() as redis:
        pid = redis.pid
        assert pid is not None
        log = redis.log
        assert log.exists()
    assert not _alive(pid)
    assert not log.exists(), "its working directory is removed"
    with pytest.raises(ConnectionRefusedError):
        await redis.command("PING")
