"""Redis locked down: an ACL user limited to deploy/redis-acl.conf, a wrong password, TLS with a CA the test makes
with openssl (the server certificate checked), and client certificates; each against real servers and workers."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from sentq.errors import ConfigError
from sentq.settings import Settings
from tests.conftest import (
    REPO,
    ApiServer,
    Worker,
    decode_message,
    free_port,
    launch_redis,
    restore,
    run_sentq,
    stop_process,
)

ACL_FILE = REPO / "deploy" / "redis-acl.conf"
PASSWORD = "Pw-5f3a9c1e77d24b0c"
ADMIN_PASSWORD = "admin-Pw-0b6e2d9f41"


def acl_user_line(password: str = PASSWORD) -> str:
    """The one user line of deploy/redis-acl.conf (the README quotes it), with its password filled in."""
    lines = [line for line in ACL_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith("user sentq ")
    return lines[0].replace(">PASSWORD", ">" + password)


def write_texts(path: Path, n: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"text number {i} is rather good and not bad at all\n")


def read_lines(path: Path) -> list[int]:
    with open(path) as f:
        return [json.loads(raw)["line"] for raw in f]


# --- certificates ------------------------------------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> Path:
    openssl(
        "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=sentq test {name}",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt"


def make_cert(directory: Path, ca: str, name: str, extensions: str) -> tuple[Path, Path]:
    (directory / f"{name}.ext").write_text(extensions + "\n")
    openssl(
        "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt", directory / f"{name}.key"


@dataclass
class Certs:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed (`sudo apt-get install openssl`)")
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca(d, "ca")
    other = make_ca(d, "other-ca")
    server_cert, server_key = make_cert(d, "ca", "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    client_cert, client_key = make_cert(d, "ca", "client", "extendedKeyUsage=clientAuth")
    return Certs(ca, other, server_cert, server_key, client_cert, client_key)


# --- servers -----------------------------------------------------------------------------------------------------


@dataclass
class SecureRedis:
    """A redis-server with ACL users from deploy/redis-acl.conf (default user off, an admin for the test), on a plain
    port and/or a TLS port."""

    directory: Path
    certs: Certs | None = None
    plain: bool = True
    tls: bool = False
    auth_clients: str = "no"
    bind: str = "127.0.0.1"  # addresses, space-separated (a test host's bridge too: tests/test_hosts.py)
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _admin: redis.Redis | None = None

    def url(self, password: str = PASSWORD, *, user: str = "sentq") -> str:
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def tls_url(self, password: str = PASSWORD, *, ca: Path | None = None, client_cert: bool = False) -> str:
        assert self.certs is not None
        query = f"ssl_cert_reqs=required&ssl_ca_certs={ca or self.certs.ca}"
        if client_cert:
            query += f"&ssl_certfile={self.certs.client_cert}&ssl_keyfile={self.certs.client_key}"
        return f"rediss://sentq:{password}@127.0.0.1:{self.tls_port}/0?{query}"

    def start(self) -> SecureRedis:
        aclfile = self.directory / "users.acl"
        aclfile.write_text(f"user default off\nuser admin on >{ADMIN_PASSWORD} ~* &* +@all\n{acl_user_line()}\n")
        args = [
            "redis-server",
            "--port", str(self.port if self.plain else 0),
            "--bind", *self.bind.split(),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--aclfile", str(aclfile),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.tls:
            assert self.certs is not None
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", str(self.certs.server_cert),
                "--tls-key-file", str(self.certs.server_key),
                "--tls-ca-cert-file", str(self.certs.ca),
                "--tls-auth-clients", self.auth_clients,
            ]  # fmt: skip
        self.proc = launch_redis(args, self.admin(), self.directory / "redis.log")
        return self

    def admin(self) -> redis.Redis:
        """The test's own client (admin user: sees everything, reads ACL LOG), one per server."""
        if self._admin is None:
            self._admin = self._connect_admin()
        return self._admin

    def _connect_admin(self) -> redis.Redis:
        if self.plain:
            return redis.Redis(
                host="127.0.0.1", port=self.port, username="admin", password=ADMIN_PASSWORD, socket_connect_timeout=2
            )
        assert self.certs is not None
        tls: dict[str, Any] = dict(ssl=True, ssl_ca_certs=str(self.certs.ca), ssl_cert_reqs="required")
        if self.auth_clients == "yes":
            tls.update(ssl_certfile=str(self.certs.client_cert), ssl_keyfile=str(self.certs.client_key))
        return redis.Redis(
            host="127.0.0.1",
            port=self.tls_port,
            username="admin",
            password=ADMIN_PASSWORD,
            socket_connect_timeout=2,
            **tls,
        )

    def denials(self) -> list[str]:
        """What the ACL refused since the last reset (`ACL LOG`), as readable lines."""
        shown = []
        for entry in self.admin().acl_log():
            info = {str(k): v.decode() if isinstance(v, bytes) else v for k, v in dict(entry).items()}
            shown.append(" ".join(f"{k}={info.get(k)}" for k in ("reason", "context", "object", "username", "count")))
        return shown

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        stop_process(self.proc)
        self.proc = None


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[SecureRedis]:
    """ACL users on a plain port and on a TLS port (server certificate only), one server."""
    server = SecureRedis(tmp_path_factory.mktemp("redis-acl"), certs, tls=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mtls_redis(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[SecureRedis]:
    """TLS only, client certificates required (`--tls-auth-clients yes`)."""
    server = SecureRedis(tmp_path_factory.mktemp("redis-mtls"), certs, plain=False, tls=True, auth_clients="yes")
    try:
        yield server.start()
    finally:
        server.stop()


def fresh(server: SecureRedis, model_state: dict[bytes, bytes]) -> redis.Redis:
    """The server flushed, the session's model v1 restored, the ACL log cleared."""
    admin = server.admin()
    admin.flushall()
    restore(admin, model_state)
    admin.acl_log_reset()
    return admin


def assert_masked(text: str, password: str = PASSWORD) -> None:
    assert password not in text
    assert "Traceback" not in text


# --- settings (fast) ---------------------------------------------------------------------------------------------


def test_tls_query_is_checked_at_start(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    ok = f"rediss://u:{PASSWORD}@h:6380/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    Settings.from_env({"SENTQ_BROKER_URL": ok, "SENTQ_RESULT_BACKEND": ok})
    for bad, says in [
        (f"rediss://u:{PASSWORD}@h:6380/0?ssl_cert_req=required", "ssl_cert_req"),
        (f"rediss://u:{PASSWORD}@h:6380/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        (f"rediss://u:{PASSWORD}@h:6380/0?ssl_cert_reqs=CERT_REQUIRED", "ssl_cert_reqs"),
        (f"rediss://u:{PASSWORD}@h:6380/0?ssl_cert_reqs=required&ssl_ca_certs={tmp_path}/nope.crt", "nope.crt"),
        (f"rediss://u:{PASSWORD}@h:6380/0?ssl_keyfile={ca}", "ssl_certfile"),
        (f"redis://u:{PASSWORD}@h:6379/0?ssl_ca_certs={ca}", "rediss://"),
    ]:
        for var in ("SENTQ_BROKER_URL", "SENTQ_RESULT_BACKEND"):
            with pytest.raises(ConfigError) as caught:
                Settings.from_env({var: bad})
            assert says in str(caught.value) and var in str(caught.value), str(caught.value)
            assert PASSWORD not in str(caught.value)
    bad_cli = run_sentq(["status"], f"rediss://u:{PASSWORD}@127.0.0.1:1/0?ssl_ca_certs=/nonexistent/ca.crt")
    assert bad_cli.returncode == 2, bad_cli.stderr
    assert "/nonexistent/ca.crt" in bad_cli.stderr
    assert_masked(bad_cli.stderr)


# --- ACL -----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_acl_user_runs_everything(
    acl_redis: SecureRedis, model_state: dict[bytes, bytes], tmp_path: Path, clocks: dict[str, str]
) -> None:
    """Workers, submit/wait, status, workers, retrain, model list, cancel and the reconciler's re-send of a lost
    message, all as the user of deploy/redis-acl.conf: `ACL LOG` records no denial, and no log holds the password."""
    admin = fresh(acl_redis, model_state)
    url = acl_redis.url()
    src = tmp_path / "t.txt"
    write_texts(src, 30_000)
    log = tmp_path / "w.log"
    w = Worker(url, log, name="acl@%h", env_extra=clocks).start()
    try:
        out = tmp_path / "rows.jsonl"
        done = run_sentq(["submit", str(src), "--chunk-size", "10000", "--wait", "-o", str(out)], url)
        assert done.returncode == 0, done.stderr + w.output() + "\n".join(acl_redis.denials())
        assert read_lines(out) == list(range(1, 30_001))
        job = json.loads(run_sentq(["status", "--json"], url).stdout)
        assert job
        for args in (["status"], ["workers"], ["model", "list"]):
            shown = run_sentq(args, url)
            assert shown.returncode == 0, shown.stderr
            assert_masked(shown.stdout + shown.stderr)
        retrained = run_sentq(["retrain", "--wait", "--force"], url, timeout=300)
        assert retrained.returncode == 0, retrained.stderr + w.output()
        assert "identical (sha256) to v1" in retrained.stderr  # v1's own data: nothing stored twice
        assert "v1" in run_sentq(["model", "list"], url).stdout

        # cancel: a job queued on a queue no worker reads, then cancelled
        big = tmp_path / "big.txt"
        write_texts(big, 20_000)
        parked = {"SENTQ_QUEUE": "sentq-parked"}
        queued = run_sentq(["submit", str(big), "--chunk-size", "5000"], url, **parked).stdout.strip()
        cancelled = run_sentq(["cancel", queued], url, **parked)
        assert cancelled.returncode == 0, cancelled.stderr
        assert json.loads(run_sentq(["status", queued, "--json"], url).stdout)["state"] == "cancelled"

        # the reconciler re-sends a message lost from the queue (tests/test_faults.py::test_lost_message_is_resent)
        lost = {"SENTQ_QUEUE": "sentq-lost", **clocks}
        job = run_sentq(["submit", str(src), "--chunk-size", "5000"], url, **lost).stdout.strip()
        messages = admin.lrange("sentq-lost", 0, -1)
        victim = next(m for m in messages if decode_message(m)[1] == 3)
        assert admin.lrem("sentq-lost", 1, victim) == 1
        w2 = Worker(url, tmp_path / "w2.log", name="acl-lost@%h", env_extra=lost).start()
        try:
            out2 = tmp_path / "rows2.jsonl"
            waited = run_sentq(["wait", job, "-o", str(out2), "--timeout", "90"], url, timeout=120, **lost)
            assert waited.returncode == 0, waited.stderr + w2.output()
            assert read_lines(out2) == list(range(1, 30_001))
        finally:
            w2.stop()
        api = ApiServer(url, tmp_path / "api.log").start()
        try:
            ready = httpx.get(api.url + "/readyz", timeout=15)
            assert ready.status_code == 200 and "sentq:***@" in ready.text and PASSWORD not in ready.text, ready.text
        finally:
            api.stop()
        assert acl_redis.denials() == []
    finally:
        w.stop()
    for path in (log, tmp_path / "w2.log", tmp_path / "api.log"):
        assert PASSWORD not in path.read_text(errors="replace")


@pytest.mark.slow
def test_wrong_password_is_exit_3_within_seconds_masked(acl_redis: SecureRedis, tmp_path: Path) -> None:
    bad = "Wrong-9d1c44e0aa"
    url = acl_redis.url(bad)
    src = tmp_path / "t.txt"
    write_texts(src, 10)
    for args in (["submit", str(src)], ["status"], ["workers"]):
        started = time.monotonic()
        result = run_sentq(args, url, timeout=30)
        took = time.monotonic() - started
        assert result.returncode == 3, (args, result.stdout, result.stderr)
        assert took < 8, (args, took)
        assert "***" in result.stderr and "user and password" in result.stderr, result.stderr
        assert_masked(result.stdout + result.stderr, bad)
    api = ApiServer(url, tmp_path / "api.log").start()
    try:
        ready = httpx.get(api.url + "/readyz", timeout=15)
        assert ready.status_code == 503
        assert "***" in ready.text and bad not in ready.text
    finally:
        api.stop()
    assert bad not in (tmp_path / "api.log").read_text(errors="replace")


# --- TLS ------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tls_job_end_to_end_server_certificate_checked(
    acl_redis: SecureRedis, model_state: dict[bytes, bytes], tmp_path: Path
) -> None:
    fresh(acl_redis, model_state)
    url = acl_redis.tls_url()
    env = {"SENTQ_RESULT_BACKEND": url}
    src = tmp_path / "t.txt"
    write_texts(src, 20_000)
    w = Worker(url, tmp_path / "w.log", name="tls@%h", env_extra=env).start()
    try:
        out = tmp_path / "rows.jsonl"
        done = run_sentq(["submit", str(src), "--chunk-size", "5000", "--wait", "-o", str(out)], url, **env)
        assert done.returncode == 0, done.stderr + w.output()
        assert read_lines(out) == list(range(1, 20_001))
        shown = run_sentq(["workers"], url, **env)
        assert shown.returncode == 0 and "tls@" in shown.stdout, shown.stderr
        assert_masked(shown.stdout + shown.stderr)
    finally:
        w.stop()
    assert PASSWORD not in (tmp_path / "w.log").read_text(errors="replace")
    assert acl_redis.denials() == []

    wrong = acl_redis.tls_url(ca=acl_redis.certs.other_ca if acl_redis.certs else None)
    started = time.monotonic()
    refused = run_sentq(["submit", str(src)], wrong, timeout=30, SENTQ_RESULT_BACKEND=wrong)
    assert refused.returncode == 3, refused.stderr
    assert time.monotonic() - started < 8
    assert "certificate" in refused.stderr.lower(), refused.stderr
    assert_masked(refused.stderr)


def test_celery_checks_the_certificate_of_a_bare_rediss_url(acl_redis: SecureRedis) -> None:
    """A rediss:// URL without ssl_cert_reqs: redis-py requires the certificate, and so do the Celery app's broker
    connection (kombu alone would connect unchecked, with a warning) and its result backend (Celery alone refuses the
    URL), because sentq passes the URL's TLS options on as broker_use_ssl / redis_backend_use_ssl."""
    from sentq import worker as worker_module

    bare = f"rediss://sentq:{PASSWORD}@127.0.0.1:{acl_redis.tls_port}/0"
    good = acl_redis.tls_url()
    old = worker_module.settings
    try:
        worker_module.configure(Settings.from_env({"SENTQ_BROKER_URL": bare, "SENTQ_RESULT_BACKEND": good}))
        with worker_module.app.connection_for_write() as conn, pytest.raises(Exception, match="(?i)certificate"):
            conn.ensure_connection(max_retries=1, timeout=5)
        worker_module.configure(Settings.from_env({"SENTQ_BROKER_URL": good, "SENTQ_RESULT_BACKEND": bare}))
        with pytest.raises(Exception, match="(?i)certificate"):
            worker_module.app._get_backend().client.ping()
        worker_module.configure(Settings.from_env({"SENTQ_BROKER_URL": good}))
        with worker_module.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
        assert worker_module.app._get_backend().client.ping()
    finally:
        worker_module.configure(old)


@pytest.mark.slow
def test_tls_client_certificates(mtls_redis: SecureRedis, model_state: dict[bytes, bytes], tmp_path: Path) -> None:
    fresh(mtls_redis, model_state)
    src = tmp_path / "t.txt"
    write_texts(src, 10_000)
    without = mtls_redis.tls_url()
    refused = run_sentq(["submit", str(src)], without, timeout=30, SENTQ_RESULT_BACKEND=without)
    assert refused.returncode == 3, refused.stderr
    assert_masked(refused.stderr)

    url = mtls_redis.tls_url(client_cert=True)
    env = {"SENTQ_RESULT_BACKEND": url}
    w = Worker(url, tmp_path / "w.log", name="mtls@%h", env_extra=env).start()
    try:
        out = tmp_path / "rows.jsonl"
        done = run_sentq(["submit", str(src), "--chunk-size", "5000", "--wait", "-o", str(out)], url, **env)
        assert done.returncode == 0, done.stderr + w.output()
        assert read_lines(out) == list(range(1, 10_001))
    finally:
        w.stop()
    assert mtls_redis.denials() == []


@pytest.mark.slow
def test_beat_over_tls_with_client_certificates_as_the_acl_user(
    mtls_redis: SecureRedis, model_state: dict[bytes, bytes], tmp_path: Path
) -> None:
    """`sentq beat` (celery-redbeat: schedule and lock in Redis) and a worker over rediss:// with a client
    certificate, as the ACL user: a scheduled retrain publishes v3 (v2, current, came from other data) and nothing
    is denied."""
    import signal

    from tests.test_beat import publish_other_model, start_beat, wait_until

    admin = fresh(mtls_redis, model_state)
    publish_other_model(admin)
    url = mtls_redis.tls_url(client_cert=True)
    w = Worker(url, tmp_path / "w.log", name="beat-tls@%h", concurrency=1).start()
    beat = start_beat(url, tmp_path, "beat")
    try:
        wait_until("a scheduled retrain to publish v3", lambda: admin.hexists("sentq:model:versions", "3"), 60)
        beat.kill(signal.SIGTERM)
        assert "beat: Releasing lock" in beat.log(), beat.log()[-3000:]
    finally:
        beat.kill()
        w.stop()
    assert mtls_redis.denials() == []
    assert PASSWORD not in beat.log() + (tmp_path / "w.log").read_text(errors="replace")
