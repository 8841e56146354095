"""``EncryptedSessionStore``: encryption at rest in front of any session store.

It wraps a backend store and seals values in Python *before* the backend's one
atomic step (see :mod:`.sealing` for what is sealed), and opens them after a read,
so every backend (SQLite, PostgreSQL, MariaDB, Redis, in-memory) encrypts the same
way and keeps its atomicity, flat append cost and concurrency guarantees.

The data key of a session is made at ``create_session`` (its wrapped form stored in
the header's metadata, in clear) and kept in a bounded in-process LRU, so an append
does not read it again; a cache miss costs one ``load_record``. A branch shares its
source's data key (the backend copies the source's sealed turns and header).
Sessions stored without a key envelope (written before encryption was turned on)
are read and written as plaintext.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)
from lexigram.logging import get_logger

from lexigram.ai.session.encryption.cipher import (
    DataKey,
    envelope_key_id,
    new_data_key,
    open_envelope,
)
from lexigram.ai.session.encryption.keyring import Keyring
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    DataKeyChangedError,
    EncryptionKeyError,
    SessionNotFoundError,
    SessionStoreError,
    SessionValidationError,
)
from lexigram.ai.session.stores.base import (
    BATCH_CONCURRENCY,
    AppendResult,
    BatchOutcome,
    Clock,
    SessionPage,
    SessionPatch,
    SessionRecord,
    SessionStore,
    StoredTurns,
    UserErasure,
    check_fork_seq,
    refuse_key_field,
)
from lexigram.ai.session.stores.encrypted.envelopes import envelope_access
from lexigram.ai.session.stores.encrypted.lru import Lru
from lexigram.ai.session.stores.encrypted.opened import (
    DEFAULT_TURN_CACHE_BYTES,
    Entry,
    OpenedTurns,
)
from lexigram.ai.session.stores.encrypted.reread import Run
from lexigram.ai.session.stores.encrypted.reread_stored import (
    extended_stored_run,
    new_stored_run,
    stored_prefix,
    stored_tail,
)
from lexigram.ai.session.stores.encrypted.sealing import (
    KEY_FIELD,
    envelope_of,
    header_without_private,
    open_checkpoint,
    open_header,
    open_turns,
    seal_checkpoint_metadata,
    seal_header,
    seal_patch,
    seal_turn_opened,
)
from lexigram.ai.session.stores.gc_pause import paused_gc
from lexigram.ai.session.validation import (
    CheckedTurns,
    check_caps,
    check_checkpoint,
    check_id,
    check_mapping,
    check_optional_count,
    check_patch,
    check_state,
    check_turns,
)

__all__ = ["DEFAULT_KEY_CACHE", "EncryptedSessionStore"]

logger = get_logger(__name__)

#: How many sessions' data keys the store keeps unwrapped in memory.
DEFAULT_KEY_CACHE = 10_000
#: How many times a guarded write is sealed again after the session's key changed.
_GUARD_ATTEMPTS = 3
T = TypeVar("T")


class EncryptedSessionStore(SessionStore):
    """A :class:`SessionStore` that encrypts what it hands ``inner`` (see the module doc)."""

    def __init__(
        self,
        inner: SessionStore,
        keyring: Keyring,
        *,
        key_cache: int = DEFAULT_KEY_CACHE,
        turn_cache_bytes: int = DEFAULT_TURN_CACHE_BYTES,
    ) -> None:
        # No super().__init__: ttl and clock are the inner store's (properties below).
        self.inner = inner
        self.keyring = keyring
        self.backend_name = inner.backend_name  # type: ignore[misc]
        # ``owner`` is passed on, so it is honoured exactly when the inner store does.
        self.supports_owner_guard = inner.supports_owner_guard
        # Data keys by session and by envelope; shared by every thread's event loop.
        self._cache: Lru[str, DataKey] = Lru(key_cache)
        self._envelopes: Lru[str, DataKey] = Lru(key_cache)
        self._opened = OpenedTurns(turn_cache_bytes)
        # Whether load goes through the inner store's load_reusing (with a cache).
        self._reuse = _reuses_stored(type(inner)) and self._opened.max_bytes > 0

    # -------------------------------------------------------------- delegation
    @property
    def session_ttl(self) -> int:
        """The inner store's session TTL."""
        return self.inner.session_ttl

    @session_ttl.setter
    def session_ttl(self, value: int) -> None:
        self.inner.session_ttl = value

    @property
    def clock(self) -> Clock:
        """The inner store's clock."""
        return self.inner.clock

    @clock.setter
    def clock(self, value: Clock) -> None:
        self.inner.clock = value

    def __getattr__(self, name: str) -> Any:
        # Backend-specific attributes (engine, client, prefixes) of the inner store.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def initialize(self) -> None:
        """Initialise the inner store."""
        await self.inner.initialize()

    async def close(self) -> None:
        """Close the inner store and forget every cached data key."""
        self._cache.clear()
        self._envelopes.clear()
        self._opened.clear()
        await self.inner.close()

    async def ping(self) -> None:
        """Ping the inner store."""
        await self.inner.ping()

    # -------------------------------------------------------------------- keys
    def _remember(self, session_id: str, key: DataKey) -> None:
        self._cache.put(session_id, key)

    def _forget(self, session_id: str) -> None:
        """Drop what this process holds of a deleted, purged or erased session.

        Its unwrapped data key goes too (a branch sharing it unwraps it again on its
        next read: one AES-GCM call). An id that is no string was never held; the inner
        store refuses it, naming ``session_id`` (a list raised ``unhashable type`` here).
        """
        if not isinstance(session_id, str):
            return
        key = self._cache.pop(session_id)
        if key is not None:
            self._envelopes.pop(key.envelope)
        self._opened.drop(session_id)

    def _open_envelope(self, envelope: str, record: str) -> DataKey:
        known = self._envelopes.get(envelope)
        if known is not None:
            return known
        key = open_envelope(envelope, self.keyring, record=record)
        self._envelopes.put(envelope, key)
        return key

    def _key_of_state(self, state: SessionState) -> DataKey | None:
        envelope = envelope_of(state)
        if envelope is None:
            return None
        return self._open_envelope(envelope, f"session {state.session_id!r}")

    async def _key_for(self, session_id: str) -> DataKey | None:
        """The data key of a stored session (None: plaintext or missing).

        A data key is kept once read (writes are guarded by it, see :meth:`_guarded`);
        that a session is plaintext is not, since another process may delete it and
        create it again encrypted: a plaintext session is read again before each write.
        """
        cached = self._cached_key(session_id)
        return cached if cached is not None else (await self._stored_key(session_id))[1]

    def _cached_key(self, session_id: str) -> DataKey | None:
        """The data key this process keeps for the session (marked recently used)."""
        return self._cache.get(session_id)

    async def _stored_key(self, session_id: str) -> tuple[bool, DataKey | None]:
        """Whether the session exists, and its data key, as stored now (header read)."""
        self._cache.pop(session_id)
        record = await self.inner.load_record(session_id)
        if record is None:
            return False, None
        key = self._key_of_state(record.state)
        if key is not None:
            self._remember(session_id, key)
        return True, key

    async def _sealing_key(self, session_id: str) -> DataKey | None:
        """The key to seal a write to an existing session with (None: plaintext).

        ``SessionNotFoundError`` when there is no such session: the write would be
        refused anyway, and a plaintext write must not land in an encrypted session
        that another process creates meanwhile.
        """
        cached = self._cached_key(session_id)
        if cached is not None:
            return cached
        exists, key = await self._stored_key(session_id)
        if not exists:
            raise SessionNotFoundError(session_id)
        return key

    async def _guarded(
        self, session_id: str, write: Callable[[DataKey | None, str | None], Awaitable[T]]
    ) -> T:
        """Run ``write(key, key_guard)`` sealed under the session's current data key.

        On a backend that honours ``key_guard`` the write applies only while the
        session is still under that key. When another process deleted the session and
        created it again (a new data key), or re-wrapped its key, the write is refused
        with nothing written (``DataKeyChangedError``); the key is read again and the
        write sealed anew, up to :data:`_GUARD_ATTEMPTS` times.
        """
        guarding = self.inner.supports_key_guard
        key = await self._sealing_key(session_id)
        for attempt in range(1, _GUARD_ATTEMPTS + 1):
            try:
                return await write(key, key.envelope if guarding and key is not None else None)
            except DataKeyChangedError:
                if attempt == _GUARD_ATTEMPTS:
                    raise
                logger.info("ai_session.encryption.data_key_changed", session_id=session_id)
                exists, key = await self._stored_key(session_id)
                if not exists:
                    raise SessionNotFoundError(session_id) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def data_key_for_new(self, session_id: str) -> DataKey:
        """A fresh data key for a new session, wrapped under the newest key."""
        return new_data_key(session_id, self.keyring)

    # ----------------------------------------------------------------- opening
    def _open_state(
        self,
        state: SessionState,
        *,
        turns_opened: bool = False,
        whole_run: bool = True,
        taken: dict[str, Entry] | None = None,
        written: Sequence[tuple[str, Entry]] = (),
    ) -> SessionState:
        """``state`` opened (``turns_opened``: its turns are already; ``whole_run``: keep
        the :class:`Run` of its turns, see ``reread``).

        A write's reply passes the session's cache entries it took before writing
        (``taken``) and the turns it sealed (``written``): both are entered there at
        once, and not at all when the session was dropped meanwhile (erased, deleted).
        """
        key = self._header_key(state)
        if key is None:
            return state
        session_id = state.session_id
        record = f"session {session_id!r}"
        cache = self._opened.of(session_id) if taken is None else taken
        if cache is None:  # cache off: nothing to record either
            return open_header(state, key, record=record, turns_opened=turns_opened)
        added: list[tuple[str, Entry]] = list(written)
        whole = whole_run and bool(state.turns)  # a header alone (a write's reply): no run
        run, keep_run = self._runs(session_id, cache) if whole else (None, None)
        opened = open_header(
            state,
            key,
            record=record,
            cache=cache,
            added=added,
            run=run,
            keep_run=keep_run,
            turns_opened=turns_opened,
        )
        self._opened.added(session_id, cache, added)
        return opened

    def _header_key(self, state: SessionState) -> DataKey | None:
        """The data key of a stored header (None: a plaintext session); remembered."""
        envelope = envelope_of(state)
        if envelope is None:
            return None
        session_id = state.session_id
        record = f"session {session_id!r}"
        cached = self._cache.get(session_id)
        if cached is not None and cached.envelope == envelope:
            key = cached  # the common case: the key this process already holds
        else:
            key = self._open_envelope(envelope, record)
            if cached is not None and cached.raw != key.raw:
                # The session was deleted and created again by another process while
                # this one held its old data key. Writes are guarded by the key, so
                # nothing was written under the old one, unless the backend cannot
                # guard them. The fresh key replaces it from now on.
                if self.inner.supports_key_guard:
                    logger.info("ai_session.encryption.data_key_changed", session_id=session_id)
                else:
                    logger.error("ai_session.encryption.stale_data_key", session_id=session_id)
            self._remember(session_id, key)  # also picks up a re-wrapped envelope
        return key

    def _open_record(
        self,
        record: SessionRecord,
        *,
        taken: dict[str, Entry] | None = None,
        written: Sequence[tuple[str, Entry]] = (),
    ) -> SessionRecord:
        state = self._open_state(record.state, taken=taken, written=written)
        return SessionRecord(state, record.expires_at, record.fork_seq, record.last_seq)

    def _open_checkpoint(self, checkpoint: SessionCheckpoint) -> SessionCheckpoint:
        key = self._key_of_state(checkpoint.state)
        return checkpoint if key is None else open_checkpoint(checkpoint, key)

    async def _open_turns(
        self, session_id: str, turns: list[SessionTurn], *, whole: bool = False
    ) -> list[SessionTurn]:
        """``turns`` of the session opened (``whole``: every live turn, in order)."""
        if not turns:
            return turns
        key = await self._key_for(session_id)
        if key is None:
            return turns
        try:
            return self._open_turns_with(session_id, turns, key, whole)
        except EncryptionKeyError:
            # The key this process kept may be an earlier session's of the same id
            # (deleted and created again by another process): read it again, once.
            # A session gone by then (deleted once more) is not found, as it would
            # be for a read made a moment later.
            exists, fresh = await self._stored_key(session_id)
            if not exists:
                raise SessionNotFoundError(session_id) from None
            if fresh is None or fresh.raw == key.raw:
                raise
            logger.info("ai_session.encryption.data_key_changed", session_id=session_id)
            return self._open_turns_with(session_id, turns, fresh, whole)

    def _open_turns_with(
        self, session_id: str, turns: list[SessionTurn], key: DataKey, whole: bool
    ) -> list[SessionTurn]:
        record = f"session {session_id!r}"
        cache = self._opened.of(session_id)
        if cache is None:
            return open_turns(turns, key, record=record)
        added: list[tuple[str, Entry]] = []
        run, keep_run = self._runs(session_id, cache) if whole else (None, None)
        opened = open_turns(
            turns, key, record=record, cache=cache, added=added, run=run, keep_run=keep_run
        )
        self._opened.added(session_id, cache, added)
        return opened

    def _runs(
        self, session_id: str, cache: dict[str, Entry]
    ) -> tuple[Run | None, Callable[[Run], None] | None]:
        """The session's last whole read, and where to keep this one's (see ``reread``;
        None on a session's first whole read in this process, see ``admit_run``)."""
        keep = self._opened.admit_run(session_id, cache)
        return self._opened.run(session_id), (
            partial(self._opened.keep_run, session_id, cache) if keep else None
        )

    # --------------------------------------------------------- whole state
    async def save(self, state: SessionState) -> None:
        """Seal and save a whole session; an existing plaintext session stays plaintext."""
        check_state(state)
        key = await self._key_for(state.session_id)
        if key is None:
            existing = await self.inner.load_record(state.session_id)
            if existing is not None:
                refuse_key_field(state.metadata)
                await self.inner.save(state)
                return
            key = self.data_key_for_new(state.session_id)
        await self.inner.save(seal_header(state, key))
        self._remember(state.session_id, key)

    async def load(self, session_id: str) -> SessionState | None:
        """The opened full state, or None.

        On a backend that shows its stored texts (``load_reusing``), a re-read whose
        texts are those of the last one is answered from its :class:`StoredRun`
        (see ``reread_stored``), and a first read keeps one.
        """
        if not self._reuse:
            state = await self.inner.load(session_id)
            return None if state is None else self._open_state(state)
        offer = _StoredOffer(self, session_id)
        state = await self.inner.load_reusing(session_id, offer)
        if state is None:
            return None
        if offer.answered is not None and state.turns is offer.answered:
            return self._open_state(state, turns_opened=True, whole_run=False)
        opened = self._open_state(state, whole_run=False)
        if offer.key is not None and offer.stored is not None:
            self._keep_stored_run(session_id, offer.key, offer.stored, opened.turns)
        return opened

    def _keep_stored_run(
        self, session_id: str, key: DataKey, stored: StoredTurns, opened: list[SessionTurn]
    ) -> None:
        cache = self._opened.of(session_id)
        if cache is None or not self._opened.admit_run(session_id, cache):
            return
        run = new_stored_run(key.raw, stored, opened)
        if run is not None:
            self._opened.keep_stored_run(session_id, cache, run)

    def _reused_turns(
        self, session_id: str, key: DataKey, stored: StoredTurns
    ) -> list[SessionTurn] | None:
        """The opened turns standing for ``stored`` from the session's stored run, or None."""
        run = self._opened.stored_run(session_id)
        if run is None or run.raw_key != key.raw or not stored_prefix(run, stored):
            return None
        with paused_gc(stored.count):
            turns = run.turns()
            if turns is None or stored.count == run.count:
                return turns
            tail = stored_tail(run, stored)
            cache = self._opened.of(session_id)
            if tail is None or cache is None:
                return None
            added: list[tuple[str, Entry]] = []
            opened = open_turns(
                tail, key, record=f"session {session_id!r}", cache=cache, added=added
            )
        self._opened.added(session_id, cache, added)
        grown = extended_stored_run(run, stored, opened)
        if grown is not None:
            self._opened.keep_stored_run(session_id, cache, grown)
        return turns + opened

    async def delete(self, session_id: str) -> None:
        """Delete through the inner store and forget the session's key."""
        self._forget(session_id)
        await self.inner.delete(session_id)

    async def list_sessions(self, user_id: str) -> list[SessionState]:
        """Every session of ``user_id``, opened."""
        return [self._open_state(s) for s in await self.inner.list_sessions(user_id)]

    async def save_checkpoint(self, checkpoint: SessionCheckpoint) -> None:
        """Seal a whole checkpoint under its session's key (plaintext session: as is)."""
        check_checkpoint(checkpoint)
        key = await self._key_for(checkpoint.session_id)
        if key is None:
            key = self._key_of_state(checkpoint.state)
        if key is None:
            await self.inner.save_checkpoint(checkpoint)
            return
        sealed = replace(
            checkpoint,
            state=seal_header(checkpoint.state, key),
            metadata=seal_checkpoint_metadata(checkpoint.metadata, key, checkpoint.checkpoint_id)
            or {},
        )
        await self.inner.save_checkpoint(sealed)

    async def load_checkpoint(self, checkpoint_id: str) -> SessionCheckpoint | None:
        """The opened checkpoint, or None."""
        checkpoint = await self.inner.load_checkpoint(checkpoint_id)
        return None if checkpoint is None else self._open_checkpoint(checkpoint)

    async def list_checkpoints(self, session_id: str) -> list[SessionCheckpoint]:
        """A session's checkpoints, opened, oldest first."""
        return [self._open_checkpoint(c) for c in await self.inner.list_checkpoints(session_id)]

    async def delete_checkpoint(self, checkpoint_id: str) -> bool:
        """Delete one checkpoint (nothing to open)."""
        return await self.inner.delete_checkpoint(checkpoint_id)

    # ------------------------------------------------------------------ writes
    async def create_session(
        self,
        state: SessionState,
        *,
        max_live_per_user: int | None = None,
        fork_seq: int | None = None,
    ) -> SessionRecord:
        """Create the session sealed under a new data key (checked before sealing).

        ``fork_seq`` is passed through, and only when given: an inner store written
        for the earlier contract (no such keyword) still creates every other session.
        """
        check_caps(max_live_per_user=max_live_per_user)  # named first, as the stores do
        check_state(state)
        fork_seq = check_fork_seq(fork_seq, state)
        key = self.data_key_for_new(state.session_id)
        extra: dict[str, int] = {} if fork_seq is None else {"fork_seq": fork_seq}
        record = await self.inner.create_session(
            seal_header(state, key), max_live_per_user=max_live_per_user, **extra
        )
        self._remember(state.session_id, key)
        return self._open_record(record)

    async def load_record(self, session_id: str) -> SessionRecord | None:
        """The opened header, or None."""
        record = await self.inner.load_record(session_id)
        return None if record is None else self._open_record(record)

    async def get_turns(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[SessionTurn]:
        """Live turns, opened."""
        turns = await self.inner.get_turns(session_id, last=last, after_seq=after_seq, limit=limit)
        whole = last is None and after_seq is None and limit is None
        return await self._open_turns(session_id, turns, whole=whole)

    async def get_turn_seqs(
        self, session_id: str, *, after_seq: int | None = None, limit: int | None = None
    ) -> list[tuple[int, SessionTurn]]:
        """Live turns with their seqs, opened."""
        pairs = await self.inner.get_turn_seqs(session_id, after_seq=after_seq, limit=limit)
        turns = await self._open_turns(session_id, [t for _, t in pairs])
        return [(seq, turn) for (seq, _), turn in zip(pairs, turns, strict=True)]

    async def list_user_sessions(
        self,
        user_id: str,
        *,
        status: SessionStatus | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of opened headers; one this process cannot open is named in ``damaged``."""
        page = await self.inner.list_user_sessions(
            user_id, status=status, limit=limit, cursor=cursor
        )
        items: list[SessionState] = []
        damaged = list(page.damaged)
        for state in page.items:
            try:
                items.append(self._open_state(state))
            except (EncryptionKeyError, CorruptRecordError) as exc:
                logger.warning(
                    "ai_session.list.unreadable", session_id=state.session_id, error=str(exc)
                )
                damaged.append(state.session_id)
        return replace(page, items=items, damaged=damaged)

    async def count_live_sessions(self, user_id: str) -> int:
        """How many live sessions ``user_id`` has."""
        return await self.inner.count_live_sessions(user_id)

    async def id_taken(self, session_id: str) -> bool:
        """Whether the inner store would refuse ``session_id`` as taken."""
        return await self.inner.id_taken(session_id)

    async def append_turns(
        self,
        session_id: str,
        turns: Sequence[SessionTurn],
        *,
        max_turns: int | None = None,
        patch: SessionPatch | None = None,
        key_guard: str | None = None,
        owner: str | None = None,
    ) -> AppendResult:
        """Seal the turns (and patch) in Python, then the inner store's atomic append.

        Guarded by the session's data key (:meth:`_guarded`); ``key_guard`` is the
        inner store's and is not taken here. ``owner`` is passed on (see
        :meth:`fork_session`).
        """
        _refuse_outer_guard(key_guard)
        result, entries, kept, _ = await self._append(
            session_id, turns, max_turns, patch, owner
        )
        # The turns are remembered opened with the reply's header fields, so this
        # process's next read decrypts none of them. An entry answers only its exact
        # sealed text under this key and turn id (see .opened): a turn another writer
        # popped and replaced is opened anew.
        record = self._open_record(result.record, taken=entries, written=kept)
        return AppendResult(record, result.closed_by_cap, result.first_seq)

    async def append_turns_counted(
        self, session_id: str, turns: Sequence[SessionTurn], *, max_turns: int | None = None
    ) -> AppendResult:
        """:meth:`append_turns` whose reply leaves the sealed header fields unopened.

        When the inner store guarded the write by the data key the turns were sealed
        under (so the reply's header is under that key) and the append did not close
        the session, the reply's ``metadata`` and ``variables`` are ``{}`` and its
        ``system_prompt`` None; ids, status, times and counters are as stored. The
        turns are remembered opened as by :meth:`append_turns`.
        """
        result, entries, kept, key = await self._append(
            session_id, turns, max_turns, None, None
        )
        if key is None or result.closed_by_cap or not self.inner.supports_key_guard:
            record = self._open_record(result.record, taken=entries, written=kept)
            return AppendResult(record, result.closed_by_cap, result.first_seq)
        if entries is not None:
            self._opened.added(session_id, entries, kept)
        stored = result.record
        state = header_without_private(stored.state)
        record = SessionRecord(state, stored.expires_at, stored.fork_seq, stored.last_seq)
        return AppendResult(record, False, result.first_seq)

    async def _append(
        self,
        session_id: str,
        turns: Sequence[SessionTurn],
        max_turns: int | None,
        patch: SessionPatch | None,
        owner: str | None,
    ) -> _Written:
        """The sealed append: the inner reply, the cache entries taken, the turns sealed
        (to remember opened) and the data key they were sealed under (None: plaintext)."""
        outgoing: list[SessionTurn] = check_turns(turns)
        if patch is not None:
            check_patch(patch)

        async def write(key: DataKey | None, guard: str | None) -> _Written:
            sealed: list[SessionTurn] = outgoing
            changes = patch
            kept: list[tuple[str, Entry]] = []
            # Taken before the write: a session dropped meanwhile (erased, deleted) is
            # not entered again after it (see OpenedTurns.added).
            entries = self._opened.of(session_id) if key is not None else None
            if key is not None:
                # Sealing a checked turn keeps it valid (its clear fields as they were,
                # ASCII content, empty containers), so the batch stays a CheckedTurns
                # and the inner store does not walk every field of the sealed copies.
                closed: list[SessionTurn] = []
                raw = key.raw
                for turn in outgoing:
                    one, body = seal_turn_opened(turn, key)
                    closed.append(one)
                    if entries is not None:  # the cache is on
                        kept.append((one.turn_id, (one.content, raw, body)))
                sealed = CheckedTurns(closed)
                if changes is not None:
                    changes = seal_patch(changes, key)
            elif changes is not None:
                refuse_key_field(changes.metadata)
            try:
                result = await self.inner.append_turns(
                    session_id,
                    sealed,
                    max_turns=max_turns,
                    patch=changes,
                    **_guard_arg(guard),
                    **self._owner_arg(owner),
                )
            except SessionNotFoundError:
                self._forget(session_id)  # gone: nothing of it is worth keeping
                raise
            return result, entries, kept, key

        return await self._guarded(session_id, write)

    async def update_session(
        self,
        session_id: str,
        patch: SessionPatch,
        *,
        key_guard: str | None = None,
        owner: str | None = None,
    ) -> SessionRecord:
        """Seal the patch, then the inner store's update (guarded as appends are)."""
        _refuse_outer_guard(key_guard)
        check_patch(patch)
        owned = self._owner_arg(owner)

        async def write(key: DataKey | None, guard: str | None) -> SessionRecord:
            if key is None:
                refuse_key_field(patch.metadata)
                return await self.inner.update_session(session_id, patch, **owned)
            sealed = seal_patch(patch, key)
            return await self.inner.update_session(
                session_id, sealed, **_guard_arg(guard), **owned
            )

        return self._open_record(await self._guarded(session_id, write))

    async def transition(
        self,
        session_id: str,
        to_status: SessionStatus,
        *,
        allowed_from: frozenset[SessionStatus],
    ) -> SessionRecord:
        """The inner transition, record opened; refused before it applies when the
        session's key is not at hand (``EncryptionKeyError``, as ``pop_turn``)."""
        check_id(session_id, "session_id")
        await self._key_for(session_id)  # refused now, not after the status has moved
        record = await self.inner.transition(session_id, to_status, allowed_from=allowed_from)
        return self._open_record(record)

    async def pop_turn(self, session_id: str) -> SessionTurn | None:
        """The popped turn, opened; refused before anything is popped when it cannot be."""
        check_id(session_id, "session_id")
        await self._key_for(session_id)  # EncryptionKeyError now, not after the turn is gone
        turn = await self.inner.pop_turn(session_id)
        if turn is None:
            return None
        return (await self._open_turns(session_id, [turn]))[0]

    async def clear_turns(self, session_id: str) -> int:
        """End every live turn (nothing to open)."""
        return await self.inner.clear_turns(session_id)

    # ------------------------------------------------------------- checkpoints
    async def create_checkpoint(
        self,
        session_id: str,
        *,
        checkpoint_id: str,
        metadata: dict[str, Any] | None = None,
        max_checkpoints: int | None = None,
        include_turns: bool = True,
        key_guard: str | None = None,
    ) -> tuple[SessionCheckpoint, list[str]]:
        """Snapshot through the inner store (its own metadata sealed), opened.

        Metadata sealed under the session's data key is guarded by it, as appends
        are (:meth:`_guarded`). On a backend without the guard the snapshot, which
        copies the header, is checked instead: when it names another key than the one
        the metadata was sealed with (the session was deleted and created again
        elsewhere), the checkpoint is deleted and made again, and finally deleted and
        refused (``DataKeyChangedError``), so that none is kept.
        """
        check_id(session_id, "session_id")  # the inner store's own checks, in its order
        check_id(checkpoint_id, "checkpoint_id")
        check_optional_count(max_checkpoints, "max_checkpoints", minimum=1)
        if metadata is not None:
            metadata = check_mapping(metadata, "metadata")
        _refuse_outer_guard(key_guard)

        async def snapshot(
            key: DataKey | None, guard: str | None
        ) -> tuple[SessionCheckpoint, list[str]]:
            sealed = metadata
            if key is not None and metadata:
                sealed = seal_checkpoint_metadata(metadata, key, checkpoint_id)
            return await self.inner.create_checkpoint(
                session_id,
                checkpoint_id=checkpoint_id,
                metadata=sealed,
                max_checkpoints=max_checkpoints,
                include_turns=include_turns,
                **_guard_arg(guard),
            )

        if not metadata:
            # Nothing to seal, but a process whose keys do not open the session must be
            # refused before the snapshot: the inner store would store it, move the
            # session's pointer and prune an old checkpoint, and only opening the reply
            # would fail (an outside audit). A key this process holds opens it already.
            if self._cached_key(session_id) is None:
                await self._stored_key(session_id)  # raises EncryptionKeyError by key id
            checkpoint, pruned = await snapshot(None, None)
        elif self.inner.supports_key_guard:
            checkpoint, pruned = await self._guarded(session_id, snapshot)
        else:
            checkpoint, pruned = await self._checked_snapshot(session_id, checkpoint_id, snapshot)
        return self._open_checkpoint(checkpoint), pruned

    async def _checked_snapshot(
        self,
        session_id: str,
        checkpoint_id: str,
        snapshot: Callable[
            [DataKey | None, str | None], Awaitable[tuple[SessionCheckpoint, list[str]]]
        ],
    ) -> tuple[SessionCheckpoint, list[str]]:
        """A checkpoint whose snapshot names the key its metadata was sealed with."""
        key = await self._key_for(session_id)
        for attempt in range(1, _GUARD_ATTEMPTS + 1):
            checkpoint, pruned = await snapshot(key, None)
            stored = self._key_of_state(checkpoint.state)
            if (stored.raw if stored else None) == (key.raw if key else None):
                return checkpoint, pruned
            logger.info("ai_session.encryption.data_key_changed", session_id=session_id)
            await self.inner.delete_checkpoint(checkpoint_id)
            if attempt < _GUARD_ATTEMPTS:
                key = (await self._stored_key(session_id))[1]
        raise DataKeyChangedError(session_id)

    async def restore_checkpoint(self, checkpoint_id: str) -> SessionState:
        """The inner restore, state opened; refused before anything changes when it cannot be.

        The checkpoint and its session must both open under this keyring (a missing or
        wrong key raises ``EncryptionKeyError`` with the session untouched).
        """
        check_id(checkpoint_id, "checkpoint_id")
        checkpoint = await self.inner.load_checkpoint(checkpoint_id)
        if checkpoint is not None:
            self._key_of_state(checkpoint.state)
            await self._key_for(checkpoint.session_id)
        return self._open_state(await self.inner.restore_checkpoint(checkpoint_id))

    async def list_checkpoint_headers(self, session_id: str) -> list[SessionCheckpoint]:
        """Checkpoint headers, opened."""
        headers = await self.inner.list_checkpoint_headers(session_id)
        return [self._open_checkpoint(c) for c in headers]

    # --------------------------------------------------------------- branches
    async def fork_session(
        self,
        source_id: str,
        branch: SessionState,
        *,
        from_checkpoint: str | None = None,
        max_branches: int | None = None,
        max_live_per_user: int | None = None,
        owner: str | None = None,
    ) -> SessionRecord:
        """Fork through the inner store: the branch shares the source's data key.

        The backend builds the branch's header from the source's stored header (or
        the checkpoint's) and copies the source's sealed turns, so the branch is under
        the key the source has at that moment whatever key this process holds; the
        fields taken from ``branch`` are sealed under the key held here.
        """
        check_id(source_id, "source_id")  # the inner store's own checks, in its order
        if from_checkpoint is not None:
            check_id(from_checkpoint, "from_checkpoint")
        check_caps(max_branches=max_branches, max_live_per_user=max_live_per_user)
        key = await self._key_for(source_id)
        if key is not None:
            check_state(branch, "branch")
            branch = seal_header(branch, key)
        record = await self.inner.fork_session(
            source_id,
            branch,
            from_checkpoint=from_checkpoint,
            max_branches=max_branches,
            max_live_per_user=max_live_per_user,
            **self._owner_arg(owner),
        )
        return self._open_record(await self._under_newest_key(record))

    def _owner_arg(self, owner: str | None) -> dict[str, str]:
        """``owner=owner`` for an inner store that takes it (a plugin's may not take it)."""
        if owner is None or not self.inner.supports_owner_guard:
            return {}
        return {"owner": owner}

    async def _under_newest_key(self, record: SessionRecord) -> SessionRecord:
        """A branch forked under an older key than the newest, re-wrapped under the newest.

        The branch takes its source's envelope. A rotation running meanwhile may have
        passed the branch's place already (ids are random) and left it under the old
        key, so ``keys retire`` refused after a finished rotation (found by an outside
        audit). Only the envelope is rewritten, as a rotation does; a backend without
        envelope access (memory, a plugin) keeps the branch as forked.
        """
        state = record.state
        envelope = envelope_of(state)
        if envelope is None or envelope_key_id(envelope) == self.keyring.newest.id:
            return record
        try:
            access = envelope_access(self)
        except SessionStoreError:
            return record
        key = self._header_key(state)
        assert key is not None  # the state holds an envelope
        fresh = key.rewrap(self.keyring).envelope
        await access.replace({state.session_id: {envelope: fresh}})
        metadata = dict(state.metadata)
        metadata[KEY_FIELD] = fresh
        return SessionRecord(
            replace(state, metadata=metadata), record.expires_at, record.fork_seq, record.last_seq
        )

    async def list_branches(self, session_id: str) -> list[SessionRecord]:
        """The source's branches, opened."""
        return [self._open_record(r) for r in await self.inner.list_branches(session_id)]

    # ---------------------------------------------------------------- sweeping
    async def find_expired(self, *, limit: int = 1000) -> list[str]:
        """Ids past their deadline (clear index fields)."""
        return await self.inner.find_expired(limit=limit)

    async def mark_expired(self, session_id: str) -> SessionRecord | None:
        """The inner mark, record opened (see :meth:`_expired_record`)."""
        record = await self.inner.mark_expired(session_id)
        return None if record is None else self._expired_record(record)

    def _expired_record(self, record: SessionRecord) -> SessionRecord:
        """The record of a session just marked EXPIRED, opened; without its sealed fields
        when this process's keys do not open it: the expiry is stored already, and what
        follows it (events, hooks) needs only ids and counters, so a sweeper lacking the
        key still announces it instead of failing after it (never retried, EXPIRED)."""
        try:
            return self._open_record(record)
        except EncryptionKeyError:
            state = header_without_private(record.state)
            return SessionRecord(state, record.expires_at, record.fork_seq, record.last_seq)

    async def mark_expired_batch(
        self, session_ids: Sequence[str], *, concurrency: int = BATCH_CONCURRENCY
    ) -> BatchOutcome[SessionRecord]:
        """The inner batched mark, records opened (a record that does not open is damaged)."""
        outcome = await self.inner.mark_expired_batch(session_ids, concurrency=concurrency)
        opened: BatchOutcome[SessionRecord] = BatchOutcome(
            damaged=list(outcome.damaged), failed=list(outcome.failed)
        )
        for record in outcome.done:
            try:
                opened.done.append(self._expired_record(record))
            except Exception as exc:  # a key error must not hide the expiry
                opened.failed.append((record.state.session_id, exc))
        return opened

    async def purge_batch(
        self,
        session_ids: Sequence[str],
        *,
        tombstone_until: datetime,
        concurrency: int = BATCH_CONCURRENCY,
    ) -> BatchOutcome[str]:
        """The inner batched purge."""
        for session_id in session_ids:
            self._forget(session_id)
        return await self.inner.purge_batch(
            session_ids, tombstone_until=tombstone_until, concurrency=concurrency
        )

    async def find_purgeable(self, *, older_than: datetime, limit: int = 1000) -> list[str]:
        """Ended ids to purge."""
        return await self.inner.find_purgeable(older_than=older_than, limit=limit)

    async def quarantine(self, session_id: str) -> None:
        """The inner quarantine."""
        await self.inner.quarantine(session_id)

    async def purge(self, session_id: str, *, tombstone_until: datetime) -> bool:
        """The inner purge; the key is forgotten."""
        self._forget(session_id)
        return await self.inner.purge(session_id, tombstone_until=tombstone_until)

    # ----------------------------------------------------------------- erasure
    async def erase_session(self, session_id: str) -> bool:
        """Erase through the inner store (no key needed); the key is forgotten."""
        self._forget(session_id)
        return await self.inner.erase_session(session_id)

    async def forget_user(self, user_id: str, session_ids: Sequence[str]) -> None:
        """The inner store's ``forget_user``."""
        await self.inner.forget_user(user_id, session_ids)

    async def erase_user(self, user_id: str, *, batch: int = 100) -> UserErasure:
        """Erase on the inner store: needs no key, so sessions under a lost key go too."""
        erasure = await self.inner.erase_user(user_id, batch=batch)
        for session_id in erasure.sessions:
            self._forget(session_id)
        return erasure

    def __repr__(self) -> str:
        return f"EncryptedSessionStore({self.inner!r}, keys={list(self.keyring.ids)!r})"


#: What an append's write step gives back: the inner store's answer, the session's cache
#: entries taken before it, and the entries of the turns it sealed.
_Written = tuple[
    AppendResult, dict[str, Entry] | None, list[tuple[str, Entry]], DataKey | None
]


def _guard_arg(guard: str | None) -> dict[str, str]:
    """``key_guard=guard`` for the inner store, nothing when unguarded (a backend without
    ``supports_key_guard`` may not take the argument)."""
    return {} if guard is None else {"key_guard": guard}


def _refuse_outer_guard(key_guard: str | None) -> None:
    """The encrypted store guards its own writes; a caller's ``key_guard`` is refused."""
    if key_guard is not None:
        raise SessionValidationError("key_guard", "is set by the encrypted store itself")


def _reuses_stored(inner: type[SessionStore]) -> bool:
    """Whether a store of class ``inner`` is read through its ``load_reusing``.

    Only when the class that overrides ``load_reusing`` is also the one that defines
    ``load``: a subclass that changes ``load`` alone (a wrapper, a test double) is
    read through its ``load``.
    """
    reusing = _definer(inner, "load_reusing")
    return reusing is not SessionStore and reusing is _definer(inner, "load")


def _definer(cls: type, name: str) -> type | None:
    """The class along ``cls``'s MRO whose own namespace defines ``name``."""
    return next((c for c in cls.__mro__ if name in vars(c)), None)


class _StoredOffer:
    """The encrypted store's offer to a backend's whole read (see ``reread_stored``).

    Called with the sealed header and the stored texts (possibly more than once: a
    backend retries a read on a fresh connection). It answers from the session's
    stored run or declines (None), and never raises: anything unexpected declines,
    and the usual path then reads, opens and names it.
    """

    __slots__ = ("_session_id", "_store", "answered", "key", "stored")

    def __init__(self, store: EncryptedSessionStore, session_id: str) -> None:
        self._store = store
        self._session_id = session_id
        self.key: DataKey | None = None
        self.stored: StoredTurns | None = None
        # The list of opened turns handed back (the state's own ``turns`` when the
        # backend used it: an earlier attempt's answer is never taken for this one).
        self.answered: list[SessionTurn] | None = None

    def __call__(self, header: SessionState, stored: StoredTurns) -> list[SessionTurn] | None:
        self.key, self.stored, self.answered = None, None, None
        try:
            key = self._store._header_key(header)
            if key is None:
                return None
            self.key, self.stored = key, stored
            turns = self._store._reused_turns(self._session_id, key, stored)
        except Exception:  # the usual path names it
            return None
        self.answered = turns
        return turns
