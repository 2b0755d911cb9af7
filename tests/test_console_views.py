"""The console's operator views (issue #21) in a real headless Chromium against a real `sentq api`, real workers and
a real Redis: the home page's last hour, the queues and draining a stopped job's leftovers, the models page (verified
versions, retrain, the next scheduled retrain), shutting a worker down gracefully, and every page with Redis down.

Every wait is on a state (Playwright's expect, the ledger, a process), never a fixed sleep. Each test leaves
screenshots in its tmp_path. `UPDATE_DOCS_SCREENSHOT=1 pytest tests/test_console_views.py` also writes one per page to
docs/console-*.png (1280x800, the viewport only).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Dialog, Page, expect

from tests import test_console
from tests.conftest import SENTQ, ApiServer, Worker, base_env, decode_message, wait_until
from tests.test_console import REPO, UPDATE_DOCS, console, http, lines_of_text, submit, the_field, wait_job
from tests.test_faults import hooked

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


FULL, READ = "full-views-0123456789abcdef", "read-views-0123456789abcdef"
TOKENS = {"SENTQ_API_TOKENS": f"{FULL},ro:{READ}"}


def log_in(page: Page, token: str, where: str = "/") -> None:
    page.goto(f"/login?next={where}")
    page.get_by_label("token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".who")).to_contain_text("full access" if token == FULL else "read-only")


def queue_jobs(store: redis.Redis, queue: str) -> list[str]:
    return sorted(decode_message(raw)[0] for raw in store.lrange(queue, 0, -1))


def test_queues_view_and_drain(browser: Browser, redis_url: str, tmp_path: Path) -> None:
    """The queues page shows each job's messages in a queue; a cancelled job's and a forgotten job's leftovers are
    drained from it (behind a confirmation, full token only; 403 read-only), a running job's are never removed (its
    row offers no drain, the API refuses it 409, a drain of the queue leaves them) and it then finishes whole."""
    queue = "drain-q"
    api = ApiServer(redis_url, tmp_path / "api.log", env_extra={"SENTQ_QUEUE": queue, **TOKENS}).start()
    store = redis.Redis.from_url(redis_url)
    w = Worker(redis_url, tmp_path / "w.log", name="drain@%h", env_extra={"SENTQ_QUEUE": queue})
    dialogs: list[str] = []
    try:
        with http(api, FULL) as client:
            running = submit(client, lines_of_text(30), chunk_size=10, name="keep-me.txt")
            cancelled = submit(client, lines_of_text(30), chunk_size=10, name="stopped.txt")
            forgotten = submit(client, lines_of_text(20), chunk_size=10, name="forgotten.txt")
            for job in (cancelled, forgotten):
                assert client.post(f"/v1/jobs/{job}/cancel").status_code == 200
            assert client.delete(f"/v1/jobs/{forgotten}").status_code in (200, 204)
            assert queue_jobs(store, queue) == sorted([running] * 3 + [cancelled] * 3 + [forgotten] * 2)
            refused = client.post(f"/v1/queues/{queue}/drain", params={"job": running})
            assert refused.status_code == 409 and "cancel it first" in refused.json()["detail"], refused.text
            listed = {q["name"]: q for q in client.get("/v1/queues").json()["queues"]}[queue]
            assert {j["id"]: (j["state"], j["messages"], j["drainable"]) for j in listed["jobs"]} == {
                running: ("queued", 3, False),
                cancelled: ("cancelled", 3, True),
                forgotten: ("forgotten", 2, True),
            }

        with console(browser, api.url, tmp_path / "console-queues-read.png") as page:
            log_in(page, READ, "/queues")
            section = page.locator(f'section[data-queue="{queue}"]')
            expect(section.locator('[data-field="length"]')).to_have_text("8 message(s)")
            expect(section.locator(f'tr[data-job="{cancelled}"]')).to_be_visible()
            expect(page.locator("main button")).to_have_count(0)
            refused = page.request.post(f"/console/queues/{queue}/drain", form={"job": cancelled}, max_redirects=0)
            assert refused.status == 403 and "read-only" in refused.text()

        with console(browser, api.url, tmp_path / "console-queues-end.png") as page:
            log_in(page, FULL, "/queues")
            section = page.locator(f'section[data-queue="{queue}"]')
            rows = section.locator("tbody tr")
            expect(rows).to_have_count(3)
            expect(section.locator('[data-field="figures"]')).to_contain_text(
                "3 chunk(s) of 1 unfinished job(s) waiting"
            )
            expect(section.locator('[data-field="figures"]')).to_contain_text("5 leftover message(s)")
            keep = section.locator(f'tr[data-job="{running}"]')
            expect(keep.locator('[data-field="state"]')).to_have_text("queued")
            expect(keep.get_by_role("button")).to_have_count(0)
            expect(keep).to_contain_text("unfinished: kept")
            expect(section.locator(f'tr[data-job="{forgotten}"] [data-field="state"]')).to_have_text("forgotten")
            shoot(page, tmp_path, "console-queues")

            page.once("dialog", accept(dialogs))
            with page.expect_navigation(url="**/queues?msg=drained*"):
                section.locator(f'tr[data-job="{cancelled}"]').get_by_role("button", name="Drain").click()
            assert dialogs[-1] == f"Remove the 3 leftover message(s) of cancelled job {cancelled} from queue {queue}?"
            expect(page.get_by_role("status")).to_have_text("removed 3 leftover message(s) of 1 stopped job(s)")
            assert queue_jobs(store, queue) == sorted([running] * 3 + [forgotten] * 2)
            expect(section.locator('[data-field="length"]')).to_have_text("5 message(s)")

            page.once("dialog", accept(dialogs))
            with page.expect_navigation(url="**/queues?msg=drained*"):
                section.get_by_role("button", name="Drain 2 leftover message(s) of stopped jobs").click()
            assert dialogs[-1].startswith(f"Remove every leftover message of stopped jobs (2) from queue {queue}?")
            expect(page.get_by_role("status")).to_have_text("removed 2 leftover message(s) of 1 stopped job(s)")
            assert queue_jobs(store, queue) == [running] * 3  # the running job's messages are all there
            expect(section.locator("tbody tr")).to_have_count(1)
            expect(section.get_by_role("button")).to_have_count(0)

        w.start()
        with http(api, FULL) as client:
            record = wait_job(client, running, lambda r: r["state"] == "done")
            assert record["texts_done"] == 30 and record["chunks_done"] == 3
            rows = client.get(f"/v1/jobs/{running}/results").text.splitlines()
            assert len(rows) == 30
    finally:
        w.stop()
        api.stop()
        store.close()


def test_models_verified_use_retrain_and_schedule(browser: Browser, own_redis_url: str, tmp_path: Path) -> None:
    """The models page offers "use" only for versions whose artifact verifies (a tampered one says why it is
    refused); "Retrain now" (confirmed, full token) queues a retrain; the next scheduled retrain is the cron's next
    time while no beat runs, then sentq beat's own (celery-redbeat's schedule in Redis) once one does."""
    import time

    from tests.test_beat import queued_retrains
    from tests.test_registry import flipped_model, publish

    url = own_redis_url
    store = redis.Redis.from_url(url)
    tampered = publish(store, flipped_model("tampered-views"))
    good = publish(store, flipped_model("good-views"))
    key = f"sentq:model:{tampered.version}:artifact"
    artifact = bytearray(store.get(key) or b"")
    artifact[len(artifact) // 2] ^= 0xFF
    store.set(key, bytes(artifact))
    env = {"SENTQ_RETRAIN_SCHEDULE": "30 4 * * *", **TOKENS}
    api = ApiServer(url, tmp_path / "api.log", env_extra=env).start()
    beat: subprocess.Popen[bytes] | None = None
    dialogs: list[str] = []
    try:
        with console(browser, api.url, tmp_path / "console-models-end.png") as page:
            log_in(page, FULL, "/models")
            bad_row = page.locator(f'tr[data-version="{tampered.version}"]')
            expect(bad_row.locator('[data-field="artifact"]')).to_contain_text("refused: ")
            expect(bad_row.locator('[data-field="artifact"]')).to_contain_text("corrupt")
            expect(bad_row.get_by_role("button")).to_have_count(0)
            good_row = page.locator(f'tr[data-version="{good.version}"]')
            expect(good_row.locator('[data-field="artifact"]')).to_have_text("verified")
            expect(good_row.get_by_role("button", name=f"Use v{good.version}")).to_be_visible()
            # No beat: the next time by SENTQ_RETRAIN_SCHEDULE (04:30 UTC), and the page says no beat runs.
            expect(page.locator('[data-field="next-retrain"]')).to_contain_text(" 04:30:00 (in ")
            expect(page.locator('[data-field="beat"]')).to_contain_text("sentq beat is not running")
            shoot(page, tmp_path, "console-models")

            page.once("dialog", accept(dialogs))
            with page.expect_navigation(url="**/models?msg=used*"):
                good_row.get_by_role("button", name=f"Use v{good.version}").click()
            expect(page.get_by_role("status")).to_have_text(f"v{good.version} is current (was v1)")

            assert queued_retrains(store) == []
            page.once("dialog", accept(dialogs))
            with page.expect_navigation(url="**/models?msg=retrain*"):
                page.get_by_role("button", name="Retrain now").click()
            assert dialogs[-1].startswith("Retrain now on the default data?")
            expect(page.get_by_role("status")).to_contain_text("retrain queued")
            (queued,) = queued_retrains(store)
            message = json.loads(store.lindex("sentq.retrain", 0) or b"{}")
            assert message["headers"]["task"] == "sentq.retrain"

            # sentq beat (an hourly interval here): redbeat runs the never-run entry at once, then keeps the next
            # due time in its schedule; the page shows that one.
            with open(tmp_path / "beat.log", "wb") as log:
                beat = subprocess.Popen(
                    [*SENTQ, "beat", "-l", "INFO"],
                    env=base_env(url, SENTQ_RETRAIN_SCHEDULE="3600"),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=tmp_path,
                )

            def due() -> float:
                return float(store.zscore("sentq:redbeat::schedule", "sentq:redbeat:retrain") or 0)

            wait_until(lambda: due() > time.time() + 3000, 60, "beat keeps the next retrain an hour away")
            page.reload()
            expect(page.locator('[data-field="beat"]')).to_contain_text("sentq beat is running")
            shown = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(due()))
            expect(page.locator('[data-field="next-retrain"]')).to_contain_text(shown)
            expect(page.locator('[data-field="schedule"]')).to_contain_text("3600 (every 1h 00m)")

        with console(browser, api.url, tmp_path / "console-models-read.png") as page:
            log_in(page, READ, "/models")
            expect(page.locator("main button")).to_have_count(0)
            refused = page.request.post("/console/models/retrain", max_redirects=0)
            assert refused.status == 403 and "read-only" in refused.text()
    finally:
        if beat is not None and beat.poll() is None:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(timeout=30)
        api.stop()
        store.close()


def test_worker_shut_down_gracefully(browser: Browser, own_redis_url: str, tmp_path: Path) -> None:
    """A worker of the test's own, shut down from the console (confirmed, full token; none for read-only, 403) while
    it scores a chunk: it finishes that chunk, takes no more and exits; no chunk is lost (the ledger accounts for
    every one) and another worker finishes the job whole."""
    url, queue = own_redis_url, "shut-q"
    api = ApiServer(url, tmp_path / "api.log", env_extra={"SENTQ_QUEUE": queue, **TOKENS}).start()
    env = hooked(SENTQ_QUEUE=queue, SENTQ_TEST_SLOW="1.0")
    w = Worker(url, tmp_path / "w.log", name="shut-me@%h", env_extra=env, concurrency=1).start()
    w2 = Worker(url, tmp_path / "w2.log", name="after@%h", env_extra={"SENTQ_QUEUE": queue})
    store = redis.Redis.from_url(url)
    dialogs: list[str] = []
    try:
        with http(api, FULL) as client:
            wait_until(lambda: bool(client.get("/v1/workers").json()["workers"]), 30, "the worker beats")
            (listed,) = client.get("/v1/workers").json()["workers"]
            name = listed["name"]
            job = submit(client, lines_of_text(30), chunk_size=5, name="six-chunks.txt")
            wait_until(lambda: bool(store.hlen(f"sentq:job:{job}:leases")), 30, "the worker holds a chunk")
            (held,) = [k.decode() for k in store.hkeys(f"sentq:job:{job}:leases")]

        with console(browser, api.url, tmp_path / "console-workers-read.png") as page:
            log_in(page, READ, "/workers")
            expect(page.locator(f'tr[data-worker="{name}"]')).to_be_visible()
            expect(page.locator("main button")).to_have_count(0)
            refused = page.request.post(f"/console/workers/{name}/shutdown", max_redirects=0)
            assert refused.status == 403 and "read-only" in refused.text()
        assert w.proc is not None and w.proc.poll() is None

        with console(browser, api.url, tmp_path / "console-workers-end.png") as page:
            log_in(page, FULL, "/workers")
            row = page.locator(f'tr[data-worker="{name}"]')
            expect(row.get_by_role("button", name="Shut down")).to_be_visible()
            shoot(page, tmp_path, "console-workers")
            page.once("dialog", accept(dialogs))
            with page.expect_navigation(url="**/workers?msg=shutdown"):
                row.get_by_role("button", name="Shut down").click()
            assert dialogs[-1].startswith(f"Shut worker {name} down?")
            expect(page.get_by_role("status")).to_contain_text("asked the worker to shut down")
            assert w.proc.wait(timeout=60) == 0, w.output()
            assert "Got shutdown from remote" in w.output()
            # It finished the chunk it held, and holds none; every chunk is done or still pending: none lost.
            assert store.sismember(f"sentq:job:{job}:done", held)
            assert store.hlen(f"sentq:job:{job}:leases") == 0
            done = {k.decode() for k in store.smembers(f"sentq:job:{job}:done")}
            pending = {k.decode() for k in store.zrange(f"sentq:job:{job}:pending", 0, -1)}
            assert done | pending == {str(i) for i in range(6)} and not done & pending, (done, pending)
            assert len(pending) >= 1 and store.hlen(f"sentq:job:{job}:failed") == 0
            page.reload()
            expect(page.locator(f'tr[data-worker="{name}"]')).to_have_count(0)

        w2.start()
        with http(api, FULL) as client:
            record = wait_job(client, job, lambda r: r["state"] == "done")
            assert (record["chunks_done"], record["chunks_failed"], record["texts_done"]) == (6, 0, 30)
            rows = [line for line in client.get(f"/v1/jobs/{job}/results").text.splitlines() if line]
            assert [json.loads(r)["line"] for r in rows] == list(range(1, 31))
    finally:
        w.stop()
        w2.stop()
        api.stop()
        store.close()


def test_every_page_says_redis_is_down(browser: Browser, tmp_path: Path, model_state: dict[bytes, bytes]) -> None:
    """With the test's own Redis stopped, each console page is still a console page (its header, its links) that
    says Redis does not answer (503); once Redis is back, the same pages work again."""
    from tests.conftest import RedisServer, restore

    server = RedisServer(tmp_path / "redis", appendonly=True)  # the job is still there after the restart
    server.directory.mkdir()
    server.start()
    client = server.client()
    restore(client, model_state)
    api = ApiServer(server.url, tmp_path / "api.log", env_extra={"SENTQ_QUEUE": "down-q"}).start()
    try:
        with http(api) as plain:
            job = submit(plain, lines_of_text(5), name="before-the-outage.txt")
        pages = ["/", f"/jobs/{job}", "/queues", "/workers", "/models"]
        with console(browser, api.url, tmp_path / "console-redis-down-end.png") as page:
            server.stop()
            for path in pages:
                reply = page.goto(path)
                assert reply is not None and reply.status == 503, (path, reply and reply.status)
                expect(page.get_by_role("heading", name="sentq cannot reach its Redis")).to_be_visible()
                expect(page.locator("main")).to_contain_text(server.url.removesuffix("/0"))
                expect(page.get_by_role("link", name="Queues")).to_be_visible()
                page.screenshot(path=tmp_path / f"down{path.replace('/', '-')}.png")
            page.goto("/models")
            shoot(page, tmp_path, "console-redis-down")

            server.start()
            for path in pages:
                reply = page.goto(path)
                assert reply is not None and reply.status == 200, (path, reply and reply.status)
                expect(page.get_by_role("heading", name="sentq cannot reach its Redis")).to_have_count(0)
            expect(page.locator("tr.current")).to_have_count(1)  # the models page, from the Redis that is back
    finally:
        api.stop()
        client.close()
        server.stop()


def seconds_of(shown: str) -> float:
    """The console's duration words ("9s", "1m 05s") as seconds."""
    found = re.fullmatch(r"(?:(\d+)m )?(\d+)s", shown)
    assert found, shown
    return 60 * int(found[1] or 0) + int(found[2])


@pytest.mark.slow
def test_eta_on_the_job_page_after_a_worker_outage(
    browser: Browser, own_redis_url: str, tmp_path: Path, clocks: dict[str, str]
) -> None:
    """The job page open through a worker outage longer than the job's own run: it says it waits for a worker (live),
    and once a new worker has scored a few chunks, the ETA it shows is within 2x of the time the job then takes."""
    import time

    url, queue = own_redis_url, "eta-console"
    chunks, size, slow_s = 100, 50, 0.1  # about 10 s of scoring on one process
    run_s = chunks * slow_s
    env = hooked(SENTQ_QUEUE=queue, SENTQ_TEST_SLOW=str(slow_s), **clocks)
    api = ApiServer(url, tmp_path / "api.log", env_extra={"SENTQ_QUEUE": queue, **clocks}).start()
    w1 = Worker(url, tmp_path / "w1.log", name="eta-c1@%h", env_extra=env, concurrency=1).start()
    w2 = Worker(url, tmp_path / "w2.log", name="eta-c2@%h", env_extra=env, concurrency=1)
    try:
        with http(api) as client, console(browser, api.url, tmp_path / "console-eta-end.png") as page:
            job = submit(client, lines_of_text(chunks * size), chunk_size=size, name="eta.txt")
            page.goto(f"/jobs/{job}")
            wait_job(client, job, lambda r: r["chunks_done"] >= 5)
            w1.stop(signal.SIGKILL)
            stopped = time.monotonic()
            expect(the_field(page, "eta")).to_have_text("waiting for a worker", timeout=30_000)
            wait_until(lambda: time.monotonic() - stopped > 1.5 * run_s, 3 * run_s, "the outage outlasts the job's run")
            expect(the_field(page, "eta")).to_have_text("waiting for a worker")
            page.screenshot(path=tmp_path / "console-eta-waiting.png")
            w2.start()
            restarted = client.get(f"/v1/jobs/{job}").json()["chunks_done"]

            def scored_on_page() -> int:
                return int(the_field(page, "chunks").inner_text().split(" done")[0])

            wait_until(lambda: scored_on_page() >= restarted + 5, 60, "the page shows a few chunks scored anew")
            shown = the_field(page, "eta").inner_text()
            read_at = time.monotonic()
            page.screenshot(path=tmp_path / "console-eta-after.png")
            wait_job(client, job, lambda r: r["state"] == "done", timeout=120)
            took = time.monotonic() - read_at
            ratio = seconds_of(shown) / took
            print(f"ETA shown {shown!r}, took {took:.2f}s, ratio {ratio:.2f}")
            assert 0.5 <= ratio <= 2.0, (shown, took)
    finally:
        w1.stop()
        w2.stop()
        api.stop()
