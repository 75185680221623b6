"""The web page in a real browser (Debian's headless Chromium through selenium) against the real system: Triton
serving the ensemble, a streams worker pushing refreshed lists through Kafka, and the API.

Load the page, give the key, pick a user, click an item and see it leave the list when the pushed list arrives,
dislike another, switch to anonymous. Screenshots go to .streamrec/test-artifacts/ui/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.serving.conftest import data_root, export_root, feast_repo, fresh_repository, serving_tmp  # noqa: F401
from tests.streams.conftest import worker_factory  # noqa: F401
from tests.ui.conftest import serve

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / ".streamrec" / "test-artifacts" / "ui"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
KEY = "browser-test-key-0123456789abcdef"
WAIT_S = 90


def _browser_missing() -> str | None:
    if CHROMIUM is None:
        return "browser tests skipped: chromium not found (apt-get install chromium chromium-driver)"
    if CHROMEDRIVER is None:
        return "browser tests skipped: chromedriver not found (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "browser tests skipped: selenium not installed (pip install selenium)"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))]


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(
    stack: Any,
    fresh_repository: Path,  # noqa: F811
    triton: Any,
    export_root: Path,  # noqa: F811
    feast_repo: tuple[Path, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    """The test Triton serving the tiny export (Feast: the test repository; Bloom: the stack's Valkey)."""
    from serving.repository import ModelControl, prepare, remove
    from streamrec.settings import BloomSettings, FeastSettings

    repo, project = feast_repo
    feast = FeastSettings(repo=repo, project=project)
    monkeypatch.setenv("STREAMREC_PATHS_EXPORT_ROOT", str(export_root))
    control = ModelControl(triton.http_url)
    result = prepare(
        triton.model_repository,
        export_root,
        ensemble=triton.ensemble_model,
        bloom=BloomSettings(),
        feast=feast,
        redis_url=stack.redis.effective_url,
        control=control,
    )
    control.close()
    assert result.loaded
    yield feast
    control = ModelControl(triton.http_url)
    remove(triton.model_repository, triton.ensemble_model, control)
    control.close()


@pytest.fixture
def page_url(
    served: Any,
    worker_factory: Any,  # noqa: F811
    data_root: Path,  # noqa: F811
    export_root: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A worker that refreshes lists through Triton, and the API reading its topics; yields the page's URL."""
    from serving.api.app import create_app
    from serving.api.settings import UiSettings
    from serving.settings import ApiSettings, ServingSettings
    from streamrec.security import hash_api_key

    catalog = data_root / "items.parquet"
    worker = worker_factory(
        partitions=1,
        extra_env={
            "STREAMREC_STREAMS_RECS_SOURCE": "pipeline",
            "STREAMREC_STREAMS_RECS_DEBOUNCE_MS": "200",
            "STREAMREC_STREAMS_CATALOG_PATH": str(catalog),
            "STREAMREC_PATHS_EXPORT_ROOT": str(export_root),
        },
    )
    worker.start()
    worker.wait_idle(partitions=1)
    monkeypatch.setenv("STREAMREC_KAFKA_INTERACTIONS_TOPIC", worker.topics["interactions"])
    monkeypatch.setenv("STREAMREC_KAFKA_RECOMMENDATIONS_TOPIC", worker.topics["recommendations"])
    app = create_app(
        ApiSettings(api_keys=[SecretStr(hash_api_key(KEY))]),
        ServingSettings(),
        feast=served,
        ui_settings=UiSettings(catalog_path=catalog),
    )
    with serve(app) as url:
        yield f"{url}/ui"


def shot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def shown_items(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [card.get_attribute("data-item-id") for card in driver.find_elements(By.CSS_SELECTOR, "#cards .card")]


def pushed(driver: Any) -> int:
    from selenium.webdriver.common.by import By

    return int(driver.find_element(By.ID, "cards").get_attribute("data-pushed") or 0)


def test_pick_a_user_click_and_dislike_items_watch_pushed_lists_then_go_anonymous(browser: Any, page_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    browser.get(page_url)
    # The key is asked for once, in a dialog, and kept in session storage.
    key_input = browser.find_element(By.ID, "key-input")
    wait.until(lambda d: key_input.is_displayed())
    shot(browser, "01-key-dialog")
    key_input.send_keys(KEY + "\n")
    wait.until(lambda d: len(shown_items(d)) >= 5)
    assert browser.execute_script("return sessionStorage.getItem('streamrec.apiKey')") == KEY
    users = Select(browser.find_element(By.ID, "user"))
    known = [o.get_attribute("value") for o in users.options][:-2]
    assert known and users.first_selected_option.get_attribute("value") == known[0]
    # Pick the second known user (by keyboard-operable select), wait for the live stream.
    users.select_by_value(known[1])
    wait.until(lambda d: d.find_element(By.ID, "list-title").text.endswith(f"user {known[1]}"))
    wait.until(lambda d: d.find_element(By.ID, "live-status").get_attribute("data-state") == "ok")
    before = shown_items(browser)
    assert "score" in browser.find_element(By.CSS_SELECTOR, "#cards .card .score").text
    assert browser.find_elements(By.CSS_SELECTOR, "#timings tbody tr")  # per-stage timings of the request
    shot(browser, "02-user-picked")

    # Every control has a label; every button has a name.
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select')].filter(e => !e.labels.length).map(e => e.id)"
    )
    assert unlabelled == []
    nameless = browser.execute_script(
        "return [...document.querySelectorAll('button')].filter(b => !(b.getAttribute('aria-label') || "
        "b.textContent.trim())).length"
    )
    assert nameless == 0

    # Click the first item, by keyboard: the worker marks it seen, refreshes through Triton, and the pushed list
    # lacks it.
    first = before[0]
    click = browser.find_element(By.CSS_SELECTOR, f'.card[data-item-id="{first}"] button[data-action="click"]')
    click.send_keys(Keys.ENTER)
    wait.until(lambda d: pushed(d) >= 1 and first not in shown_items(d))
    delay = browser.find_element(By.ID, "last-delay").text
    assert delay.endswith(" ms") and int(delay.split()[0]) > 0
    assert "arrived" in browser.find_element(By.ID, "list-meta").text
    assert browser.find_elements(By.CSS_SELECTOR, "#delay-chart rect")
    shot(browser, "03-clicked-item-left")

    # Dislike another item: it leaves as well, a second delay is measured.
    second = shown_items(browser)[0]
    button = browser.find_element(By.CSS_SELECTOR, f'.card[data-item-id="{second}"] button[data-action="dislike"]')
    button.click()
    wait.until(lambda d: pushed(d) >= 2 and second not in shown_items(d) and first not in shown_items(d))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#delay-chart rect")) >= 2)
    shot(browser, "04-disliked-item-left")
    assert browser.find_element(By.ID, "fallback").is_displayed() is False

    # Anonymous: a list without a user, no live stream, event buttons disabled.
    users.select_by_value("__anonymous__")
    wait.until(lambda d: d.find_element(By.ID, "list-title").text.endswith("anonymous"))
    wait.until(lambda d: len(shown_items(d)) >= 1)
    assert "Anonymous" in browser.find_element(By.ID, "live-status").text
    buttons = browser.find_elements(By.CSS_SELECTOR, "#cards .card button")
    assert buttons and all(not b.is_enabled() for b in buttons)
    shot(browser, "05-anonymous")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
