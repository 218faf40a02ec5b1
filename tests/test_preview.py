"""The emulator's preview page: its state endpoint, ``ensure_preview()`` and, in a real
headless Chromium, what the page draws as an activity moves.

Browser tests are marked ``browser``. They skip when Debian's ``chromium`` or
``chromedriver`` is missing, except in CI (``CI=true``), where a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from activitysmith_track import Action, LiveActivity, Metric, live_activity
from activitysmith_track import _preview as preview_module
from activitysmith_track._config import EMULATOR_API_KEY, Settings
from activitysmith_track._preview import ensure_preview, with_preview
from activitysmith_track.emulator import Emulator

KEY = "ask_test"
AUTH = {"Authorization": f"Bearer {KEY}"}


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    # The page is not about the account's limits; tests start many activities on one emulator.
    with Emulator(KEY, fast=True) as emulator:
        yield emulator


@pytest.fixture
def fresh(emu: Emulator) -> Emulator:
    emu.reset()
    return emu


def put(emu: Emulator, key: str, content_state: dict[str, Any]) -> requests.Response:
    return requests.put(
        f"{emu.base_url}/live-activity/stream/{key}",
        json={"content_state": content_state},
        headers=AUTH,
        timeout=5,
    )


def delete(emu: Emulator, key: str, content_state: dict[str, Any] | None = None) -> None:
    body = None if content_state is None else {"content_state": content_state}
    answer = requests.delete(
        f"{emu.base_url}/live-activity/stream/{key}", json=body, headers=AUTH, timeout=5
    )
    assert answer.status_code == 200, answer.text


def page_state(emu: Emulator, query: str = "") -> dict[str, Any]:
    answer = requests.get(f"{emu.url}_emulator/state{query}", timeout=40)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


def only_activity(state: dict[str, Any]) -> dict[str, Any]:
    (activity,) = state["activities"]
    result: dict[str, Any] = activity
    return result


# -- the state endpoint ----------------------------------------------------------------------


def test_state_lists_activities_newest_first_with_their_history(fresh: Emulator) -> None:
    start = {"title": "Backup", "type": "segmented_progress", "number_of_steps": 3}
    assert put(fresh, "first", {**start, "current_step": 1}).status_code == 200
    assert put(fresh, "second", {"title": "Import", "type": "progress", "percentage": 5}).ok
    assert put(fresh, "first", {"title": "Backup", "current_step": 2}).ok

    state = page_state(fresh)

    assert [a["stream_key"] for a in state["activities"]] == ["second", "first"]
    backup = state["activities"][1]
    assert backup["type"] == "segmented_progress"
    assert backup["status"] == "live"
    assert backup["state"]["current_step"] == 2
    assert backup["state"]["number_of_steps"] == 3  # carried over from the start
    assert [(e["endpoint"], e["status"], e["operation"]) for e in backup["history"]] == [
        ("PUT /live-activity/stream/first", 200, "started"),
        ("PUT /live-activity/stream/first", 200, "updated"),
    ]
    assert '"current_step": 2' in backup["history"][1]["sent"]


def test_refused_request_shows_in_history_with_its_reason(fresh: Emulator) -> None:
    start = {"title": "Backup", "type": "segmented_progress", "number_of_steps": 3}
    assert put(fresh, "k", {**start, "current_step": 1}).ok
    refused = put(fresh, "k", {"title": "Backup", "current_step": 9})
    assert refused.status_code == 400

    entry = only_activity(page_state(fresh))["history"][-1]

    assert entry["status"] == 400
    assert entry["refused"] is True
    assert refused.json()["message"] in entry["summary"]


def test_request_log_includes_requests_that_belong_to_no_activity(fresh: Emulator) -> None:
    answer = put(fresh, "k", {"title": "No type"})
    assert answer.status_code == 400

    state = page_state(fresh)

    assert state["activities"] == []
    (logged,) = state["requests"]
    assert logged["path"] == "/live-activity/stream/k"
    assert logged["refused"] is True
    assert "type is required" in logged["summary"]


def test_version_grows_with_every_request_and_reset(fresh: Emulator) -> None:
    before = page_state(fresh)["version"]
    put(fresh, "k", {"title": "Import", "type": "progress", "percentage": 5})
    after_put = page_state(fresh)["version"]
    fresh.reset()
    after_reset = page_state(fresh)["version"]
    assert before < after_put < after_reset


def test_long_poll_answers_as_soon_as_the_state_changes(fresh: Emulator) -> None:
    version = page_state(fresh)["version"]
    answers: list[dict[str, Any]] = []
    poll = threading.Thread(
        target=lambda: answers.append(page_state(fresh, f"?after={version}&wait=20"))
    )
    started = time.monotonic()
    poll.start()
    put(fresh, "k", {"title": "Import", "type": "progress", "percentage": 5})
    poll.join(10)

    assert not poll.is_alive()
    assert time.monotonic() - started < 10
    assert answers[0]["version"] > version
    assert only_activity(answers[0])["stream_key"] == "k"


def test_long_poll_answers_unchanged_state_when_the_wait_ends(fresh: Emulator) -> None:
    version = page_state(fresh)["version"]
    assert page_state(fresh, f"?after={version}&wait=0.05")["version"] == version


@pytest.mark.parametrize("query", ["?after=x", "?after=1&wait=soon"])
def test_long_poll_refuses_bad_parameters(emu: Emulator, query: str) -> None:
    answer = requests.get(f"{emu.url}_emulator/state{query}", timeout=5)
    assert answer.status_code == 400
    assert "after must be an int" in answer.json()["message"]


def test_stop_releases_a_waiting_long_poll_promptly() -> None:
    emulator = Emulator().start()
    url = f"{emulator.url}_emulator/state?after=0&wait=25"
    failures: list[BaseException] = []

    def wait() -> None:
        try:
            requests.get(url, timeout=30)
        except requests.RequestException as exc:  # the stop closed the connection
            failures.append(exc)

    poll = threading.Thread(target=wait)
    poll.start()
    started = time.monotonic()
    emulator.stop()
    poll.join(5)

    assert time.monotonic() - started < 3
    assert not poll.is_alive()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("", "text/html"),
        ("index.html", "text/html"),
        ("static/preview.js", "text/javascript"),
        ("static/preview.css", "text/css"),
    ],
)
def test_page_and_its_files_are_served_without_a_key(
    emu: Emulator, path: str, content_type: str
) -> None:
    answer = requests.get(emu.url + path, timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith(content_type)
    assert answer.content


@pytest.mark.parametrize(
    "path", ["static/missing.js", "static/..%2f_preview.py", "static/_preview.py", "nowhere"]
)
def test_unknown_page_paths_are_404(emu: Emulator, path: str) -> None:
    assert requests.get(emu.url + path, timeout=5).status_code == 404


def test_favicon_is_a_real_icon(emu: Emulator) -> None:
    answer = requests.get(emu.url + "favicon.ico", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "image/x-icon"
    data = answer.content
    assert data[:4] == b"\x00\x00\x01\x00"  # ICO header: reserved 0, type 1 (icon)
    count = int.from_bytes(data[4:6], "little")
    sizes = {data[6 + 16 * i] for i in range(count)}
    assert sizes == {16, 32}
    assert '<link rel="icon" href="/favicon.ico">' in requests.get(emu.url, timeout=5).text


def test_page_references_no_remote_resources(emu: Emulator) -> None:
    for path in ("", "static/preview.js", "static/preview.css"):
        text = requests.get(emu.url + path, timeout=5).text
        assert "http://" not in text.replace("http://127.0.0.1", "")
        assert "https://" not in text


# -- timers and dismissal, on a clock the test moves ------------------------------------------


@pytest.fixture
def clocked() -> Iterator[tuple[Emulator, FakeClock]]:
    clock = FakeClock()
    with Emulator(KEY, clock=clock, fast=True) as emulator:
        yield emulator, clock


def test_countdown_elapses_pauses_resumes_and_freezes_at_the_end(
    clocked: tuple[Emulator, FakeClock],
) -> None:
    emu, clock = clocked
    state = {"title": "Deploy", "type": "timer", "duration_seconds": 600}
    put(emu, "t", state)
    clock.now += 30
    assert only_activity(page_state(emu))["timer"] == {
        "elapsed": 30.0,
        "running": True,
        "ended": False,
        "counts_down": True,
        "duration": 600,
    }
    put(emu, "t", {"title": "Deploy", "is_running": False})
    clock.now += 100  # paused: does not count
    put(emu, "t", {"title": "Deploy", "is_running": True})
    clock.now += 5
    assert only_activity(page_state(emu))["timer"]["elapsed"] == 35.0
    delete(emu, "t")
    clock.now += 50  # ended: frozen
    timer = only_activity(page_state(emu))["timer"]
    assert (timer["elapsed"], timer["running"], timer["ended"]) == (35.0, False, True)


def test_sending_duration_restarts_the_window(clocked: tuple[Emulator, FakeClock]) -> None:
    emu, clock = clocked
    put(emu, "t", {"title": "Deploy", "type": "timer", "duration_seconds": 600})
    clock.now += 200
    put(emu, "t", {"title": "Deploy", "duration_seconds": 300})
    clock.now += 10
    timer = only_activity(page_state(emu))["timer"]
    assert (timer["elapsed"], timer["duration"]) == (10.0, 300)


def test_count_up_timer_has_no_duration(clocked: tuple[Emulator, FakeClock]) -> None:
    emu, clock = clocked
    put(emu, "t", {"title": "Job", "type": "timer", "counts_down": False})
    clock.now += 42
    timer = only_activity(page_state(emu))["timer"]
    assert timer == {
        "elapsed": 42.0,
        "running": True,
        "ended": False,
        "counts_down": False,
        "duration": None,
    }


def test_each_activity_says_when_it_last_heard_and_goes_stale(
    clocked: tuple[Emulator, FakeClock],
) -> None:
    emu, clock = clocked
    started_at = clock.now
    put(emu, "quiet", {"title": "Job", "type": "progress", "percentage": 5})
    clock.now += 100
    put(emu, "quiet", {"title": "Job", "percentage": 5})  # a no-op still says "alive"
    clock.now += 100
    refused = put(emu, "quiet", {"title": "Job", "percentage": 500})
    assert refused.status_code == 400  # a refused request does not count
    activity = only_activity(page_state(emu))
    assert (activity["started_at"], activity["updated_at"]) == (started_at, started_at + 100)
    assert activity["stale"] is False
    clock.now += emu.stale_after - 100
    state = page_state(emu)
    assert state["stale_after"] == emu.stale_after == 600
    assert only_activity(state)["stale"] is True
    delete(emu, "quiet")
    assert only_activity(page_state(emu))["stale"] is False  # ended: not "stale"


def test_notes_show_in_the_history_and_the_request_log(fresh: Emulator) -> None:
    state = {"title": "m", "type": "metrics", "metrics": [{"label": "a", "value": 1}]}
    assert put(fresh, "noted", {**state, "badge": {"title": "B"}}).status_code == 200
    page = page_state(fresh)
    (entry,) = only_activity(page)["history"]
    (note,) = entry["notes"]
    assert "badge is not drawn" in note
    assert page["requests"][0]["notes"] == entry["notes"]


@pytest.mark.parametrize(
    ("end_state", "delay"),
    [
        ({"title": "Job", "message": "m", "auto_dismiss_seconds": 30}, 30.0),
        ({"title": "Job", "message": "m", "auto_dismiss_minutes": 5}, 300.0),
        ({"title": "Job", "message": "m"}, 120.0),  # about two minutes by the stream guide
        (None, 120.0),
    ],
)
def test_ended_activity_is_dismissed_after_its_delay(
    clocked: tuple[Emulator, FakeClock], end_state: dict[str, Any] | None, delay: float
) -> None:
    emu, clock = clocked
    put(emu, "k", {"title": "Job", "type": "alert", "message": "m"})
    ended_at = clock.now = clock.now + 7
    delete(emu, "k", end_state)

    activity = only_activity(page_state(emu))
    assert (activity["status"], activity["ended_at"]) == ("ended", ended_at)
    assert activity["dismiss_at"] == ended_at + delay
    assert activity["dismissed"] is False
    clock.now += delay
    assert only_activity(page_state(emu))["dismissed"] is True


def test_legacy_end_without_a_delay_uses_the_schema_default(
    clocked: tuple[Emulator, FakeClock],
) -> None:
    emu, _ = clocked
    started = requests.post(
        f"{emu.base_url}/live-activity/start",
        json={"content_state": {"title": "Job", "type": "alert", "message": "hi"}},
        headers=AUTH,
        timeout=5,
    ).json()
    requests.post(
        f"{emu.base_url}/live-activity/end",
        json={
            "activity_id": started["activity_id"],
            "content_state": {"title": "Job", "message": "bye"},
        },
        headers=AUTH,
        timeout=5,
    ).raise_for_status()
    activity = only_activity(page_state(emu))
    assert activity["dismiss_at"] - activity["ended_at"] == 180.0


# -- ensure_preview() ------------------------------------------------------------------------


@pytest.fixture
def no_preview(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(preview_module, "_emulator", None)
    monkeypatch.setattr(preview_module, "_owner_pid", None)
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
    yield
    emulator = preview_module._emulator
    if emulator is not None:
        emulator.stop()


@pytest.mark.usefixtures("no_preview")
def test_ensure_preview_starts_one_emulator_and_prints_its_page_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base_url = ensure_preview()
    assert ensure_preview() == base_url

    page = base_url.removesuffix("api")
    assert capsys.readouterr().err == f"ActivitySmith preview: {page}\n"
    assert base_url.startswith("http://127.0.0.1:")
    assert requests.get(base_url + "/health", timeout=5).json()["ok"] is True
    assert "ActivitySmith preview" in requests.get(page, timeout=5).text


@pytest.mark.usefixtures("no_preview")
def test_ensure_preview_falls_back_to_a_free_port_when_the_asked_one_is_taken(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    base_url = ensure_preview(port=emu.port)
    assert base_url != emu.base_url
    assert requests.get(base_url + "/health", timeout=5).ok
    capsys.readouterr()


@pytest.mark.usefixtures("no_preview")
def test_activities_sent_to_the_preview_appear_on_its_state(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base_url = ensure_preview()
    capsys.readouterr()
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_DEBOUNCE", "0")
    la = live_activity("Preview me", steps=2, base_url=base_url).start()
    la.step()
    la.end()
    assert la.flush(10)
    assert preview_module._emulator is not None
    (activity,) = preview_module._emulator.activities.values()
    assert (activity.state["title"], activity.status) == ("Preview me", "ended")


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),
        Settings(preview=True, api_key="ask_real"),
        Settings(preview=True, disabled=True),
        Settings(preview=True, base_url="http://127.0.0.1:8787/api"),
    ],
    ids=["preview-off", "api-key-set", "disabled", "own-base-url"],
)
@pytest.mark.usefixtures("no_preview")
def test_with_preview_leaves_settings_alone_unless_a_preview_is_wanted_and_possible(
    settings: Settings,
) -> None:
    assert with_preview(settings) is settings
    assert preview_module._emulator is None


@pytest.mark.usefixtures("no_preview")
def test_with_preview_points_keyless_settings_at_the_preview_emulator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = with_preview(Settings(preview=True))
    assert preview_module._emulator is not None
    assert settings.base_url == preview_module._emulator.base_url
    assert settings.effective_api_key == EMULATOR_API_KEY
    capsys.readouterr()


# -- in a real browser -----------------------------------------------------------------------
# The page redraws a card whenever its activity changes, so every check finds its elements
# afresh inside a wait instead of holding on to them.


def _browser_or_skip() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if chromium and chromedriver:
        return chromium, chromedriver
    missing = " and ".join(
        name for name, path in (("chromium", chromium), ("chromedriver", chromedriver)) if not path
    )
    reason = f"{missing} not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, chromedriver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="activitysmith-preview-test-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The preview page open in the browser, with waits that re-find what they check."""

    def __init__(self, driver: Any, emu: Emulator) -> None:
        self.driver = driver
        self.emu = emu

    def wait(self, condition: Callable[[], Any], timeout: float = 10) -> Any:
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.05,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        ).until(lambda _: condition())

    def card(self, activity_id: str | None) -> Any:
        assert activity_id is not None
        selector = f'.activity[data-activity-id="{activity_id}"]'
        return self.driver.find_element("css selector", selector)

    def text(self, activity_id: str | None, selector: str) -> str:
        element = self.card(activity_id).find_element("css selector", selector)
        return str(element.get_attribute("textContent"))

    def count(self, activity_id: str | None, selector: str) -> int:
        return len(self.card(activity_id).find_elements("css selector", selector))

    def attribute(self, activity_id: str | None, selector: str, name: str) -> str | None:
        element = self.card(activity_id).find_element("css selector", selector)
        value = element.get_attribute(name)
        return None if value is None else str(value)


@pytest.fixture
def page(browser: Any, fresh: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """The preview page, open on a fresh emulator, with the library pointed at it."""
    monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", fresh.base_url)
    monkeypatch.setenv("ACTIVITYSMITH_API_KEY", KEY)
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_DEBOUNCE", "0")
    browser.get(fresh.url)
    opened = Page(browser, fresh)
    opened.wait(lambda: browser.find_element("id", "connection").text == "live")
    # Survives for as long as the page is not reloaded.
    browser.execute_script("window.notReloaded = true;")
    yield opened
    assert browser.execute_script("return window.notReloaded === true;")


@pytest.fixture
def handles() -> Iterator[list[LiveActivity]]:
    """Activities a test started; ended afterwards even when the test failed."""
    started: list[LiveActivity] = []
    yield started
    for la in started:
        if not la.ended:
            la.end()
        la.flush(5)


@pytest.mark.browser
def test_page_follows_an_activity_through_steps_and_failure_without_reload(
    page: Page, handles: list[LiveActivity]
) -> None:
    la = live_activity(
        "Nightly backup",
        steps=["Snapshot", "Upload", "Verify"],
        stream_key="nightly",
        icon="externaldrive.fill",
        color="blue",
    ).start()
    handles.append(la)
    assert la.flush(10)
    activity = la.activity_id
    page.wait(lambda: page.text(activity, ".title") == "Nightly backup")
    assert page.count(activity, ".segment") == 3
    assert page.count(activity, ".segment.done") == 0
    assert page.text(activity, ".status-pill") == "Live"
    assert page.text(activity, ".icon") == "E"
    assert page.attribute(activity, ".icon", "title") == "externaldrive.fill"

    la.step()
    assert la.flush(10)
    page.wait(lambda: page.count(activity, ".segment.done") == 1)
    page.wait(lambda: page.text(activity, ".subtitle") == "Snapshot")

    la.step()
    assert la.flush(10)
    page.wait(lambda: page.count(activity, ".segment.done") == 2)
    page.wait(lambda: page.text(activity, ".subtitle") == "Upload")

    refused = put(page.emu, "nightly", {"title": "Nightly backup", "current_step": 9})
    assert refused.status_code == 400
    reason = refused.json()["message"]

    la.fail("disk full")
    assert la.flush(10)
    page.wait(lambda: page.attribute(activity, ".status-pill", "textContent") == "Ended")
    assert page.card(activity).get_attribute("data-status") == "ended"
    assert "disk full" in page.text(activity, ".subtitle")
    page.wait(lambda: page.text(activity, ".dismissal").startswith("dismissed in "))

    page.card(activity).find_element("css selector", ".history summary").click()
    record = page.emu.activity(str(activity))
    page.wait(lambda: page.count(activity, ".history li") == len(record.history))
    entries = page.card(activity).find_elements("css selector", ".history li")
    newest_first = [e.get_attribute("data-endpoint") for e in entries]
    assert newest_first[0] == "DELETE /live-activity/stream/nightly"
    assert newest_first[-1] == "PUT /live-activity/stream/nightly"
    (refused_entry,) = page.card(activity).find_elements("css selector", ".history li.refused")
    assert refused_entry.get_attribute("data-status") == "400"
    assert reason in refused_entry.text


@pytest.mark.browser
def test_page_draws_progress_metrics_and_a_ticking_timer(
    page: Page, handles: list[LiveActivity]
) -> None:
    bar = live_activity("Import orders", total=200, color="orange").start()
    tiles = live_activity(
        "Build farm",
        metrics=[
            Metric(label="CPU", value=72, unit="%", color="orange"),
            Metric(label="Queue", value=18, unit="jobs"),
        ],
    ).start()
    clock = live_activity("Deploy", type="timer", duration_seconds=600).start()
    long_title = live_activity("A title far too long for a lock screen " * 4, steps=2).start()
    handles.extend((bar, tiles, clock, long_title))
    bar.progress(50)
    for la in handles:
        assert la.flush(10)

    progress = bar.activity_id
    page.wait(lambda: page.text(progress, ".progress-label") == "50 / 200")
    style = page.attribute(progress, ".progress-fill", "style") or ""
    assert style.startswith("width: 25%")

    metrics = tiles.activity_id
    page.wait(lambda: page.count(metrics, ".metric") == 2)
    labels = [
        m.get_attribute("data-label")
        for m in page.card(metrics).find_elements("css selector", ".metric")
    ]
    assert labels == ["CPU", "Queue"]
    assert page.text(metrics, ".metric .metric-number") == "72"
    assert page.text(metrics, ".metric .metric-unit") == "%"

    clock_id = clock.activity_id
    page.wait(lambda: page.attribute(clock_id, ".timer", "data-running") == "true")
    first = page.text(clock_id, ".timer")
    assert first in ("10:00", "9:59", "9:58")
    page.wait(lambda: page.text(clock_id, ".timer") != first, timeout=5)  # ticks in the page

    clock.update(is_running=False)
    assert clock.flush(10)
    page.wait(lambda: page.attribute(clock_id, ".timer", "data-running") == "false")
    assert "paused" in page.text(clock_id, ".timer-label")

    title = page.card(long_title.activity_id).find_element("css selector", ".title")
    assert title.value_of_css_property("text-overflow") == "ellipsis"
    assert page.driver.execute_script(
        "return arguments[0].scrollWidth > arguments[0].clientWidth;", title
    )


def _px(value: str) -> float:
    return float(value.removesuffix("px"))


@pytest.mark.browser
def test_large_values_shrink_or_wrap_and_show_in_full_on_hover(
    page: Page, handles: list[LiveActivity]
) -> None:
    tiles = live_activity(
        "Warehouse",
        metrics=[
            Metric(label="Rows", value=120_000_000),
            Metric(label="Bytes", value=98_765_432_101, unit="B"),
            Metric(label="Errors", value=0),
            Metric(label="Label", value="a-very-long-unbroken-identifier-0123456789abcdefghij"),
        ],
    ).start()
    readout = live_activity("Revenue", type="value", value="$12,345,678,901.25").start()
    handles.extend((tiles, readout))
    for la in handles:
        assert la.flush(10)

    metrics_id = tiles.activity_id
    page.wait(lambda: page.count(metrics_id, ".metric") == 4)
    boxes = page.card(metrics_id).find_elements("css selector", ".metric-value")
    texts = [b.find_element("css selector", ".metric-number").text for b in boxes]
    assert texts[:3] == ["120,000,000", "98,765,432,101", "0"]  # whole, never "120,0..."
    for box in boxes:
        fits = page.driver.execute_script(
            "return arguments[0].scrollWidth <= arguments[0].clientWidth;", box
        )
        assert fits, box.get_attribute("title")
        assert box.value_of_css_property("text-overflow") != "ellipsis"
    rows, big, errors, label = boxes
    assert rows.get_attribute("title") == "120,000,000"
    assert big.get_attribute("title") == "98,765,432,101 B"
    assert _px(big.value_of_css_property("font-size")) < 19  # shrunk to fit
    assert _px(errors.value_of_css_property("font-size")) == 19  # a short value keeps its size
    assert "wrapped" in (label.get_attribute("class") or "")  # too long even when small

    value_id = readout.activity_id
    page.wait(lambda: page.text(value_id, ".value-readout") == "$12,345,678,901.25")
    value = page.card(value_id).find_element("css selector", ".value-readout")
    assert value.get_attribute("title") == "$12,345,678,901.25"
    assert page.driver.execute_script(
        "return arguments[0].scrollWidth <= arguments[0].clientWidth;", value
    )


@pytest.mark.browser
def test_the_alert_card_honours_its_color(page: Page, handles: list[LiveActivity]) -> None:
    alert = live_activity(
        "Disk almost full",
        type="alert",
        message="94% full",
        color="red",
        action=Action.open_url("Runbook", "https://example.com/runbook"),
        secondary_action=Action.open_url("Silence", "https://example.com/silence"),
    ).start()
    plain = live_activity("Heads up", type="alert", message="no buttons", color="purple").start()
    handles.extend((alert, plain))
    for la in handles:
        assert la.flush(10)
    red, purple = "rgba(255, 69, 58, 1)", "rgba(191, 90, 242, 1)"

    alert_id = alert.activity_id
    page.wait(lambda: page.count(alert_id, ".action") == 2)
    primary = page.card(alert_id).find_element("css selector", ".action.primary")
    secondary = page.card(alert_id).find_element("css selector", ".action.secondary")
    assert primary.value_of_css_property("background-color") == red
    assert secondary.value_of_css_property("color") == red
    message = page.card(alert_id).find_element("css selector", ".widget-alert")
    assert message.value_of_css_property("border-left-color") == red

    plain_id = plain.activity_id
    page.wait(lambda: page.count(plain_id, ".widget-alert") == 1)
    box = page.card(plain_id).find_element("css selector", ".widget-alert")
    assert box.value_of_css_property("border-left-color") == purple


@pytest.mark.browser
def test_an_ended_timer_shows_its_final_reading(page: Page) -> None:
    put(page.emu, "countdown", {"title": "Deploy", "type": "timer", "duration_seconds": 600})
    put(page.emu, "count-up", {"title": "Job", "type": "timer", "counts_down": False})
    delete(page.emu, "countdown", {"title": "Deployed"})
    delete(page.emu, "count-up", {"title": "Job done"})
    down = page.emu.stream_activity("countdown")
    up = page.emu.stream_activity("count-up")
    assert down is not None
    assert up is not None

    page.wait(lambda: page.text(down.id, ".timer-label") == "left at the end")
    reading = page.text(down.id, ".timer")
    assert reading in ("10:00", "9:59")
    assert "paused" not in page.text(down.id, ".widget-timer")
    assert page.attribute(down.id, ".timer", "data-ended") == "true"
    page.wait(lambda: page.text(up.id, ".timer-label") == "in total")
    assert page.text(up.id, ".timer") in ("0:00", "0:01")
    time.sleep(1.3)  # the page ticks every 250 ms: a frozen reading must not move
    assert page.text(down.id, ".timer") == reading


@pytest.fixture
def clocked_page(browser: Any) -> Iterator[tuple[Page, FakeClock]]:
    clock = FakeClock(start=time.time())
    with Emulator(KEY, clock=clock, fast=True) as emulator:
        browser.get(emulator.url)
        opened = Page(browser, emulator)
        opened.wait(lambda: browser.find_element("id", "connection").text == "live")
        yield opened, clock


@pytest.mark.browser
def test_cards_say_how_long_ago_they_were_updated_and_mark_stale_ones(
    clocked_page: tuple[Page, FakeClock],
) -> None:
    page, clock = clocked_page
    put(page.emu, "old", {"title": "Abandoned", "type": "progress", "percentage": 40})
    old = page.emu.stream_activity("old")
    assert old is not None
    page.wait(lambda: page.text(old.id, ".updated") == "updated just now")
    assert not page.card(old.id).find_element("css selector", ".stale-marker").is_displayed()

    clock.now += 3 * 60 + 5
    put(page.emu, "new", {"title": "Busy", "type": "progress", "percentage": 1})  # a redraw
    new = page.emu.stream_activity("new")
    assert new is not None
    page.wait(lambda: page.text(old.id, ".updated") == "updated 3 min ago")
    assert page.text(new.id, ".updated") == "updated just now"

    clock.now += page.emu.stale_after
    put(page.emu, "new", {"title": "Busy", "percentage": 2})
    marker = ".stale-marker"
    page.wait(lambda: page.card(old.id).find_element("css selector", marker).is_displayed())
    assert "stale" in (page.card(old.id).get_attribute("class") or "")
    assert "job may have stopped" in (page.attribute(old.id, marker, "title") or "")
    assert page.text(old.id, ".updated") == "updated 13 min ago"
    assert not page.card(new.id).find_element("css selector", marker).is_displayed()

    delete(page.emu, "old")
    page.wait(lambda: page.count(old.id, ".updated") == 0)  # ended: the dismissal shows
    assert page.count(old.id, ".dismissal") == 1


@pytest.mark.browser
def test_the_page_has_a_favicon(page: Page) -> None:
    driver = page.driver
    href = driver.execute_script("return document.querySelector('link[rel=icon]').href;")
    assert href == page.emu.url + "favicon.ico"
    width = driver.execute_script(
        """
        return new Promise((resolve) => {
          const image = new Image();
          image.onload = () => resolve(image.naturalWidth);
          image.onerror = () => resolve(-1);
          image.src = arguments[0];
        });
        """,
        href,
    )
    assert width in (16, 32)


def test_emulator_command_prints_the_preview_page_address() -> None:
    command = [sys.executable, "-m", "activitysmith_track.emulator", "--port", "0", "--quiet"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline().decode()
            assert line.startswith("Preview page: http://127.0.0.1:")
            answer = requests.get(line.split()[-1], timeout=5)
            assert "ActivitySmith preview" in answer.text
        finally:
            proc.terminate()
            proc.wait(10)
