"""``manager.export_user`` names each branch's fork point (``ExportedUserSession.fork_seq``),
as the CLI's export document does: a document built from the API re-imports with it."""

from __future__ import annotations

from ..checkpointing.harness import EnvFactory


async def test_export_user_names_each_branchs_fork_point(make_env: EnvFactory) -> None:
    env = await make_env()
    manager = env.manager
    main = (await manager.create("alice")).session_id
    await manager.add_message(main, "user", "t1")
    await manager.add_message(main, "assistant", "t2")
    cp = await env.checkpoints.create(await manager.get_state(main))
    await manager.add_message(main, "user", "t3")
    early = await env.branches.fork(main, "early", from_checkpoint=cp.checkpoint_id)
    late = await env.branches.fork(main, "late")
    await manager.add_message(early.session_id, "user", "own turn")
    exported = await manager.export_user("alice")
    forks = {s.state.session_id: s.fork_seq for s in exported.sessions}
    assert forks == {main: None, early.session_id: 2, late.session_id: 3}
