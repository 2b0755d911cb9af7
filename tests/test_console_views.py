"""The console's operator views (issue #21) in a real headless Chromium against a real `sentq api`, real workers and
a real Redis: the home page's last hour, the queues and draining a stopped job's leftovers, the models page (verified
versions, retrain, the next scheduled retrain), shutting a worker down gracefully, and every page with Redis down.

Every wait is on a state (Playwright's expect, the ledger, a process), never a fixed sleep. Each test leaves
screenshots in its tmp_path. `UPDATE_DOCS_SCREENSHOT=1 pytest tests/test_console_views.py` also writes one per page to
docs/console-*.png (1280x800, the viewport only).
"""

from __future__ import annotations

import re
from pathlib import Path

import redis
from playwright.sync_api import Browser, Dialog, Page, expect

from tests import test_console
from tests.conftest import ApiServer, Worker
from tests.test_console import REPO, UPDATE_DOCS, console, http, lines_of_text, submit, wait_job

# The browser fixtures of tests/test_console.py (one headless Chromium a module).
playwright = test_console.playwright
browser = test_console.browser
DOCS = REPO / "docs"


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    """A screenshot of the viewport in the test's tmp_path, and in docs/ when asked (UPDATE_DOCS_SCREENSHOT=1)."""
    page.screenshot(path=tmp_path / f"{name}.png")
    if UPDATE_DOCS:
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=DOCS / f"{name}.png")


def accept(log: list[str]) -> object:
    def handle(dialog: Dialog) -> None:
        log.append(dialog.message)
        dialog.accept()

    return handle


def move(store: redis.Redis, source: str, target: str, n: int) -> None:
    """Hand the n oldest messages waiting on ``source`` to ``target`` (kombu keeps a queue as a Redis list)."""
    for _ in range(n):
        assert store.lmove(source, target, "RIGHT", "LEFT") is not None


def test_dashboard_last_hour(browser: Browser, api: ApiServer, worker: Worker, redis_url: str, tmp_path: Path) -> None:
    """The home page's last hour counts what the workers scored and what failed, minute by minute (from the ledger's
    per-minute counts), and names the busiest queue and the oldest chunk waiting for a worker."""
    bulk = ApiServer(redis_url, tmp_path / "api-bulk.log", env_extra={"SENTQ_QUEUE": "dash-bulk"}).start()
    store = redis.Redis.from_url(redis_url)
    try:
        with http(api) as client, http(bulk) as bulk_client:
            done = submit(client, lines_of_text(2500), chunk_size=500, name="scored.txt")
            broken = submit(bulk_client, lines_of_text(900), chunk_size=300, name="broken.txt")
            store.set(f"sentq:job:{broken}:in:1", b"{not json")  # no worker on dash-bulk yet: chunk 1 fails
            move(store, "dash-bulk", "sentq", 3)  # the session worker takes the three
            waiting = submit(bulk_client, lines_of_text(400), chunk_size=100, name="waiting.txt")
            wait_job(client, done, lambda r: r["state"] == "done")
            wait_job(client, broken, lambda r: r["state"] == "failed")

        with console(browser, api.url, tmp_path / "console-home-full.png") as page:
            page.goto("/")
            dash = page.locator("[data-dashboard]")
            expect(dash.locator('[data-field="hour-texts"]')).to_have_text("3,100")
            expect(dash.locator('[data-field="hour-failed"]')).to_have_text("1")
            bars = dash.locator("svg[data-chart] g[data-minute]")
            expect(bars).to_have_count(60)
            texts = [int(t or 0) for t in bars.evaluate_all("gs => gs.map(g => g.dataset.texts)")]
            failed = [int(t or 0) for t in bars.evaluate_all("gs => gs.map(g => g.dataset.chunksFailed)")]
            assert sum(texts) == 3100 and sum(failed) == 1, (texts, failed)
            assert texts[-1] > 0 or texts[-2] > 0  # the last minutes, on the right
            expect(dash.locator("svg rect.rate").first).to_be_visible()
            expect(dash.locator("svg rect.fail")).to_have_count(1)
            expect(dash.locator('[data-field="oldest"]')).to_have_text(re.compile(r"^\d+s on queue dash-bulk$"))
            busiest = dash.locator('[data-field="busiest"] div')
            expect(busiest.first).to_have_text("dash-bulk: 4 chunk(s) waiting · 4 message(s)")
            expect(page.locator(f'tr[data-job="{waiting}"] [data-field="state"]')).to_have_text("queued")
            shoot(page, tmp_path, "console-home")
    finally:
        bulk.stop()
        store.close()
