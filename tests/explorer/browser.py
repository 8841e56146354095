"""Real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) and a live server.

Outside CI a missing browser or Selenium skips the browser tests; with ``CI=true`` it
fails them (``.ci/run`` installs both). Selenium Manager is never asked to download
anything: the browser and driver paths are given and ``SE_OFFLINE`` is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.explorer import ExplorerSettings, create_app
from tests.services import IN_CI

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


def artifacts_dir() -> Path:
    """Where screenshots go: ``$EXPLORER_ARTIFACTS`` or a directory under the temp dir."""
    chosen = os.environ.get("EXPLORER_ARTIFACTS")
    path = Path(chosen) if chosen else Path(tempfile.gettempdir()) / "lexigram-explorer-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_browser() -> None:
    """Skip (or, in CI, fail) when Chromium, its driver or Selenium is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if not missing:
        return
    message = f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver)"
    if IN_CI:
        pytest.fail(message + " (CI=true: browser tests must not skip)")
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium WebDriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1360,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_server(config: SessionConfig, settings: ExplorerSettings) -> Iterator[str]:
    """uvicorn serving the explorer over ``config``'s store in a thread; yields its URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(config, settings), host="127.0.0.1", port=port, log_level="warning",
        lifespan="on",
    ))
    thread = threading.Thread(target=server.run, name="explorer-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the explorer did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
