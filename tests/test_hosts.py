"""sentq on several hosts: each host a network namespace linked to the test's own by a veth pair on a private /24
(tests/netns.py), running sentq installed from the suite's wheel with its own HOME, TMPDIR and working directory and
no data files: the training set and the models reach it through Redis only. Redis listens on the bridge and on
loopback; nothing leaves the test's namespaces. Links are cut on the bridge's side, never the processes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import redis

from sentq import keys, ledger
from tests import netns
from tests.conftest import REPO, RedisServer, restore, run_sentq, wait_until
from tests.hosts import Host, Installed
from tests.test_beat import Beat, queued_retrains
from tests.test_faults import deliveries, leases, read_lines


@dataclass
class Lan:
    """Two hosts (a, b) on one bridge, and the test's own Redis they reach at the bridge's address."""

    network: netns.Network
    redis: RedisServer
    links: list[netns.Namespace]
    installed: Installed
    hooks: Path  # a copy of tests/hooks: a host sees nothing of the repository
    # The session's training set and v1 (conftest's model_state), put in Redis before each test as `sentq data fetch
    # --upload` and a first worker would: the hosts get both from Redis only, never from files.
    base: dict[bytes, bytes]
    hosts: list[Host] = field(default_factory=list)  # new ones for each test: HOME, TMPDIR, cwd of their own

    @property
    def url(self) -> str:
        """The same Redis from the test's own host (loopback)."""
        return self.redis.url

    def client(self) -> redis.Redis:
        return self.redis.client()


@pytest.fixture(scope="module")
def namespaces_possible() -> None:
    """Skip the module, before anything is built for it, where network namespaces cannot be made."""
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def lan_network(
    namespaces_possible: None,
    installed: Installed,
    model_state: dict[bytes, bytes],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Lan]:
    """The namespaces, bridge and Redis, made once for the module (hosts are made per test)."""
    root = tmp_path_factory.mktemp("lan")
    shutil.copytree(REPO / "tests" / "hooks", root / "hooks", ignore=shutil.ignore_patterns("__pycache__"))
    network = netns.Network()
    server = RedisServer(root / "redis", bind=f"{network.gateway} 127.0.0.1")
    try:
        network.up()
        server.directory.mkdir()
        server.start()
        links = [network.add_host(), network.add_host()]
        yield Lan(network, server, links, installed, root / "hooks", model_state)
    finally:
        server.stop()
        network.close()


@pytest.fixture
def lan(lan_network: Lan, tmp_path: Path) -> Iterator[Lan]:
    """Hosts a and b, new, with their links up and Redis as it was after v1 (flushed around the test)."""
    client = lan_network.client()
    url = f"redis://{lan_network.network.gateway}:{lan_network.redis.port}/0"
    hosts = [
        Host(lan_network.installed, tmp_path / name, url, prefix=link.prefix, paths=[lan_network.hooks])
        for name, link in zip("ab", lan_network.links, strict=True)
    ]
    for link in lan_network.links:
        link.restore()
    client.flushdb()
    restore(client, lan_network.base)
    try:
        yield replace(lan_network, hosts=hosts)
    finally:
        for link in lan_network.links:
            link.restore()
            link.kill()  # anything a failed test left running on the host
        client.flushdb()
        client.close()


def write_lines(path: Path, n: int) -> list[str]:
    texts = [f"text {i} is {'great and lovely' if i % 3 else 'awful and sad'}" for i in range(n)]
    path.write_text("".join(f"{t}\n" for t in texts))
    return texts


def rows_of(path: Path) -> list[dict[str, object]]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def chunks_done_by(worker_log: Path) -> int:
    """Chunks this worker scored and wrote (a duplicate delivery returns 'duplicate', not 'done')."""
    text = worker_log.read_text(errors="replace")
    return sum(
        1 for line in text.splitlines() if "sentq.score_chunk[" in line and "succeeded" in line and "'done'" in line
    )


def status(url: str, job: str) -> dict[str, object]:
    shown = run_sentq(["status", job, "--json"], url)
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def test_two_hosts_score_one_job_together(lan: Lan, tmp_path: Path) -> None:
    """200,000 lines submitted on host a, scored by a and b, followed from the test's own host: every row once, in
    input order, and both hosts scored chunks of it."""
    a, b = lan.hosts
    texts = write_lines(a.cwd / "texts.txt", 200_000)
    workers = [a.worker("a"), b.worker("b")]
    try:
        submitted = a.sentq("submit", "texts.txt", "--chunk-size", "10000")
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.strip()
        out = tmp_path / "rows.jsonl"
        waited = run_sentq(["wait", job, "-o", str(out), "--timeout", "90"], lan.url, timeout=120)
        assert waited.returncode == 0, waited.stderr + workers[0].output() + workers[1].output()
    finally:
        for w in workers:
            w.stop()
    rows = rows_of(out)
    assert [r["line"] for r in rows] == list(range(1, 200_001))
    assert [r["text"] for r in rows] == texts
    assert {r["model"] for r in rows} == {"v1"}
    shown = status(lan.url, job)
    assert (shown["chunks_done"], shown["texts_done"], shown["chunks_failed"]) == (20, 200_000, 0)
    client = lan.client()
    assert {deliveries(client, job, i) for i in range(20)} == {1}
    by_host = [chunks_done_by(w.log_path) for w in workers]
    print(f"\nchunks scored by host a, b: {by_host}")
    assert sum(by_host) == 20 and min(by_host) >= 2, by_host
    assert not any(h.data_dir.exists() for h in lan.hosts)


def test_a_host_scores_over_tls_with_client_certificates_as_the_acl_user(lan: Lan, tmp_path: Path) -> None:
    """Redis with only a TLS port on the bridge and loopback (server certificate for both addresses, client
    certificates required, default user off, the ACL user of deploy/redis-acl.conf): a worker on host a reaches it
    at the bridge's address with a rediss:// URL; a job submitted from the test's own host is scored there."""
    from tests.test_secure_redis import PASSWORD, Certs, SecureRedis, make_ca, make_cert

    d = tmp_path / "certs"
    d.mkdir()
    ca = make_ca(d, "ca")
    gateway = lan.network.gateway
    san = f"subjectAltName=IP:{gateway},IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    server_cert, server_key = make_cert(d, "ca", "server", san)
    client_cert, client_key = make_cert(d, "ca", "client", "extendedKeyUsage=clientAuth")
    certs = Certs(ca, ca, server_cert, server_key, client_cert, client_key)
    (tmp_path / "redis").mkdir()
    server = SecureRedis(tmp_path / "redis", certs=certs, plain=False, tls=True, auth_clients="yes")
    server.bind = f"{gateway} 127.0.0.1"
    server.start()
    try:
        restore(server.admin(), lan.base)  # the training set and v1, as the other tests' Redis has them
        local = server.tls_url(client_cert=True)
        remote = local.replace("@127.0.0.1:", f"@{gateway}:")
        host = replace(lan.hosts[0], url=remote)
        w = host.worker("tls")
        try:
            src = tmp_path / "texts.txt"
            texts = write_lines(src, 20_000)
            out = tmp_path / "rows.jsonl"
            done = run_sentq(["submit", str(src), "--chunk-size", "5000", "--wait", "-o", str(out)], local, timeout=120)
            assert done.returncode == 0, done.stderr + w.output()
        finally:
            w.stop()
        assert [r["text"] for r in rows_of(out)] == texts
        assert chunks_done_by(w.log_path) == 4  # all of it scored on the host, over TLS
        assert server.denials() == []
        assert PASSWORD not in done.stderr + w.output()
    finally:
        server.stop()


def worker_stats(client: redis.Redis, prefix: str) -> bytes | None:
    """What the worker named ``prefix``@... recorded with its last chunk (written with the chunk's rows)."""
    for name, value in client.hgetall(keys.WORKER_STATS).items():
        if name.decode().startswith(prefix):
            return bytes(value)
    return None


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_host_cut_off_mid_job(lan: Lan, tmp_path: Path, clocks: dict[str, str]) -> None:
    """Host a's link is cut while it scores a chunk (its process runs on): the ledger re-sends the chunk to b and the
    job completes, every row once, in order. With the link back, a's late write of that chunk changes nothing."""
    a, b = lan.hosts
    link = lan.links[0]
    client = lan.client()
    src = tmp_path / "texts.txt"
    texts = write_lines(src, 100_000)
    # a holds each chunk 3 s (tests/hooks: SENTQ_TEST_SLOW), so the cut lands while it scores one.
    wa = a.worker("a", SENTQ_TEST_SLOW="3", **clocks)
    wb = b.worker("b", **clocks)
    lock = keys.reconciler_lock("redis")
    try:
        # The hardest case: a also runs the ledger's reconciler (it started first), so b must take that over too.
        wait_until(lambda: (client.get(lock) or b"").startswith(b"a@"), 30, "a holds the reconciler lock")
        job = run_sentq(["submit", str(src), "--chunk-size", "10000"], lan.url).stdout.strip()
        wait_until(lambda: any(h.startswith("a@") for h in leases(client, job).values()), 30, "a holds a chunk")
        held = {i: h for i, h in leases(client, job).items() if h.startswith("a@")}
        assert len(held) == 1, held
        ((chunk, lease),) = held.items()
        holder = lease.rsplit("|", 1)[0]
        link.cut()
        cut_at = time.monotonic()
        resent_at = done_at = 0.0
        deadline = cut_at + 60
        while not done_at:  # when the ledger gave a's chunk up, and when the job finished
            assert time.monotonic() < deadline, f"not recovered in 60 s: {leases(client, job)}\n{wb.output()}"
            if not resent_at and leases(client, job).get(chunk) != lease:
                resent_at = time.monotonic()
            if client.hget(keys.job(job), "state") == b"done":
                done_at = time.monotonic()
            time.sleep(0.02)
        out = tmp_path / "rows.jsonl"
        waited = run_sentq(["wait", job, "-o", str(out)], lan.url)
        assert waited.returncode == 0, waited.stderr
        assert read_lines(out) == list(range(1, 100_001))
        assert [r["text"] for r in rows_of(out)] == texts
        before = status(lan.url, job)
        assert (before["chunks_done"], before["texts_done"], before["chunks_failed"]) == (10, 100_000, 0)
        dead = {d["instance"]: d["chunks"] for d in ledger.dead_workers(client)}
        assert dead == {holder: [f"{job}:{chunk}"]}, dead
        assert wa.proc is not None and wa.proc.poll() is None  # cut off, not dead
        assert (client.get(lock) or b"").startswith(b"b@")
        stats = client.hgetall(keys.STATS)
        a_stats = worker_stats(client, "a@")

        link.restore()
        restored_at = time.monotonic()
        # a comes back: its heartbeat resumes, and its pool process, which scored the chunk through the cut, writes it.
        wait_until(lambda: any(w.instance == holder for w in ledger.live_workers(client)), 60, "a beats again")
        wait_until(lambda: worker_stats(client, "a@") != a_stats, 60, "a's late write of its chunk arrives")
        back_s = time.monotonic() - restored_at
        wait_until(lambda: "'duplicate'" in wa.output(), 30, "a's task reports its late write a duplicate")
        assert status(lan.url, job) == before
        assert client.hgetall(keys.STATS) == stats  # nothing counted twice (chunks, texts, jobs finished)
        again = tmp_path / "again.jsonl"
        assert run_sentq(["wait", job, "-o", str(again)], lan.url).returncode == 0
        assert again.read_bytes() == out.read_bytes()
        assert deliveries(client, job, chunk) >= 2
        assert chunks_done_by(wb.log_path) == 10  # its nine and a's, re-sent
        print(
            f"\nlink cut -> chunk re-sent {resent_at - cut_at:.1f}s, -> job done {done_at - cut_at:.1f}s; "
            f"link back -> late write seen {back_s:.1f}s"
        )
        assert done_at - cut_at < 30
    finally:
        link.restore()
        wa.stop()
        wb.stop()


def test_retrain_on_one_host_serves_the_other(lan: Lan) -> None:
    """`sentq retrain --data FILE` typed on host b runs on host a (the only consumer of the retrain queue): the file
    travels through Redis, and so does the lexicon a takes from the default set. b's running worker scores the next
    job with the new version."""
    a, b = lan.hosts
    texts = write_lines(b.cwd / "texts.txt", 2_000)
    labelled = [(f"great product, love it {i}", "positive") for i in range(100)]
    labelled += [(f"awful terrible service {i}", "negative") for i in range(100)]
    (b.cwd / "labelled.jsonl").write_text("".join(json.dumps({"text": t, "label": la}) + "\n" for t, la in labelled))
    trainer = a.worker("trainer", queues="sentq.retrain")
    scorer = b.worker("scorer", queues="sentq")
    try:
        first = b.sentq("submit", "texts.txt", "--chunk-size", "500", "--wait")
        assert first.returncode == 0, first.stderr
        assert {json.loads(r)["model"] for r in first.stdout.splitlines()} == {"v1"}
        retrained = b.sentq("retrain", "--data", "labelled.jsonl", "--wait", "--json", "--timeout", "90")
        assert retrained.returncode == 0, retrained.stderr + trainer.output()
        result = json.loads(retrained.stdout)
        assert (result["version"], result["promoted"], result["n_train"]) == (2, True, 160), result
        assert "retrained v2" in trainer.output() and "made current" in trainer.output()
        second = b.sentq("submit", "texts.txt", "--chunk-size", "500", "--wait")
        assert second.returncode == 0, second.stderr
        rows = [json.loads(r) for r in second.stdout.splitlines()]
        assert [r["text"] for r in rows] == texts
        assert {r["model"] for r in rows} == {"v2"}
    finally:
        trainer.stop()
        scorer.stop()
    assert chunks_done_by(trainer.log_path) == 0 and chunks_done_by(scorer.log_path) == 8
    assert "loaded model v2" in scorer.output()
    assert not any(h.data_dir.exists() for h in lan.hosts)


def start_beat(host: Host, name: str) -> Beat:
    log_path = host.root / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*host.prefix, sys.executable, "-m", "sentq.cli", "beat", "-l", "INFO"],
            env=host.env(SENTQ_RETRAIN_SCHEDULE="2"),
            cwd=host.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Beat(name, proc, log_path)


def send_times(client: redis.Redis) -> list[float]:
    """When beat sent each queued retrain (its expiry, a 2 s period, minus 2 s), in order."""
    from datetime import datetime

    found = []
    for raw in client.lrange("sentq.retrain", 0, -1):
        expires = json.loads(raw)["headers"]["expires"]
        found.append(datetime.fromisoformat(expires).timestamp() - 2)
    return sorted(found)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_beat_on_two_hosts_fires_once_per_tick_and_survives_a_cut_link(lan: Lan) -> None:
    """`sentq beat` on hosts a and b: one sends each tick; its link cut, the other takes over; with the link back the
    cut one finds its lock gone and starts again as a standby (`sentq beat` restarts celery beat itself), and every
    tick still fires once."""
    client = lan.client()
    beats = {"a": start_beat(lan.hosts[0], "beat-a"), "b": start_beat(lan.hosts[1], "beat-b")}
    try:
        wait_until(lambda: any(b.sent >= 3 for b in beats.values()), 40, "one beat sent three ticks")
        first = next(k for k, b in beats.items() if b.active)
        other = "b" if first == "a" else "a"
        active, standby = beats[first], beats[other]
        assert standby.sent == 0 and not standby.active, standby.log()
        # Cut just after a tick's message is in Redis: the next send is a tick (2 s) away, so the cut never lands
        # between a send and its publish (which would publish once the link is back).
        sent = active.sent
        wait_until(lambda: active.sent > sent and len(queued_retrains(client)) == active.sent, 10, "a tick is sent")
        link = lan.links[0 if first == "a" else 1]
        link.cut()
        cut_at = time.monotonic()
        wait_until(lambda: standby.sent > 0, 30, f"beat-{other} takes over")
        takeover_s = time.monotonic() - cut_at
        assert standby.active
        wait_until(lambda: standby.sent >= 2, 30, f"beat-{other} sends again")
        sent_before = active.sent
        link.restore()
        wait_until(
            lambda: active.log().count("beat: Starting") >= 2, 60, f"beat-{first} gives up its lost lock, starts again"
        )
        assert active.proc.poll() is None, active.log()[-3000:]  # `sentq beat` restarted celery beat itself
        mark = standby.sent
        wait_until(lambda: standby.sent >= mark + 3, 30, f"beat-{other} sends three more")
        assert active.sent == sent_before and active.log().count("beat: Acquired lock") == 1, active.log()[-3000:]

        # beat logs a send just before it publishes it: the last one may still be on its way.
        sent = active.sent + standby.sent
        wait_until(lambda: len(queued_retrains(client)) >= sent, 10, "every send logged is in Redis")
        ids = queued_retrains(client)
        assert len(ids) == len(set(ids)) == sent
        times = send_times(client)
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        assert min(gaps) > 1.0, gaps  # two beats sending one tick would be milliseconds apart
        print(f"\nbeat takeover after the cut: {takeover_s:.1f}s")
        assert takeover_s < 15
    finally:
        for beat in beats.values():
            beat.kill(signal.SIGKILL)
