"""Screenshots of the emulator's preview page for the README, made with headless Chromium.

Run it from the repository root (needs Debian's ``chromium`` and ``chromium-driver`` and the
``test`` extras, which bring selenium)::

    python examples/preview_screenshots.py            # writes docs/preview*.png

It starts an emulator, drives a few activities with the library itself (one per widget
type, and one left without updates for 20 minutes, which the page marks stale), opens the
preview page in a headless browser and saves the whole page plus one picture per card.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from activitysmith_track import Action, LiveActivity, Metric, live_activity
from activitysmith_track.emulator import Emulator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH = 1200
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


@contextmanager
def headless_chromium(width: int = WIDTH, height: int = 900) -> Iterator[Any]:
    """A selenium Chrome driver on Debian's chromium, with a throwaway profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or CHROMIUM
    chromedriver = shutil.which("chromedriver") or CHROMEDRIVER
    profile = tempfile.mkdtemp(prefix="activitysmith-preview-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class ShiftedClock:
    """Wall time, shifted by ``offset`` seconds: lets one card be "last updated" long ago."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def drive_activities(base_url: str, clock: ShiftedClock) -> list[LiveActivity]:
    """One activity per widget type, left live (or ended) at a telling moment, and one
    abandoned 20 minutes ago, which the page marks stale.

    The handles are returned because a handle that is garbage collected ends its activity.
    """
    clock.offset = -20 * 60
    abandoned = live_activity(
        "Backfill 2019 orders",
        total=40_000,
        icon="tray.full.fill",
        color="purple",
        stream_key="backfill-2019",
    ).start()
    abandoned.advance(13_800)
    assert abandoned.flush(10)
    clock.offset = 0.0

    failed = live_activity(
        "Warehouse sync",
        steps=["Extract", "Transform", "Load"],
        icon="arrow.triangle.2.circlepath",
        color="blue",
        auto_dismiss_minutes=5,
    ).start()
    failed.step()
    failed.step()
    assert failed.flush(10)
    # A request the emulator refuses shows in the card's history with the reason.
    requests.post(
        f"{base_url}/live-activity/update",
        json={
            "activity_id": failed.activity_id,
            "content_state": {"title": "Warehouse sync", "current_step": 7},
        },
        headers={"Authorization": "Bearer ask_local_emulator"},
        timeout=5,
    )
    failed.fail("duplicate key in orders_2026")

    backup = live_activity(
        "Nightly backup",
        steps=["Snapshot", "Upload to S3", "Verify checksums", "Prune old snapshots"],
        icon="externaldrive.fill",
        color="blue",
        step_color="cyan",
        stream_key="nightly-backup",
    ).start()
    backup.step()
    backup.step()
    backup.step()

    orders = live_activity(
        "Import orders",
        total=12_500,
        icon="shippingbox.fill",
        color="orange",
        badge="ETL",
        secondary_action=None,
        action=Action.open_url("Open dashboard", "https://example.com/etl"),
    ).start()
    orders.progress(8_150)

    farm = live_activity(
        "Build farm",
        metrics=[
            Metric(label="CPU", value=72, unit="%", color="orange"),
            Metric(label="Memory", value=11.4, unit="GB", color="purple"),
            Metric(label="Rows synced", value=120_000_000, color="cyan"),
        ],
        icon="cpu",
        color="green",
    ).start()

    deploy = live_activity(
        "Deploy api-gateway",
        type="timer",
        duration_seconds=15 * 60,
        subtitle="Canary at 10%, promoting when healthy",
        icon="timer",
        color="yellow",
    ).start()

    alert = live_activity(
        "Disk almost full",
        type="alert",
        message="db-primary /var/lib/postgresql is 94% full; autovacuum is paused until "
        "someone frees space or grows the volume.",
        icon="exclamationmark.triangle.fill",
        color="red",
        badge="P1",
        action=Action.open_url("Runbook", "https://example.com/runbook"),
        secondary_action=Action.open_url("Silence", "https://example.com/silence"),
    ).start()

    revenue = live_activity(
        "Revenue today",
        type="value",
        value="$12,480",
        subtitle="+8% on last Tuesday",
        icon="dollarsign.circle.fill",
        color="green",
    ).start()

    handles = [backup, orders, farm, deploy, alert, revenue, failed, abandoned]
    for activity in handles:
        activity.flush(10)
    return handles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where to write PNGs")
    parser.add_argument("--cards", action="store_true", help="also one PNG per card")
    parser.add_argument("--keep-open", action="store_true", help="serve until Ctrl-C afterwards")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    clock = ShiftedClock()
    # Eight cards at once: more than the account's four, so no capacity limit here.
    with Emulator(fast=True, clock=clock) as emu:
        os.environ["ACTIVITYSMITH_BASE_URL"] = emu.base_url
        os.environ["ACTIVITYSMITH_TRACK_DEBOUNCE"] = "0"
        os.environ.pop("ACTIVITYSMITH_API_KEY", None)
        handles = drive_activities(emu.base_url, clock)
        with headless_chromium() as driver:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import WebDriverWait

            driver.get(emu.url)
            WebDriverWait(driver, 10).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, ".activity")) == len(handles)
            )
            # The ended card shows its history open, with the request it had refused.
            ended = '.activity[data-status="ended"] .history summary'
            driver.find_element(By.CSS_SELECTOR, ended).click()
            # A headless window cannot grow past the screen; resize the viewport instead.
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": int(height), "deviceScaleFactor": 1, "mobile": False},
            )
            path = args.out / "preview.png"
            driver.save_screenshot(str(path))
            print(f"wrote {path}")
            if args.cards:
                for card in driver.find_elements(By.CSS_SELECTOR, ".activity"):
                    name = f"{card.get_attribute('data-type')}-{card.get_attribute('data-status')}"
                    path = args.out / f"preview-{name}.png"
                    card.screenshot(str(path))
                    print(f"wrote {path}")
        for handle in handles:
            if not handle.ended:
                handle.end()
            handle.flush(10)
        if args.keep_open:
            print(f"serving {emu.url} until Ctrl-C")
            try:
                while True:
                    input()
            except (KeyboardInterrupt, EOFError):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
