"""An ``ensure()`` refused after the anonymous limiter admitted it uses up nothing.

Bad metadata (``SessionValidationError``) or a store error after the reservation still
counted in the client's ``anonymous_sessions_per_minute`` window (found by an outside
audit). Sessions created and ended in one request still count, one each.
"""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.exceptions import SessionError, SessionValidationError
from lexigram.ai.session.middleware import SessionMiddleware, current_session
from lexigram.ai.session.middleware.anonymous import AnonymousLimiter, AnonymousLimitError

from .conftest import World, send_json


class Ticks:
    """A monotonic clock the tests move."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """``/bad``: an ensure() the manager refuses; ``/twice``: ensure, end, ensure."""
    session = current_session()
    path = scope["path"]
    try:
        if path == "/bad":
            await session.ensure(metadata="not a mapping")  # type: ignore[arg-type]
        elif path == "/retry":
            with contextlib.suppress(SessionValidationError):
                await session.ensure(metadata="not a mapping")  # type: ignore[arg-type]
            await session.ensure()
        elif path == "/twice":
            await session.ensure()
            await session.end()
            await session.ensure()
        else:
            await session.ensure()
        body: dict[str, Any] = {"result": "created"}
    except AnonymousLimitError:
        raise
    except SessionError as exc:
        body = {"result": type(exc).__name__}
    await send_json(send, body)


def _middleware(world: World, ticks: Ticks, **bounds: Any) -> SessionMiddleware:
    middleware = SessionMiddleware(
        _app, session_manager=world.manager, config=world.config(allow_anonymous=True, **bounds)
    )
    middleware.limiter = AnonymousLimiter(
        per_minute=middleware.config.anonymous_sessions_per_minute,
        max_live=middleware.config.max_anonymous_sessions,
        read_status=middleware._read_status,
        clock=ticks,
    )
    return middleware


async def _post(app: Any, path: str, address: str = "203.0.113.7") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.post(path)


async def test_refused_creates_do_not_use_up_the_clients_minute(world: World) -> None:
    app = _middleware(world, Ticks(), anonymous_sessions_per_minute=2)
    bad = [await _post(app, "/bad") for _ in range(3)]
    assert [r.json()["result"] for r in bad] == [SessionValidationError.__name__] * 3
    good = [await _post(app, "/good") for _ in range(3)]
    assert [r.status_code for r in good] == [200, 200, 429]
    assert len(world.created) == 2
    assert app.limiter is not None and app.limiter.live_count == 2


async def test_a_store_error_is_refunded_from_the_total_and_the_window(
    world: World, monkeypatch: Any
) -> None:
    app = _middleware(world, Ticks(), anonymous_sessions_per_minute=1, max_anonymous_sessions=1)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise SessionError("the store is down")

    with monkeypatch.context() as patch:
        patch.setattr(world.manager, "create", broken)
        assert (await _post(app, "/good")).json() == {"result": "SessionError"}
    assert app.limiter is not None and app.limiter.live_count == 0
    assert (await _post(app, "/good")).status_code == 200


async def test_a_retry_in_the_same_request_is_not_refused_by_the_failed_try(
    world: World,
) -> None:
    app = _middleware(world, Ticks(), anonymous_sessions_per_minute=1)
    assert (await _post(app, "/retry")).json() == {"result": "created"}
    assert len(world.created) == 1
    assert (await _post(app, "/good")).status_code == 429  # the one that was created counts


async def test_end_and_ensure_again_in_one_request_counts_two(world: World) -> None:
    app = _middleware(world, Ticks(), anonymous_sessions_per_minute=2)
    assert (await _post(app, "/twice")).json() == {"result": "created"}
    assert len(world.created) == 2
    assert (await _post(app, "/good")).status_code == 429
    assert app.limiter is not None and app.limiter.live_count == 1  # the first one ended


async def test_a_refund_only_gives_back_to_the_window_it_was_taken_from() -> None:
    ticks = Ticks()

    async def live(session_id: str) -> SessionStatus | None:
        return SessionStatus.ACTIVE

    limiter = AnonymousLimiter(per_minute=1, max_live=0, read_status=live, clock=ticks)
    old = await limiter.reserve("client")
    ticks.now += 60  # a new window
    await limiter.reserve("client")
    limiter.settle("s1")
    limiter.refund(old)  # from the window that is over: the new one keeps its count
    try:
        await limiter.reserve("client")
    except AnonymousLimitError as refused:
        assert refused.bound == "anonymous_sessions_per_minute"
    else:
        raise AssertionError("the refund of an old window opened the new one")
    fresh = await limiter.reserve("other")
    limiter.refund(fresh)
    assert limiter.live_count == 0
    await limiter.reserve("other")  # given back: the window admits one again


async def test_an_ensure_cancelled_while_its_create_is_stored_is_not_refunded() -> None:
    """A view's deadline expiring during ensure() while the manager finishes the create
    in the background (an event bus listens): each request stored a session and was
    refunded, so one client created without bound (a regression audit)."""
    import asyncio

    from lexigram.result import Ok

    from lexigram.ai.session import SessionConfig, SessionManagerImpl

    class Bus:
        async def publish(self, event: Any) -> Any:
            return Ok(None)

        def subscribe(self, *args: Any) -> None: ...

        def unsubscribe(self, *args: Any) -> None: ...

    async def app(scope: Any, receive: Any, send: Any) -> None:
        status = 200
        try:
            async with asyncio.timeout(0):  # the view's own deadline, already spent
                await current_session().ensure()
        except TimeoutError:
            status = 504
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with SessionManagerImpl.open({"backend": "memory"}, event_bus=Bus()) as manager:
        config = SessionConfig(
            cookie_secret="s" * 40,
            allow_anonymous=True,
            max_anonymous_sessions=3,
            anonymous_sessions_per_minute=3,
        )
        middleware = SessionMiddleware(app, session_manager=manager, config=config)
        codes = []
        for _ in range(6):  # one client, never keeping its cookie
            transport = httpx.ASGITransport(app=middleware)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                codes.append((await http.get("/")).status_code)
        assert await manager.wait_for_background(5) == 0
        assert codes == [504, 504, 504, 429, 429, 429]
        # The total bound too: ten clients, one request each (it was not counted in
        # max_anonymous_sessions: every client stored one; a second audit).
        middleware = SessionMiddleware(
            app,
            session_manager=manager,
            config=SessionConfig(
                cookie_secret="s" * 40,
                allow_anonymous=True,
                max_anonymous_sessions=3,
                anonymous_sessions_per_minute=0,
            ),
        )
        codes = []
        for n in range(10):
            transport = httpx.ASGITransport(app=middleware, client=(f"10.0.0.{n}", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                codes.append((await http.get("/")).status_code)
        assert await manager.wait_for_background(5) == 0
        assert codes == [504] * 3 + [429] * 7


async def test_two_concurrent_get_or_create_in_one_request_share_one_session() -> None:
    """Both created one (the state was read before the binding's lock only)."""
    import asyncio

    from lexigram.ai.session import SessionConfig, SessionManagerImpl

    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        view = current_session()
        user = view.binding.user_id if view.binding else None
        assert user is not None
        first, second = await asyncio.gather(view.get_or_create(user), view.get_or_create(user))
        seen["ids"] = {first.session_id, second.session_id}
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with SessionManagerImpl.open({"backend": "memory"}) as manager:
        config = SessionConfig(cookie_secret="s" * 40, allow_anonymous=True)
        middleware = SessionMiddleware(app, session_manager=manager, config=config)
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/")).status_code == 200
        (only,) = seen["ids"]
        header = await manager.get_header(only)
        assert header is not None
        assert await manager.count_live_sessions(header.user_id) == 1


async def test_a_manager_wrapper_without_session_id_still_creates() -> None:
    """The context draws the id of an anonymous create (to count it if cancelled): a
    wrapper whose create() does not take ``session_id`` failed with a TypeError."""
    from lexigram.ai.session import SessionConfig, SessionManagerImpl

    class Audited:
        def __init__(self, inner: SessionManagerImpl) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def create(
            self,
            user_id: str,
            metadata: Any = None,
            *,
            system_prompt: Any = None,
            variables: Any = None,
        ) -> Any:
            return await self.inner.create(
                user_id, metadata, system_prompt=system_prompt, variables=variables
            )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        state = await current_session().ensure()
        await send_json(send, {"sid": state.session_id})

    async with SessionManagerImpl.open({"backend": "memory"}) as inner:
        config = SessionConfig(cookie_secret="s" * 40, allow_anonymous=True)
        middleware = SessionMiddleware(app, session_manager=Audited(inner), config=config)
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/")
        assert response.status_code == 200
        assert await inner.get_header(response.json()["sid"]) is not None
