"""The HTML console and the API against hostile links, framing and stolen or stale cookies, over real HTTP: a real
`sentq api` (uvicorn) subprocess on a real Redis (tests/conftest.py), plain httpx clients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from sentq.web import auth
from tests.conftest import ApiServer, Worker

FULL, READ = "full-guard-0123456789abcdef", "read-guard-0123456789abcdef"
# What a crafted link would have the console say as its own alert.
BAIT = "Your token expired, paste it at https://evil.example/login"


def client(api: ApiServer, **kw: object) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=60, follow_redirects=False, **kw)  # type: ignore[arg-type]


@contextmanager
def serving(redis_url: str, log: Path, **env: str) -> Iterator[ApiServer]:
    api = ApiServer(redis_url, log, env_extra=env).start()
    try:
        yield api
    finally:
        api.stop()


def log_in(http: httpx.Client, token: str, **headers: str) -> httpx.Response:
    reply = http.post("/login", data={"token": token, "next": "/"}, headers=headers)
    assert reply.status_code == 303 and reply.headers["location"] == "/", reply.text
    return reply


def test_the_console_shows_no_text_from_the_url(api: ApiServer, redis_url: str, tmp_path: Path) -> None:
    """A link can pick one of the console's own messages by code, never say something of its own."""
    with client(api) as http:
        made = http.post("/v1/jobs?name=linked.txt", content=b"great product\n", headers={"Content-Type": "text/plain"})
        assert made.status_code == 202, made.text
        job_id = made.json()["id"]
        for path in (
            f"/?msg={BAIT}",
            f"/?error={BAIT}",
            f"/workers?error={BAIT}",
            f"/models?msg={BAIT}",
            f"/jobs/{job_id}?error={BAIT}",
            f"/jobs/{job_id}?msg={BAIT}",
            f"/?state={BAIT}",  # a bad filter is said in the console's own words, not echoed
            f"/?cursor={BAIT}",
            "/jobs/Your token expired, paste it at evil.example",  # not "no job '<the link's text>'"
        ):
            page = http.get(path)
            assert page.status_code in (200, 400, 404), (path, page.status_code)
            assert page.headers["content-type"].startswith("text/html"), path
            assert "paste it" not in page.text and "evil.example" not in page.text, (path, page.text)
        # An unknown code shows nothing at all; a known one its fixed text, with the job's facts read from Redis.
        assert 'class="flash' not in http.get("/?msg=cancelled-everything").text
        assert 'class="flash' not in http.get(f"/jobs/{job_id}?msg=retried&chunks=9x").text
        page = http.get(f"/jobs/{job_id}?msg=submitted").text
        assert f'role="status">job {job_id} submitted</p>' in page and "linked.txt" in page
        unknown = http.get("/jobs/0123456789ab")
        assert unknown.status_code == 404 and "no job 0123456789ab" in unknown.text

    with serving(redis_url, tmp_path / "api.log", SENTQ_API_TOKENS=FULL) as locked, client(locked) as http:
        page = http.get("/login", params={"error": BAIT, "msg": BAIT})
        assert page.status_code == 200 and "paste it" not in page.text and "evil.example" not in page.text
        # A wrong token is said by the login form's own answer (no redirect that a link could imitate).
        wrong = http.post("/login", data={"token": FULL[:-1] + "X", "next": "/models"})
        assert wrong.status_code == 401 and "that token is not one of SENTQ_API_TOKENS" in wrong.text
        assert 'name="next" value="/models"' in wrong.text
        # After logging in, where to go next is a path on this site only, never another host.
        for evil in ("//evil.example/", "/\\evil.example/", "/\\/evil.example", "https://evil.example/", "/\t/evil"):
            reply = http.post("/login", data={"token": FULL, "next": evil})
            assert reply.status_code == 303 and reply.headers["location"] == "/", (evil, reply.headers["location"])
            assert 'value="/\\' not in http.get("/login", params={"next": evil}).text


def test_every_response_forbids_framing_and_sniffing(api: ApiServer, worker: Worker) -> None:
    """API JSON, problems, console pages, static files, streams and docs: nosniff, no framing; console pages under a
    strict Content-Security-Policy (only this origin's scripts and styles, nothing inline)."""
    with client(api) as http:
        job = http.post("/v1/jobs", content=b"great product\n", headers={"Content-Type": "text/plain"}).json()["id"]
        replies = {
            "json": http.get("/v1/jobs"),
            "problem": http.get("/v1/jobs/0123456789ab"),
            "page": http.get("/"),
            "login": http.get("/login"),
            "script": http.get("/static/console.js"),
            "style": http.get("/static/console.css"),
            "openapi": http.get("/openapi.json"),
            "docs": http.get("/docs"),
            "redirect": http.post("/console/jobs/0123456789ab/cancel"),
            "results": http.get(f"/v1/jobs/{job}/results"),
        }
        with http.stream("GET", f"/v1/jobs/{job}/events") as events:
            replies["events"] = events
        for what, reply in replies.items():
            headers = reply.headers
            assert headers.get("x-content-type-options") == "nosniff", (what, headers)
            assert headers.get("x-frame-options") == "DENY", (what, headers)
            policy = headers.get("content-security-policy", "")
            assert "frame-ancestors 'none'" in policy, (what, headers)
        page_policy = replies["page"].headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in page_policy.split(";") if d.strip())
        assert directives["default-src"] == "'self'"
        for name in ("script-src", "style-src"):
            assert directives.get(name, directives["default-src"]) == "'self'", page_policy
        assert "unsafe" not in page_policy
        assert replies["json"].headers["content-security-policy"].startswith("default-src 'none'")
        # Nothing inline that the policy would block: no <script> body, no style= or on*= attribute in any page.
        for what in ("page", "login"):
            text = replies[what].text
            assert "<script>" not in text and " style=" not in text and " onclick=" not in text, what


def test_a_cookie_is_a_session_that_logging_out_ends(redis_url: str, tmp_path: Path) -> None:
    with serving(redis_url, tmp_path / "api.log", SENTQ_API_TOKENS=f"{FULL},ro:{READ}") as api, client(api) as http:
        login = log_in(http, READ)
        cookie = login.cookies[auth.COOKIE]
        assert READ not in login.headers["set-cookie"] and cookie != READ
        set_cookie = login.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "secure" not in set_cookie
        replay = {"Cookie": f"{auth.COOKIE}={cookie}"}
        with client(api) as other:  # the cookie alone, from anywhere, until logout
            assert "Recent jobs" in other.get("/", headers=replay).text
            assert other.get("/v1/jobs", headers=replay).status_code == 200
        out = http.post("/logout")
        assert out.status_code == 303 and out.headers["location"].startswith("/login")
        with client(api) as other:
            page = other.get("/", headers=replay)
            assert page.status_code == 303 and page.headers["location"].startswith("/login"), page.text
            assert other.get("/v1/jobs", headers=replay).status_code == 401
            assert other.get(f"/v1/jobs/{'0' * 12}/events", headers=replay).status_code == 401
            refused = other.post("/console/submit", headers=replay, files={"file": ("a.txt", b"great\n")})
            assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
        assert READ not in api.output() and cookie not in api.output()


def test_removing_a_token_ends_its_sessions(redis_url: str, tmp_path: Path) -> None:
    """Sessions live in Redis (any API process, a restart keeps them) and last only as long as their token does."""
    with serving(redis_url, tmp_path / "api.log", SENTQ_API_TOKENS=f"{FULL},ro:{READ}") as api:
        with client(api) as http:
            full_cookie = log_in(http, FULL).cookies[auth.COOKIE]
        with client(api) as http:
            read_cookie = log_in(http, READ).cookies[auth.COOKIE]
    assert FULL not in full_cookie and READ not in read_cookie
    with serving(redis_url, tmp_path / "api2.log", SENTQ_API_TOKENS=FULL) as api, client(api) as http:
        kept = http.get("/", headers={"Cookie": f"{auth.COOKIE}={full_cookie}"})
        assert kept.status_code == 200 and "full access" in kept.text
        gone = http.get("/", headers={"Cookie": f"{auth.COOKIE}={read_cookie}"})
        assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
        assert http.get("/v1/jobs", headers={"Cookie": f"{auth.COOKIE}={read_cookie}"}).status_code == 401


@pytest.mark.parametrize(("trusted", "secure"), [("127.0.0.1", True), ("192.0.2.7, 10.0.0.0/8", False)])
def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(
    redis_url: str, tmp_path: Path, trusted: str, secure: bool
) -> None:
    """Behind a TLS proxy (the client's scheme in X-Forwarded-Proto) the cookie is Secure, if the proxy's address is
    in SENTQ_API_FORWARDED_ALLOW_IPS; the same header from any other address changes nothing."""
    env = {"SENTQ_API_TOKENS": FULL, "SENTQ_API_FORWARDED_ALLOW_IPS": trusted}
    with serving(redis_url, tmp_path / "api.log", **env) as api, client(api) as http:
        proxied = log_in(http, FULL, **{"X-Forwarded-Proto": "https"})
        assert ("; secure" in proxied.headers["set-cookie"].lower()) is secure, proxied.headers["set-cookie"]
        plain = log_in(http, FULL)
        assert "; secure" not in plain.headers["set-cookie"].lower()
