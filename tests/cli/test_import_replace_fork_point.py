"""``import --replace`` of a branch whose stored fork point differs from the document's
says so (a regression audit: the replace kept the stored fork point without a word,
and the branch could then not be merged)."""

from __future__ import annotations

import orjson

from lexigram.ai.session import BranchManager, InMemorySessionStore, SessionConfig
from lexigram.ai.session.cli.importing import import_document
from lexigram.ai.session.cli.transfer import dump_document, session_to_dict
from lexigram.ai.session.manager.core import SessionManagerImpl


async def test_a_replace_names_the_branches_whose_fork_point_it_kept() -> None:
    config = SessionConfig(auto_checkpoint_interval=None, session_ttl=0)
    source = SessionManagerImpl(InMemorySessionStore(), config)
    main = (await source.create("alice")).session_id
    await source.add_message(main, "user", "t1")
    branch = await BranchManager(source).fork(main, "b")
    await source.add_message(branch.session_id, "user", "own")
    exported = await source.export_user("alice")
    entries = [
        session_to_dict(s.state, s.checkpoints, fork_seq=s.fork_seq) for s in exported.sessions
    ]
    with_fork = dump_document(entries)
    without = orjson.loads(with_fork)
    for entry in without["sessions"]:
        entry.pop("fork_seq", None)  # as an export of an earlier release

    target = InMemorySessionStore()
    first = await import_document(target, orjson.dumps(without))
    assert sorted(first.imported) == sorted([main, branch.session_id])
    again = await import_document(target, with_fork, replace_existing=True)
    assert sorted(again.replaced) == sorted([main, branch.session_id])
    assert again.fork_points_kept == [branch.session_id]
    # Imported whole with its fork point, nothing is named.
    fresh = await import_document(InMemorySessionStore(), with_fork)
    assert fresh.fork_points_kept == []
