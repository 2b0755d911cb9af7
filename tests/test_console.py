"""The operator console in a real headless Chromium (Debian's, driven by Playwright) against a real `sentq api`,
real workers and a real Redis (tests/conftest.py): upload, live progress, failures, retry, cancel, login.

Every wait is on a state (Playwright's expect / wait_for_*, or polling the API), never a fixed sleep. Each test
leaves full-page screenshots in its tmp_path, on failure too. `UPDATE_DOCS_SCREENSHOT=1 pytest tests/test_console.py`
also writes the jobs list the README shows to docs/console.png, and a failed job's page to docs/console-job.png.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import Browser, Dialog, Locator, Page, Playwright, ViewportSize, expect, sync_playwright

from sentq.web import auth
from tests.conftest import REPO, ApiServer, Worker

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
WAIT_MS = 60_000  # the longest any state may take to show (a worker scoring a chunk takes well under a second)
DOCS_SHOT = REPO / "docs" / "console.png"
# Not a SENTQ_* name: conftest's autouse _clean_env removes those from every test's environment.
UPDATE_DOCS = os.environ.get("UPDATE_DOCS_SCREENSHOT", "") not in ("", "0")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the console tests drive Debian's Chromium; run `apt-get install chromium`")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium for the module (each test opens its own context: fresh cookies and storage)."""
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


@contextmanager
def console(browser: Browser, base_url: str, shot: Path) -> Iterator[Page]:
    """A page in a fresh browser context on ``base_url``; a full-page screenshot of where it ended goes to ``shot``,
    whether the test passed or not; uncaught JavaScript errors, and anything the Content-Security-Policy blocked, fail
    the test."""
    context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    page.on("console", lambda m: js_errors.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        yield page
    finally:
        try:
            page.screenshot(path=shot, full_page=True)
        except Exception as exc:  # noqa: BLE001 - a screenshot that fails must not hide why the test failed
            print(f"no screenshot {shot}: {exc}")
        context.close()
    assert not js_errors, js_errors


def lines_of_text(n: int, *, start: int = 1) -> bytes:
    """n texts, one a line, alternately positive and negative."""
    return b"".join(
        f"{'great lovely product' if i % 2 else 'awful broken service'} {i}\n".encode() for i in range(start, start + n)
    )


def http(api: ApiServer, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=api.url, timeout=30, headers=headers)


def wait_job(
    client: httpx.Client, job: str, until: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    """Poll the API until ``until(record)`` holds; the record."""
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = client.get(f"/v1/jobs/{job}").json()
        if until(record):
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.05)


def submit(client: httpx.Client, body: bytes, **params: Any) -> str:
    reply = client.post("/v1/jobs", params=params, content=body, headers={"Content-Type": "text/plain"})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["id"])


def the_field(page: Page, name: str) -> Locator:
    """A live field of the job page (the JS repaints these from the job's progress events)."""
    return page.locator(f'[data-live-job] [data-field="{name}"]')


def test_upload_watch_done_and_download(browser: Browser, api: ApiServer, worker: Worker, tmp_path: Path) -> None:
    upload = tmp_path / "reviews.txt"
    upload.write_bytes(lines_of_text(3000))
    with console(browser, api.url, tmp_path / "console-job.png") as page:
        page.goto("/")
        expect(page.get_by_role("heading", name="Submit a file")).to_be_visible()
        expect(page.locator(".empty")).to_contain_text("No jobs yet")
        form = page.locator("#submit-form")
        form.locator('input[type="file"]').set_input_files(upload)
        with page.expect_response("**/console/submit") as posted:
            form.get_by_role("button", name="Submit").click()
        assert posted.value.status == 303, posted.value.text()
        where = re.fullmatch(r"/jobs/([0-9a-f]{12})\?msg=submitted", posted.value.headers["location"])
        assert where, posted.value.headers["location"]
        job = where[1]
        # The job page; it may already have reloaded itself (dropping the ?msg= flash) if the job ended meanwhile.
        expect(page).to_have_url(re.compile(rf"/jobs/{job}(\?msg=.*)?$"))
        expect(page.locator("h1 code")).to_have_text(job)
        # Live (SSE paints the numbers, `end` reloads the page) or already done when it rendered: either way, done.
        expect(the_field(page, "state")).to_have_text("done", timeout=WAIT_MS)
        expect(the_field(page, "state")).to_have_class("state done")
        expect(the_field(page, "texts")).to_have_text("3,000 / 3,000")
        expect(the_field(page, "chunks")).to_have_text("1 done · 0 failed · 1 in all")
        expect(the_field(page, "bar")).to_have_attribute("value", re.compile(r"^100(\.0)?$"))
        expect(page.locator(".facts dt")).to_contain_text(["texts scored", "chunks", "speed", "ended"])
        expect(page.locator("p.src")).to_contain_text("reviews.txt · text · model v1")
        expect(page.locator("table.failures")).to_have_count(0)
        expect(page.get_by_role("button", name="Cancel")).to_have_count(0)  # finished: nothing to cancel

        # The JSONL link, fetched with the page's own request context (its cookies, its origin).
        jsonl = page.get_by_role("link", name="Download JSONL")
        href = jsonl.get_attribute("href")
        assert href == f"/v1/jobs/{job}/results" and jsonl.get_attribute("download") == f"{job}.jsonl"
        reply = page.request.get(href)
        assert reply.ok and reply.headers["content-type"].startswith("application/x-ndjson")
        rows = [json.loads(line) for line in reply.text().splitlines()]
        assert [r["line"] for r in rows] == list(range(1, 3001))
        assert sum(r["label"] == "positive" for r in rows) == 1500 and rows[0]["text"] == "great lovely product 1"

        # The CSV link, clicked: a real browser download.
        with page.expect_download() as download_info:
            page.get_by_role("link", name="Download CSV").click()
        download = download_info.value
        assert download.suggested_filename == f"{job}.csv"
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        table = list(csv.reader(io.StringIO(saved.read_text())))
        assert table[0] == ["line", "text", "score", "label", "model"] and len(table) == 3001

        # The jobs list shows it done, with its progress, linked to its page.
        page.get_by_role("link", name="Jobs", exact=True).click()
        row = page.locator(f'tr[data-job="{job}"]')
        expect(row.locator('[data-field="state"]')).to_have_text("done")
        expect(row.locator('[data-field="texts"]')).to_have_text("3,000 / 3,000")
        expect(row.locator(".src")).to_have_text("reviews.txt")
        page.screenshot(path=tmp_path / "console-jobs.png", full_page=True)
        row.get_by_role("link", name=job).click()
        expect(page).to_have_url(f"{api.url}/jobs/{job}")


def test_failed_job_retried_and_cancel_confirmed(browser: Browser, redis_url: str, tmp_path: Path) -> None:
    """On a queue of our own: cancel asks first (dismissed: nothing happens; accepted: cancelled); a job whose chunk
    fails is watched live until it fails, then retried from its page (confirmed) once its input is good again."""
    queue = "console-retry"
    api = ApiServer(redis_url, tmp_path / "api.log", env_extra={"SENTQ_QUEUE": queue}).start()
    w = Worker(redis_url, tmp_path / "w.log", name="console-retry@%h", env_extra={"SENTQ_QUEUE": queue})
    store = redis.Redis.from_url(redis_url)
    dialogs: list[str] = []
    try:
        with http(api) as client, console(browser, api.url, tmp_path / "console-job.png") as page:
            doomed = submit(client, lines_of_text(30), chunk_size=10, name="doomed.txt")
            failing = submit(client, lines_of_text(30), chunk_size=10, name="flaky.txt")
            key = f"sentq:job:{failing}:in:1"
            good = store.get(key)
            assert good is not None
            store.set(key, b"{not json")  # before any worker on the queue starts: chunk 1 fails

            # Cancel, dismissed: the form is not sent and the job stays queued.
            page.goto(f"/jobs/{doomed}")
            expect(the_field(page, "state")).to_have_text("queued")
            posts: list[str] = []
            page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

            def dismiss(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.once("dialog", dismiss)
            page.get_by_role("button", name="Cancel").click()
            page.evaluate("1")  # a round trip through the page after the click's handlers ran
            assert dialogs == [f"Cancel job {doomed}? Queued chunks will be skipped."]
            assert posts == [] and page.url == f"{api.url}/jobs/{doomed}"
            assert client.get(f"/v1/jobs/{doomed}").json()["state"] == "queued"
            expect(the_field(page, "state")).to_have_text("queued")

            # Cancel, accepted: posted, redirected back with the outcome.
            def accept(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                dialog.accept()

            page.once("dialog", accept)
            with page.expect_navigation(url=f"**/jobs/{doomed}?msg=*"):
                page.get_by_role("button", name="Cancel").click()
            assert len(dialogs) == 2 and posts == [f"{api.url}/console/jobs/{doomed}/cancel"]
            expect(page.get_by_role("status")).to_have_text(f"job {doomed} is cancelled (0 texts scored)")
            expect(the_field(page, "state")).to_have_text("cancelled")
            expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
            assert client.get(f"/v1/jobs/{doomed}").json()["state"] == "cancelled"
            page.screenshot(path=tmp_path / "console-cancelled.png", full_page=True)

            # The failing job's page is open (and live) before any worker runs: it updates, then reloads, by itself.
            page.goto(f"/jobs/{failing}")
            expect(the_field(page, "state")).to_have_text("queued")
            expect(page.locator("[data-live-job]")).to_have_attribute("data-finished", "no")
            page.evaluate("window.notReloaded = true")
            w.start()
            expect(the_field(page, "state")).to_have_text("failed", timeout=WAIT_MS)
            failures = page.locator("table.failures")
            expect(failures).to_be_visible()  # only the server renders it: the page reloaded on the `end` event
            assert page.evaluate("window.notReloaded === undefined")
            expect(failures.locator("tbody tr")).to_have_count(1)
            expect(failures.locator("tbody tr td").first).to_have_text("1")
            expect(failures.locator("td.why")).to_contain_text("not a staged sentq chunk")
            groups = page.locator("ul.failure-groups li")  # the failures by reason, above the per-chunk table
            expect(groups).to_have_count(1)
            expect(groups.first).to_contain_text("1 chunk (1)")
            expect(the_field(page, "texts")).to_have_text("20 / 30")
            expect(the_field(page, "chunks")).to_have_text("2 done · 1 failed · 3 in all")
            expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
            page.screenshot(path=tmp_path / "console-failed.png", full_page=True)
            if UPDATE_DOCS:  # the job page in docs/: a failed job, its failures grouped by reason
                page.screenshot(path=DOCS_SHOT.with_name("console-job.png"))
            assert client.get(f"/v1/jobs/{doomed}").json()["state"] == "cancelled"  # its chunks were skipped

            # Retry, accepted, with the input good again and no worker yet (so the page is caught running): the job
            # runs its failed chunk once a worker is back, and the page follows it to done by itself.
            w.stop()
            store.set(key, good)
            page.once("dialog", accept)
            with page.expect_navigation(url=f"**/jobs/{failing}?msg=*"):
                page.get_by_role("button", name="Retry failed chunks").click()
            assert dialogs[-1] == f"Run the 1 failed chunk(s) of {failing} again?"
            expect(page.get_by_role("status")).to_have_text("queued 1 failed chunk(s) again")
            expect(the_field(page, "state")).to_have_text("running")
            expect(the_field(page, "chunks")).to_have_text("2 done · 0 failed · 3 in all")
            expect(page.locator("table.failures")).to_have_count(0)
            expect(page.get_by_role("button", name="Cancel")).to_be_visible()
            page.screenshot(path=tmp_path / "console-retried.png", full_page=True)
            page.evaluate("window.notReloaded = true")
            w = Worker(redis_url, tmp_path / "w2.log", name="console-retry2@%h", env_extra={"SENTQ_QUEUE": queue})
            w.start()
            expect(the_field(page, "state")).to_have_text("done", timeout=WAIT_MS)
            # The page reloaded itself at the end, without the flash about the retry (it is over).
            expect(page).to_have_url(f"{api.url}/jobs/{failing}")
            expect(page.get_by_role("status")).to_have_count(0)
            assert page.evaluate("window.notReloaded === undefined")
            expect(the_field(page, "texts")).to_have_text("30 / 30")
            expect(the_field(page, "chunks")).to_have_text("3 done · 0 failed · 3 in all")
            expect(page.locator("table.failures")).to_have_count(0)
            expect(page.get_by_role("button", name="Retry failed chunks")).to_have_count(0)
            rows = page.request.get(f"/v1/jobs/{failing}/results").text().splitlines()
            assert [json.loads(r)["line"] for r in rows] == list(range(1, 31))

            page.goto("/")
            expect(page.locator(f'tr[data-job="{failing}"] [data-field="state"]')).to_have_text("done")
            expect(page.locator(f'tr[data-job="{doomed}"] [data-field="state"]')).to_have_text("cancelled")
    finally:
        w.stop()
        api.stop()
        store.close()


def test_workers_and_models_pages(browser: Browser, api: ApiServer, worker: Worker, tmp_path: Path) -> None:
    with http(api) as client:  # Redis was flushed for this test: the session worker is listed at its next beat
        deadline = time.monotonic() + 30
        while not client.get("/v1/workers").json()["workers"]:
            assert time.monotonic() < deadline, "the session worker did not beat"
            time.sleep(0.1)
    with console(browser, api.url, tmp_path / "console-job.png") as page:
        page.goto("/workers")
        expect(page.get_by_role("heading", name="Live workers (1)")).to_be_visible()
        row = page.locator("table").first.locator("tbody tr")
        expect(row).to_have_count(1)
        expect(row.locator("td").first).to_have_text(re.compile(r"^session@"))
        expect(row).to_contain_text("sentq")  # its queue
        expect(page.locator(".card .label").first).to_have_text(re.compile("^queue "))
        page.screenshot(path=tmp_path / "console-workers.png", full_page=True)

        page.get_by_role("link", name="Models").click()
        expect(page).to_have_url(f"{api.url}/models")
        current = page.locator("tr.current")
        expect(current).to_have_count(1)
        expect(current.locator("td").nth(0)).to_have_text("current")
        expect(current.locator("td").nth(1)).to_have_text("v1")
        expect(page.get_by_role("button", name=re.compile("^Use v"))).to_have_count(0)  # v1 is the only version


def test_login_read_only_and_full(browser: Browser, redis_url: str, tmp_path: Path) -> None:
    full, read = "full-console-0123456789abcdef", "read-console-0123456789abcdef"
    env = {"SENTQ_API_TOKENS": f"{full},ro:{read}", "SENTQ_QUEUE": "console-auth-idle"}
    api = ApiServer(redis_url, tmp_path / "api.log", env_extra=env).start()
    try:
        with http(api, full) as client, console(browser, api.url, tmp_path / "console-job.png") as page:
            job = submit(client, lines_of_text(5), name="waiting.txt")  # no worker on its queue: it stays queued

            page.goto("/")
            expect(page).to_have_url(f"{api.url}/login?next=/")
            expect(page.locator("main form")).to_have_count(1)
            expect(page.locator(".who")).to_have_text("")

            # Read-only: everything shows, nothing can be changed. A mistyped token keeps where the user was going.
            page.goto(f"/jobs/{job}")
            expect(page).to_have_url(f"{api.url}/login?next=/jobs/{job}")
            page.get_by_label("token").fill(read[:-1])
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("alert")).to_have_text("that token is not one of SENTQ_API_TOKENS")
            page.get_by_label("token").fill(read)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(f"{api.url}/jobs/{job}")
            expect(page.locator(".who")).to_contain_text("read-only")
            expect(the_field(page, "state")).to_have_text("queued")
            expect(page.get_by_role("link", name="Download JSONL")).to_be_visible()
            expect(page.locator("main form")).to_have_count(0)
            expect(page.locator("main button")).to_have_count(0)
            page.screenshot(path=tmp_path / "console-read-only-job.png", full_page=True)
            page.goto("/")
            expect(page.get_by_role("heading", name="Recent jobs")).to_be_visible()
            expect(page.locator(f'tr[data-job="{job}"]')).to_be_visible()
            expect(page.locator("#submit-form")).to_have_count(0)
            expect(page.locator('main form[method="post"]')).to_have_count(0)  # only the search (a GET)
            expect(page.get_by_role("button", name=re.compile("Forget"))).to_have_count(0)
            page.goto("/models")
            expect(page.locator("tr.current")).to_have_count(1)
            expect(page.locator("main button")).to_have_count(0)
            # A read-only cookie cannot act even by posting the form by hand.
            refused = page.request.post(f"/console/jobs/{job}/cancel", max_redirects=0)
            assert refused.status == 403 and "this token is read-only" in refused.text()
            # The browser holds a session, not the token.
            cookies = {c["name"]: c["value"] for c in page.context.cookies()}
            assert list(cookies) == [auth.COOKIE] and read not in cookies[auth.COOKIE]
            assert client.get(f"/v1/jobs/{job}").json()["state"] == "queued"

            # Log out, then in with the full token: the form and the buttons are there.
            page.get_by_role("button", name="log out").click()
            expect(page).to_have_url(f"{api.url}/login")
            page.get_by_label("token").fill(full)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(f"{api.url}/")
            expect(page.locator(".who")).to_contain_text("full access")
            expect(page.locator("#submit-form")).to_be_visible()
            page.locator(f'tr[data-job="{job}"]').get_by_role("link", name=job).click()
            expect(page.get_by_role("button", name="Cancel")).to_be_visible()
            page.once("dialog", lambda d: d.accept())
            with page.expect_navigation(url=f"**/jobs/{job}?msg=*"):
                page.get_by_role("button", name="Cancel").click()
            expect(the_field(page, "state")).to_have_text("cancelled")
        assert full not in api.output() and read not in api.output()
    finally:
        api.stop()


def test_jobs_list_screenshot(browser: Browser, api: ApiServer, worker: Worker, redis_url: str, tmp_path: Path) -> None:
    """The jobs list with jobs in every common state: done ones, a failed one, one running, one queued.

    Jobs are made on a "bulk" queue no worker listens to; moving some of their broker messages to the session worker's
    queue runs just those chunks, so a job is caught part-way without racing a worker (and a chunk can be broken first).
    """
    bulk = ApiServer(redis_url, tmp_path / "api-bulk.log", env_extra={"SENTQ_QUEUE": "bulk"}).start()
    store = redis.Redis.from_url(redis_url)

    def run_chunks(n: int) -> None:
        """Hand the n oldest chunks waiting on "bulk" to the session worker (kombu keeps a queue as a Redis list)."""
        for _ in range(n):
            assert store.lmove("bulk", "sentq", "RIGHT", "LEFT") is not None

    try:
        with http(api) as client, http(bulk) as bulk_client:
            for name, n in [("support-tickets-2024-05.txt", 48_000), ("app-reviews-week-22.txt", 6_500)]:
                job = submit(client, lines_of_text(n), name=name, chunk_size=5000)
                wait_job(client, job, lambda r: r["state"] == "done")

            failing = submit(bulk_client, lines_of_text(12_000), name="survey-free-text.txt", chunk_size=4000)
            store.set(f"sentq:job:{failing}:in:2", b"{not json")
            run_chunks(3)
            wait_job(client, failing, lambda r: r["state"] == "failed")

            job = submit(client, lines_of_text(2_400), name="tweets-launch-day.txt")
            wait_job(client, job, lambda r: r["state"] == "done")

            running = submit(bulk_client, lines_of_text(80_000), name="call-transcripts-q2.txt", chunk_size=5000)
            run_chunks(6)
            wait_job(client, running, lambda r: r["chunks_done"] == 6)
            queued = submit(bulk_client, lines_of_text(25_000), name="forum-posts-archive.txt", chunk_size=5000)
            # 10 + 5 chunks wait on "bulk", plus any the ledger re-sent there: a moved chunk that waited over 15 s for
            # the busy session worker counts as a lost message (seen once in the full suite). All are settled or
            # visible now, so the depth no longer changes.
            depth = store.llen("bulk")
            assert depth >= 15

        with console(browser, api.url, tmp_path / "console-job.png") as page:
            page.goto("/")
            rows = page.locator("table.jobs tbody tr")
            expect(rows).to_have_count(6)
            states = [s.strip() for s in rows.locator('[data-field="state"]').all_inner_texts()]
            assert states == ["queued", "running", "done", "failed", "done", "done"]
            expect(page.locator(f'tr[data-job="{running}"] [data-field="texts"]')).to_have_text("30,000 / 80,000")
            expect(page.locator(f'tr[data-job="{queued}"] [data-field="texts"]')).to_have_text("0 / 25,000")
            expect(page.locator(".card").filter(has_text="queue bulk")).to_contain_text(str(depth))
            page.screenshot(path=tmp_path / "console-jobs.png", full_page=True)
            if UPDATE_DOCS:
                DOCS_SHOT.parent.mkdir(exist_ok=True)
                page.screenshot(path=DOCS_SHOT, full_page=True)
            page.goto(f"/jobs/{failing}")
            expect(page.locator("td.why")).to_contain_text("not a staged sentq chunk")
    finally:
        bulk.stop()
        store.close()


def test_no_worker_eta_in_flight_leftovers_live(browser: Browser, redis_url: str, tmp_path: Path) -> None:
    """On a queue no worker consumes: the job page and the home page say so in `sentq wait`'s words, the ETA says it
    waits for a worker, the queue card (and /metrics) tells a cancelled job's leftover messages from chunks waiting,
    and a job without rows offers no download. Then a (slow) worker starts: "in flight" and the worker line change
    live on the open page, and the finished job shows how long it took."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.test_faults import hooked

    queue = "console-figures"
    api = ApiServer(redis_url, tmp_path / "api.log", env_extra={"SENTQ_QUEUE": queue}).start()
    env = hooked(SENTQ_QUEUE=queue, SENTQ_TEST_SLOW="1.0")
    w = Worker(redis_url, tmp_path / "w.log", name="console-figures@%h", env_extra=env, concurrency=1)
    said = f"no live worker consumes its queue '{queue}'. Start one: `sentq worker` with SENTQ_QUEUE={queue}"
    try:
        with http(api) as client, console(browser, api.url, tmp_path / "console-figures.png") as page:
            job = submit(client, lines_of_text(30), chunk_size=10, name="waiting.txt")
            stopped = submit(client, lines_of_text(30), chunk_size=10, name="stopped.txt")
            assert client.post(f"/v1/jobs/{stopped}/cancel").status_code == 200

            page.goto(f"/jobs/{job}")
            expect(page.get_by_role("alert")).to_have_text(said)
            expect(the_field(page, "eta")).to_have_text("waiting for a worker")
            expect(the_field(page, "inflight")).to_have_text("3 pending · 0 being scored")
            record = client.get(f"/v1/jobs/{job}").json()
            assert record["waiting_for_worker"] is True and record["eta_s"] is None

            page.goto("/")
            card = page.locator(f'.card[data-queue="{queue}"]')
            expect(card.locator(".big")).to_have_text("6")
            expect(card).to_contain_text("3 chunk(s) of 1 unfinished job(s) waiting")
            expect(card.locator('[data-field="leftovers"]')).to_contain_text("3 leftover message(s) of stopped jobs")
            expect(card.locator('[data-field="no-worker"]')).to_have_text(f"1 job(s) waiting: {said}")
            page.screenshot(path=tmp_path / "console-queue-card.png", full_page=True)
            metrics = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
            by_queue = {
                name: {s.labels["queue"]: s.value for s in metrics[name].samples}
                for name in ("sentq_queue_chunks_waiting", "sentq_queue_leftover_messages", "sentq_queue_jobs")
            }
            assert [by_queue[name][queue] for name in by_queue] == [3, 3, 1]

            page.goto(f"/jobs/{stopped}")  # cancelled before any text was scored: nothing to download
            expect(the_field(page, "state")).to_have_text("cancelled")
            expect(page.get_by_role("link", name="Download JSONL")).to_have_count(0)
            expect(page.get_by_role("link", name="Download CSV")).to_have_count(0)
            expect(page.locator('[data-field="no-rows"]')).to_be_visible()

            page.goto(f"/jobs/{job}")
            expect(the_field(page, "inflight")).to_have_text("3 pending · 0 being scored")
            page.evaluate("window.notReloaded = true")
            w.start()
            # Live, on the page as it is (no reload): the first chunk being scored (a second each), the worker line
            # gone; the job waits for no worker now, though nothing of it is scored yet (one event paints all fields).
            expect(the_field(page, "inflight")).to_have_text("2 pending · 1 being scored")
            assert the_field(page, "eta").inner_text() != "waiting for a worker"
            expect(page.locator('[data-field="no-worker"]')).to_be_hidden()
            expect(the_field(page, "inflight")).to_have_text(re.compile(r"^[01] pending · 1 being scored$"))
            assert page.evaluate("window.notReloaded === true")
            page.screenshot(path=tmp_path / "console-in-flight.png", full_page=True)
            expect(the_field(page, "state")).to_have_text("done", timeout=WAIT_MS)
            expect(page.locator('.facts [data-field="duration"]')).to_have_text(re.compile(r"^\d+s$"))
            expect(page.get_by_role("link", name="Download JSONL")).to_be_visible()
            record = client.get(f"/v1/jobs/{job}").json()
            assert record["duration_s"] == pytest.approx(record["finished_at"] - record["created"], abs=0.01)
            page.screenshot(path=tmp_path / "console-done-duration.png", full_page=True)
    finally:
        w.stop()
        api.stop()


def test_search_forget_and_refused_upload(browser: Browser, api: ApiServer, worker: Worker, tmp_path: Path) -> None:
    """A file the console refuses leaves no job; the jobs page finds jobs by source name or id; one job is forgotten
    from its page, then every done job of the filter, each only after a confirmation."""
    bad = tmp_path / "bad.csv"
    bad.write_text('id,text\n1,"never closed\n')
    dialogs: list[str] = []
    with http(api) as client, console(browser, api.url, tmp_path / "console-list.png") as page:
        page.goto("/")
        form = page.locator("#submit-form")
        form.locator('input[type="file"]').set_input_files(bad)
        form.get_by_role("button", name="Submit").click()
        expect(page.get_by_role("alert")).to_contain_text("bad.csv")
        assert client.get("/v1/jobs").json()["jobs"] == []
        # the console's words for the form's boxes, not the CLI's options
        columns = tmp_path / "columns.csv"
        columns.write_text("a,b\n1,2\n")
        form.locator('input[type="file"]').set_input_files(columns)
        form.get_by_role("button", name="Submit").click()
        expect(page.get_by_role("alert")).to_contain_text("the column box")
        expect(page.get_by_role("alert")).not_to_contain_text("--column")

        alpha = submit(client, lines_of_text(20), name="alpha-reviews.txt")
        beta = submit(client, lines_of_text(20), name="beta-tickets.txt")
        for job in (alpha, beta):
            wait_job(client, job, lambda r: r["state"] == "done")

        page.goto("/")
        page.get_by_role("searchbox", name="search jobs").fill("ALPHA")
        page.get_by_role("button", name="Search").click()
        expect(page.locator("table.jobs tbody tr")).to_have_count(1)
        expect(page.locator(f'tr[data-job="{alpha}"]')).to_be_visible()
        page.get_by_role("searchbox", name="search jobs").fill(beta[:6])
        page.get_by_role("button", name="Search").click()
        expect(page.locator("table.jobs tbody tr")).to_have_count(1)
        expect(page.locator(f'tr[data-job="{beta}"]')).to_be_visible()
        page.get_by_role("searchbox", name="search jobs").fill("nothing-like-this")
        page.get_by_role("button", name="Search").click()
        expect(page.locator(".empty")).to_have_text("No jobs match this search.")
        page.screenshot(path=tmp_path / "console-search.png", full_page=True)

        def answer(accept: bool) -> Callable[[Dialog], None]:
            def handle(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                dialog.accept() if accept else dialog.dismiss()

            return handle

        page.goto(f"/jobs/{alpha}")
        page.once("dialog", answer(False))
        page.get_by_role("button", name="Forget").click()
        page.evaluate("1")
        assert dialogs[-1].startswith(f"Forget job {alpha}?")
        assert client.get(f"/v1/jobs/{alpha}").status_code == 200  # dismissed: nothing happened
        page.once("dialog", answer(True))
        with page.expect_navigation(url="**/?msg=forgot*"):
            page.get_by_role("button", name="Forget").click()
        expect(page.get_by_role("status")).to_have_text("forgot 1 job(s)")
        assert client.get(f"/v1/jobs/{alpha}").status_code == 404
        expect(page.locator(f'tr[data-job="{alpha}"]')).to_have_count(0)

        page.goto("/?state=done")
        page.once("dialog", answer(True))
        with page.expect_navigation(url="**/?state=done&msg=forgot*"):
            page.get_by_role("button", name="Forget every done job").click()
        assert dialogs[-1].startswith("Forget every done job?")
        expect(page.get_by_role("status")).to_have_text("forgot 1 job(s)")
        expect(page.locator("table.jobs tbody tr")).to_have_count(0)
        assert client.get(f"/v1/jobs/{beta}").status_code == 404
        page.screenshot(path=tmp_path / "console-forgotten.png", full_page=True)


def test_api_docs_load_offline_and_authorize(browser: Browser, api: ApiServer, tmp_path: Path) -> None:
    """/docs on a closed network: every request outside the API is refused, and Swagger UI still renders the API from
    this server's own files, under its Content-Security-Policy, and offers "Authorize" (the bearer scheme is in
    /openapi.json)."""
    outside: list[str] = []

    def only_here(route: Any) -> None:
        if route.request.url.startswith(api.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with console(browser, api.url, tmp_path / "docs.png") as page:
        page.route("**/*", only_here)
        page.goto("/docs")
        expect(page.locator(".opblock-summary-path", has_text="/v1/jobs").first).to_be_visible()
        expect(page.get_by_role("button", name="Authorize")).to_be_visible()
    assert not outside, outside
    schema = httpx.get(api.url + "/openapi.json", timeout=30).json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
