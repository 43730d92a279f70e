"""Fixtures of the example apps' tests: the apps on disk, a real server, a real browser.

The browser is Debian's Chromium (packages ``chromium`` and ``chromium-driver``;
``tests/system-packages.sh`` installs them), driven by Selenium through the system's
chromedriver: nothing is downloaded. ``DEPOT_TEST_CHROMIUM`` and
``DEPOT_TEST_CHROMEDRIVER`` name other binaries. A browser that cannot start
fails the test that needs it, saying why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.examples.apps import (
    EXAMPLES,
    RunningApp,
    app_environment,
    example_command,
    serving,
)

CHROMIUM = os.environ.get("DEPOT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DEPOT_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = (
    "Run sh tests/system-packages.sh (as root on Debian: it installs chromium and "
    "chromium-driver), or install Chromium and its chromedriver."
)


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The apps import ``filebox`` from examples/, as ``python examples/<app>.py`` does."""
    monkeypatch.syspath_prepend(str(EXAMPLES))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Where the app under test keeps its database and local files."""
    return tmp_path / "data"


@pytest.fixture
def settings(data_dir: Path) -> Any:
    """The apps' settings with only FILEBOX_DATA set: local storage and SQLite."""
    from filebox.settings import from_env

    return from_env({"FILEBOX_DATA": str(data_dir)})


@pytest.fixture
def flask_server(tmp_path: Path, data_dir: Path) -> Iterator[RunningApp]:
    """``python examples/flask_app.py`` on a free port, with its data under tmp_path."""
    env = app_environment(data_dir)
    with serving(example_command("flask_app.py"), env, tmp_path / "flask_app.log") as url:
        yield RunningApp(url.rstrip("/"), data_dir)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def chromium(tmp_path: Path, downloads: Path) -> Iterator[Any]:
    """A headless Chromium driven by Selenium, saving downloads in ``downloads``."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.fail(f"selenium is not installed ({exc}): pip install -e '.[test]'")
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            pytest.fail(f"the browser test needs {binary}, which is not installed. {INSTALL_HINT}")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-background-networking",  # no update checks, no calls home
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",  # containers have a small /dev/shm
        "--window-size=1100,640",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--lang=en-US",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
            # Several downloads from one page: allowed without asking.
            "profile.default_content_setting_values.automatic_downloads": 1,
        },
    )
    # Passing the driver's path keeps Selenium Manager from looking for (and
    # downloading) a driver or a browser.
    log = tmp_path / "chromedriver.log"
    service = Service(CHROMEDRIVER, log_output=str(log))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as exc:
        reason = (exc.msg or type(exc).__name__).strip()
        pytest.fail(
            f"Chromium ({CHROMIUM}) did not start: {reason}\n{INSTALL_HINT} "
            f"chromedriver's log: {log}",
            pytrace=False,
        )
    except OSError as exc:
        pytest.fail(f"chromedriver ({CHROMEDRIVER}) did not start: {exc}", pytrace=False)
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()
