"""The ops web page in a real browser: `tiering serve` in a subprocess on loopback, headless Chromium via selenium.

Signs in with the token, searches a customer and sees the tier card, browses a tier page by page.
The browser fixture (tests/conftest.py) skips without Chromium, or fails when TIERING_REQUIRE_SERVICES=1 (CI).
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_serve import AS_OF_1, AS_OF_2, make_scores
from tiering.store import ScoresStore

TOKEN = "browser-test-token-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`tiering serve` on a free loopback port over a store of 3,000 customers at two scoring dates."""
    work = tmp_path_factory.mktemp("serve-browser")
    first = make_scores(3_000, AS_OF_1, seed=1)
    second = make_scores(3_000, AS_OF_2, seed=2, start=200, previous=first)
    store = ScoresStore(f"sqlite:///{work}/scores.db")
    store.write_batch(first)
    store.write_batch(second)
    (work / "config.yaml").write_text(f"store:\n  url: sqlite:///{work}/scores.db\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"TIERING_API_TOKEN": TOKEN}
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "tiering", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--config", str(work / "config.yaml"), "--no-access-log"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):  # readiness wait, up to about a minute on a busy machine
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{base}/api/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.1)
    if proc.poll() is not None:
        log.close()
        pytest.fail(f"tiering serve exited with {proc.returncode}: {(work / 'server.log').read_text()[-2000:]}")
    yield base, second
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_search_a_customer_and_browse_a_tier(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    base, scores = server
    wait = WebDriverWait(browser, 30)
    browser.get(base + "/")
    wait.until(EC.presence_of_element_located((By.ID, "token")))  # redirected to sign-in
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    wait.until(EC.presence_of_element_located((By.ID, "tier-mix-chart")))
    assert browser.find_elements(By.ID, "migration-chart")
    assert "Tiers as of 2025-12-31" in browser.find_element(By.TAG_NAME, "h1").text
    shots = Path(os.environ.get("TIERING_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / "ops-home.png"))

    row = scores.set_index("customer_id").loc["C0000777"]
    box = browser.find_element(By.ID, "customer-search")
    box.clear()
    box.send_keys("C0000777")
    browser.find_element(By.ID, "search-button").click()
    badge = wait.until(EC.presence_of_element_located((By.ID, "tier-badge")))
    from tiering.models.tiers import TIER_BY_NAME

    assert badge.get_attribute("data-tier") == row["tier"] and badge.text == TIER_BY_NAME[row["tier"]].label
    assert row["tier_reason"] in browser.find_element(By.ID, "tier-reason").text
    assert TIER_BY_NAME[row["tier"]].action in browser.find_element(By.ID, "tier-action").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")) == 2
    interval = browser.find_element(By.ID, "clv-interval").text
    assert interval == f"CLV 80% interval: {row['clv_p10']:,.2f} - {row['clv_p90']:,.2f}"
    browser.save_screenshot(str(shots / "ops-customer.png"))

    # an unknown id says so on the page
    box = browser.find_element(By.ID, "customer-search")
    box.clear()
    box.send_keys("C9999999")
    browser.find_element(By.ID, "search-button").click()
    assert "is not in the scoring batch" in wait.until(EC.presence_of_element_located((By.ID, "customer-error"))).text

    # browse a tier: first page, then the next; the CSV link carries the same filter
    browser.get(base + "/tiers/value")
    total = int((scores["tier"] == "value").sum())
    assert f"{total:,} members as of 2025-12-31" in wait.until(EC.presence_of_element_located((By.ID, "tier-total"))).text
    first_rows = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#members tbody td:nth-child(2)")]
    browser.find_element(By.ID, "next-page").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "page-info"), "Page 2 of"))
    second_rows = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#members tbody td:nth-child(2)")]
    want = scores[scores["tier"] == "value"].sort_values(["clv", "customer_id"], ascending=[False, True])["customer_id"].tolist()
    assert first_rows + second_rows == want[:100]
    assert "cursor=" in browser.current_url  # "next" went by keyset
    browser.find_element(By.ID, "next-page").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "page-info"), "Page 3 of"))
    third_rows = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#members tbody td:nth-child(2)")]
    assert third_rows == want[100:150]
    browser.find_element(By.ID, "prev-page").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "page-info"), "Page 2 of"))
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#members tbody td:nth-child(2)")] == second_rows
    assert browser.find_element(By.ID, "export-csv").get_attribute("href") == f"{base}/api/tiers/value?format=csv"
    browser.save_screenshot(str(shots / "ops-tier.png"))
