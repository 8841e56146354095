"""Start and stop a throw-away 3-master Redis Cluster on loopback ports 7101-7106.

Used by the ``redis_cluster`` conformance backend and the Redis store tests. The
nodes run with ``--save "" --appendonly no`` in a temporary directory that is
removed when the cluster is stopped. A port set is taken under a machine-wide file
lock, so two test sessions running at the same time never fight over one cluster.
"""

from __future__ import annotations

import atexit
import fcntl
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from tests.services import IN_CI

__all__ = [
    "CLUSTER_PORTS",
    "PORT_SETS",
    "LocalCluster",
    "port_lock",
    "release_lock",
    "require_redis_binaries",
    "shared_cluster",
    "start_cluster",
    "start_server",
    "stop_server",
]

CLUSTER_PORTS = (7101, 7102, 7103)
_START_TIMEOUT_S = 30.0


def require_redis_binaries() -> None:
    """Skip (fail with CI=true) when ``redis-server``/``redis-cli`` are not installed."""
    missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not found on PATH: cannot start a local Redis"
    if IN_CI:
        pytest.fail(message + " (CI=true: tests of real backends must not skip)")
    pytest.skip(message)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _cli(port: int, *args: str, timeout: float = 10.0) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout + done.stderr


_OUR_DIR_MARK = "lexigram-redis-"


def _reclaim(port: int) -> None:
    """Stop a server left on ``port`` by an earlier, killed test run (ours only).

    Only called while holding the port's lock, so the server cannot belong to a
    test session that is still running.
    """
    if not _port_open(port):
        return
    reply = _cli(port, "config", "get", "dir", timeout=2)
    if _OUR_DIR_MARK not in reply:
        raise RuntimeError(f"port {port} is in use by something else; cannot start a test Redis")
    stop_server(port)


def start_server(port: int, workdir: Path, *extra: str) -> None:
    """Start one daemonized ``redis-server`` on 127.0.0.1:``port`` and wait until it answers."""
    _reclaim(port)
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--dir",
            str(workdir),
            "--pidfile",
            str(workdir / f"redis-{port}.pid"),
            "--logfile",
            str(workdir / f"redis-{port}.log"),
            "--save",
            "",
            "--appendonly",
            "no",
            *extra,
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "PONG" in _cli(port, "ping", timeout=2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not answer PING within 10 s")


def stop_server(port: int) -> None:
    """Shut down the server on ``port`` (no save) and wait until the port is closed."""
    _cli(port, "shutdown", "nosave", timeout=5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _port_open(port):
        time.sleep(0.05)


@dataclass
class LocalCluster:
    """A running local cluster; :meth:`stop` shuts every node down."""

    ports: tuple[int, ...]
    workdir: Path
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        """A ``redis://`` URL of one node (the client discovers the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def stop(self) -> None:
        """Shut every node down and remove the working directory (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        for port in self.ports:
            stop_server(port)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_cluster(ports: tuple[int, ...] = CLUSTER_PORTS) -> LocalCluster:
    """Start ``len(ports)`` masters, join them into a cluster, wait for ``cluster_state:ok``."""
    workdir = Path(tempfile.mkdtemp(prefix=_OUR_DIR_MARK + "cluster-"))
    cluster = LocalCluster(ports=ports, workdir=workdir)
    try:
        for port in ports:
            start_server(
                port,
                workdir / str(port),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(workdir / str(port) / "nodes.conf"),
                "--cluster-node-timeout",
                "5000",
            )
        try:
            created = subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"redis-cli --cluster create hung; {_logs(cluster)}") from exc
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {created.stdout}{created.stderr}"
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in _cli(p, "cluster", "info", timeout=2) for p in ports):
                return cluster
            time.sleep(0.1)
        raise RuntimeError(f"cluster on {ports} did not reach cluster_state:ok; {_logs(cluster)}")
    except BaseException:
        cluster.stop()
        raise


def _logs(cluster: LocalCluster) -> str:
    """The last lines of every node's log (for error messages)."""
    parts = []
    for port in cluster.ports:
        log = cluster.workdir / str(port) / f"redis-{port}.log"
        lines = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        parts.append(f"node {port}:\n" + "\n".join(lines))
    return "\n".join(parts)


_SHARED: LocalCluster | None = None
#: Port sets a cluster may use; two test sessions running at once (e.g. two
#: developers' runs on one machine) each take a free set instead of stopping the
#: other's nodes.
PORT_SETS = (CLUSTER_PORTS, (7104, 7105, 7106))
_HELD: list[IO[str]] = []


def port_lock(name: str, *, wait_s: float) -> IO[str] | None:
    """Take the machine-wide lock ``name`` (held until this process exits), or None."""
    handle = open(Path(tempfile.gettempdir()) / f"lexigram-redis-{name}.lock", "w")  # noqa: SIM115
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                return None
            time.sleep(0.2)


def release_lock(handle: IO[str]) -> None:
    """Give a lock of :func:`port_lock` back."""
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def shared_cluster() -> LocalCluster:
    """The cluster of this test session, started on first use and stopped at exit."""
    global _SHARED
    if _SHARED is not None and not _SHARED.stopped:
        return _SHARED
    require_redis_binaries()
    for attempt_wait in (0.0, 300.0):
        for ports in PORT_SETS:
            handle = port_lock(f"cluster-{ports[0]}", wait_s=attempt_wait)
            if handle is None:
                continue
            _HELD.append(handle)
            _SHARED = start_cluster(ports)
            atexit.register(_SHARED.stop)
            return _SHARED
    raise RuntimeError(f"every Redis Cluster port set {PORT_SETS} stayed busy for 5 minutes")
