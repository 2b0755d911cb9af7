"""Settings: the only reader of the environment (``SENTQ_*``), validated into one frozen dataclass."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from sentq.errors import ConfigError

BROKER_SCHEMES = ("redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp")
REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")
# Celery's and kombu's spelling of Redis behind Sentinels: sentinel://[USER:PASS@]HOST:PORT[/DB] for each Sentinel,
# joined by ";", the password (and db) of the master taken from the first; the master's name is SENTQ_SENTINEL_MASTER.
SENTINEL_SCHEME = "sentinel"
SENTINEL_PORT = 26379
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
APP_NAME = "sentq"
# redis-py's TLS options, spelled as its ``from_url`` reads them from a rediss:// URL's query, and the values of
# ssl_cert_reqs that redis-py, kombu and Celery's result backend all accept (redis-py refuses "CERT_REQUIRED").
REDIS_SSL_PARAMS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
SSL_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def user_data_dir(
    environ: Mapping[str, str] | None = None, platform: str | None = None, home: Path | None = None
) -> Path:
    """The platform's per-user data directory for sentq (what platformdirs' ``user_data_dir`` gives, in a few lines
    rather than a dependency): ``$XDG_DATA_HOME/sentq`` or ``~/.local/share/sentq`` on Linux and other Unixes,
    ``~/Library/Application Support/sentq`` on macOS, ``%LOCALAPPDATA%\\sentq`` on Windows."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    home = Path.home() if home is None else home
    if platform == "win32":
        local = env.get("LOCALAPPDATA", "")
        return (Path(local) if local else home / "AppData" / "Local") / APP_NAME
    if platform == "darwin":
        return home / "Library" / "Application Support" / APP_NAME
    xdg = env.get("XDG_DATA_HOME", "").strip()
    # The XDG spec says a relative path there is invalid and must be ignored.
    return (Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share") / APP_NAME


def checkout_root(package_dir: Path | None = None) -> Path | None:
    """The repository sentq runs from, when it runs from a checkout (editable install or PYTHONPATH), else None.

    A checkout is a package whose parent holds pyproject.toml and that is not inside an installation's
    site-packages / dist-packages (a wheel installed there never has pyproject.toml beside it, but be sure)."""
    package_dir = Path(__file__).resolve().parent if package_dir is None else package_dir
    if any(part in ("site-packages", "dist-packages") for part in package_dir.parts):
        return None
    root = package_dir.parent
    return root if (root / "pyproject.toml").is_file() else None


def default_data_dir() -> Path:
    """``<repo>/data`` in a checkout (`make setup` fetches the training data there), else the user data dir."""
    root = checkout_root()
    return root / "data" if root is not None else user_data_dir()


# Overridden by SENTQ_DATA_DIR. Read once at import, like the rest of the environment.
DEFAULT_DATA_DIR = default_data_dir()


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to print and log); each URL of a ";"-joined list
    (Sentinels) is masked alike."""
    if ";" in url:
        return ";".join(mask_url(part) for part in url.split(";"))
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redis_ssl_options(url: str) -> dict[str, Any] | None:
    """The TLS options of a ``rediss://`` URL's query as a dict for Celery's ``broker_use_ssl`` /
    ``redis_backend_use_ssl`` (and redbeat's ``redbeat_redis_use_ssl``); None for any other URL.

    redis-py, kombu and Celery's result backend each read the query of a URL that has one, but disagree on a
    ``rediss://`` URL without ``ssl_cert_reqs``: redis-py (sentq's own client) requires the server's certificate,
    kombu connects with ``CERT_NONE`` (the certificate unchecked, only a warning logged) and Celery's backend refuses
    to start. Passing these options to both makes all three connections alike: the certificate is required unless
    the URL says otherwise; options in the URL's query still win (kombu and Celery read it over these)."""
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    options: dict[str, Any] = {
        "ssl_cert_reqs": SSL_CERT_REQS.get(query.get("ssl_cert_reqs", "required"), ssl.CERT_REQUIRED)
    }
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if query.get(name):
            options[name] = query[name]
    return options


def is_sentinel(url: str) -> bool:
    return urlsplit(url.split(";", 1)[0]).scheme == SENTINEL_SCHEME


@dataclass(frozen=True)
class SentinelURL:
    """A ``sentinel://`` URL list taken apart as redis-py's ``Sentinel`` wants it."""

    nodes: list[tuple[str, int]]
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelURL:
    """``sentinel://:pw@h1:26379/0;sentinel://h2:26380`` -> the Sentinels' addresses and the master's db and
    credentials, read from the first URL that gives them (kombu reads them from the first)."""
    nodes: list[tuple[str, int]] = []
    db, username, password = 0, None, None
    for n, part in enumerate(p for p in url.split(";") if p.strip()):
        parts = urlsplit(part.strip())
        nodes.append((parts.hostname or "", parts.port or SENTINEL_PORT))
        if n == 0:
            path = parts.path.strip("/")
            db = int(path) if path.isdigit() else 0
            username = parts.username or None
            password = parts.password
    return SentinelURL(nodes, db, username, password)


def mask_secrets(text: str) -> str:
    """Mask every URL password inside a free-form message (errors from libraries quote URLs)."""
    return re.sub(r"([a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)


# The names a loopback-only API answers to (Host header, without the port).
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "[::1]", "localhost")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, each field mirrored by a ``SENTQ_<NAME>`` environment variable."""

    broker_url: str = DEFAULT_REDIS_URL
    # None: the broker URL when it is Redis, else the default local Redis (job accounting lives in Redis).
    result_backend: str | None = None
    queue: str = "sentq"
    retrain_queue: str = "sentq.retrain"
    # The master's name the Sentinels monitor (`sentinel monitor NAME ...`); needed by sentinel:// URLs.
    sentinel_master: str = ""
    # Texts per task: the smallest size within 5% of the fastest in `make bench`'s sweep (1k/5k/20k). With process
    # recycling gone and results stored as scores, 5k was within 5% of the best (or the best) in three runs of four,
    # and a smaller chunk means an earlier first row, finer progress and a cheaper bisection of a bad text.
    chunk_size: int = 5_000
    task_time_limit_s: int = 300
    # Pool processes are replaced after this many tasks (0: never). Replacing one is not cheap: billiard's pool may
    # notice the exit only at its 5 s maintenance timer, and a queued chunk waits for the new process (profiled: up
    # to 4.7 s per recycle, 75% of a 2,000-chunk job's time at 100 tasks per child). The leak guard is memory.
    max_tasks_per_child: int = 0
    # A pool process whose memory (RSS) is above this after a task is replaced (0: never). A process serving the
    # model takes about 150 MB; a large chunk adds its texts and rows for the time it runs.
    max_memory_per_child_mb: int = 1024
    # Results and job records expire together: three days to collect results after a job ends.
    result_expires_s: int = 3 * 24 * 3600
    retrain_schedule: str = "0 3 * * *"
    # Must exceed the hard time limit, or a long chunk would be redelivered while it still runs.
    visibility_timeout_s: int = 360
    # A chunk delivered this many times without finishing (its process died each time) is recorded failed.
    max_deliveries: int = 3
    max_text_chars: int = 10_000
    # A retrained model more than this much less accurate than the current one is not promoted without --force.
    promote_margin: float = 0.02
    # Model versions kept in the registry: the newest this many, plus the current one and any a live job is pinned to
    # (each is ~0.6 MB and never expires: a nightly retrain kept every version would add ~220 MB a year). A month of
    # nightly versions to roll back to.
    model_keep: int = 30
    connect_timeout_s: float = 3.0
    # The ledger's clocks, the same on every host. A worker's main process beats every heartbeat_s; its heartbeat
    # lives heartbeat_ttl_s, so a host is dead 10 s after its last beat (5 beats missed: a busy GIL or a slow Redis
    # does not kill a live worker). One reconciler sweeps every reconcile_every_s; its lock outlives three missed
    # sweeps, then another worker takes over. So a dead host's chunks are re-sent at most heartbeat_ttl_s +
    # reconcile_every_s (15 s) after its death, or reconcile_lock_ttl_s + reconcile_every_s (20 s) when the dead host
    # held the lock: under the 30 s goal (`make faults` holds the defaults to it). A pending chunk no message can still
    # be carrying is re-sent once its last message is lost_after_s old: well above the milliseconds between a message
    # leaving the queue and its claim, and the publish skew between two producers. Tests shorten all five.
    heartbeat_s: float = 2.0
    heartbeat_ttl_s: float = 10.0
    reconcile_every_s: float = 5.0
    reconcile_lock_ttl_s: float = 15.0
    lost_after_s: float = 15.0
    # `sentq wait` (and the console) say why a job has not moved for this long: no live worker on its queue?
    stall_after_s: float = 15.0
    # `sentq submit -` from a pipe or a terminal (text or JSONL): the lines read so far are queued as a chunk once
    # the stream has been quiet this long, so `tail -f app.log | sentq submit - --wait` scores lines as they come.
    # 0: only whole chunks (and the end) are queued.
    stream_idle_s: float = 1.0
    # What `sentq workers` shows of a worker's last task (model, when) is kept this long after its last task: node
    # names come and go (hosts replaced, containers renamed), and each would otherwise stay in Redis for ever.
    worker_stats_keep_s: int = 7 * 24 * 3600
    data_dir: Path = field(default=DEFAULT_DATA_DIR)
    log_level: str = "INFO"
    # `sentq api`: bearer tokens, comma-separated; "ro:TOKEN" is a read-only token. Empty: no auth, loopback only.
    api_tokens: str = field(default="", repr=False)
    # The largest upload `POST /v1/jobs` (and the console's form) accepts, in bytes as sent (compressed if gzipped):
    # 2 GiB, counted as it arrives.
    api_max_bytes: int = 2 * 1024**3
    # The largest labelled-data body `POST /v1/retrain` accepts: it is read whole and shipped through Redis as one
    # value (Redis refuses a string over 512 MB), and the default training set is about 2 MB.
    retrain_max_bytes: int = 256 * 1024**2
    # The most bytes a gzipped input may inflate to: a gzip of one repeated line shrinks about 1000 times, so 100 MB
    # sent could otherwise keep a producer (and, for a file, its validating first pass) inflating 100 GB.
    max_gunzip_bytes: int = 16 * 1024**3
    # The most input bytes one job may stage in Redis. With `maxmemory-policy noeviction` (as sentq's Redis runs), one
    # job that fills Redis fails every other job's writes: it is refused (invalid) before the batch that would pass
    # this is written. 4 GiB: about 30M texts of 140 bytes.
    job_max_bytes: int = 4 * 1024**3
    # `sentq api`: the Host names it answers besides the loopback ones, comma-separated. Empty: with SENTQ_API_TOKENS
    # any; without (no auth, on loopback), only 127.0.0.1, [::1] and localhost, so a page whose name an attacker
    # rebinds to 127.0.0.1 (DNS rebinding) reaches nothing: its requests carry its own name.
    api_allowed_hosts: str = ""
    # `sentq api` behind a TLS proxy: the proxy's addresses (IPs or networks, comma-separated; "*" any) whose
    # X-Forwarded-Proto and X-Forwarded-For uvicorn believes, so a request that came over https is known as such
    # (the console's cookie is then Secure). Empty: those headers are ignored, whoever sends them.
    api_forwarded_allow_ips: str = ""
    # How long a console login lasts (its session in Redis), whatever the browser does with its cookie: 12 hours.
    api_session_ttl_s: int = 12 * 3600

    def __post_init__(self) -> None:
        _check_url("SENTQ_BROKER_URL", self.broker_url, BROKER_SCHEMES)
        if self.result_backend is not None:
            _check_url("SENTQ_RESULT_BACKEND", self.result_backend, REDIS_SCHEMES)
        for var, url in (("SENTQ_BROKER_URL", self.broker_url), ("SENTQ_RESULT_BACKEND", self.result_backend or "")):
            if is_sentinel(url) and not self.sentinel_master.strip():
                raise ConfigError(
                    f"{var} is a sentinel:// URL ({mask_url(url)}): set SENTQ_SENTINEL_MASTER to the name of the "
                    "master the Sentinels monitor (the NAME in their `sentinel monitor NAME HOST PORT QUORUM`)"
                )
        for name in (
            "chunk_size",
            "task_time_limit_s",
            "result_expires_s",
            "visibility_timeout_s",
            "max_deliveries",
            "max_text_chars",
            "api_max_bytes",
            "model_keep",
            "worker_stats_keep_s",
            "api_session_ttl_s",
            "retrain_max_bytes",
            "max_gunzip_bytes",
            "job_max_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"SENTQ_{_env_name(name)} must be a positive whole number, got {getattr(self, name)}")
        for name in ("max_tasks_per_child", "max_memory_per_child_mb"):
            if getattr(self, name) < 0:
                raise ConfigError(f"SENTQ_{_env_name(name)} must be 0 (no limit) or a positive whole number")
        if self.chunk_size > self.chunk_size_max:
            raise ConfigError(f"SENTQ_CHUNK_SIZE must be at most {self.chunk_size_max}, got {self.chunk_size}")
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ConfigError(
                f"SENTQ_VISIBILITY_TIMEOUT ({self.visibility_timeout_s}s) must be longer than "
                f"SENTQ_TASK_TIME_LIMIT ({self.task_time_limit_s}s), or a running chunk would be delivered twice"
            )
        if not 0 <= self.promote_margin <= 1:
            raise ConfigError(f"SENTQ_PROMOTE_MARGIN must be between 0 and 1, got {self.promote_margin}")
        if self.connect_timeout_s <= 0:
            raise ConfigError(f"SENTQ_CONNECT_TIMEOUT must be positive, got {self.connect_timeout_s}")
        for name in ("heartbeat_s", "reconcile_every_s", "lost_after_s", "stall_after_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"SENTQ_{_env_name(name)} must be a positive number of seconds")
        if self.stream_idle_s < 0:
            raise ConfigError(f"SENTQ_STREAM_IDLE must be 0 (off) or a number of seconds, got {self.stream_idle_s}")
        for ttl, every in (("heartbeat_ttl_s", "heartbeat_s"), ("reconcile_lock_ttl_s", "reconcile_every_s")):
            if not getattr(self, ttl) >= 2 * getattr(self, every):
                raise ConfigError(
                    f"SENTQ_{_env_name(ttl)} ({getattr(self, ttl):g}s) must be at least twice SENTQ_{_env_name(every)} "
                    f"({getattr(self, every):g}s): one late beat or sweep must not pass for a death"
                )
        if not self.queue or not self.retrain_queue:
            raise ConfigError("SENTQ_QUEUE and SENTQ_RETRAIN_QUEUE must not be empty")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(
                f"SENTQ_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {self.log_level!r}"
            )

        self.api_token_kinds  # noqa: B018 - refuses malformed or short tokens at start
        self.api_proxies  # noqa: B018 - refuses an address uvicorn would silently take for a name

    # The most texts one task takes (a chunk, or a batch_score call).
    chunk_size_max: ClassVar[int] = 1_000_000

    @property
    def api_hosts(self) -> list[str]:
        """The Host names `sentq api` answers (Starlette's TrustedHostMiddleware patterns; "*" for any)."""
        given = [h.strip() for h in self.api_allowed_hosts.split(",") if h.strip()]
        if given:
            return [*LOOPBACK_HOSTS, *given]
        return ["*"] if self.api_token_kinds else list(LOOPBACK_HOSTS)

    @property
    def api_proxies(self) -> list[str]:
        """SENTQ_API_FORWARDED_ALLOW_IPS as uvicorn's ``forwarded_allow_ips`` (empty: proxy headers are ignored)."""
        proxies = []
        for entry in (p.strip() for p in self.api_forwarded_allow_ips.split(",") if p.strip()):
            if entry == "*":
                proxies.append(entry)
                continue
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(
                    f"SENTQ_API_FORWARDED_ALLOW_IPS: {entry!r} is not an IP address or network; list the addresses "
                    "your TLS proxy connects from (e.g. 127.0.0.1 or 10.0.0.0/8), or * to trust any"
                ) from None
            # As uvicorn matches them: an address, or a network without host bits (10.1.2.3/8 is 10.0.0.0/8).
            proxies.append(str(network) if "/" in entry else str(network.network_address))
        return proxies

    @property
    def api_token_kinds(self) -> dict[str, str]:
        """SENTQ_API_TOKENS as token -> "full" | "read" (never printed: the field is left out of repr)."""
        kinds: dict[str, str] = {}
        for n, entry in enumerate(self.api_tokens.split(","), 1):
            entry = entry.strip()
            if not entry:
                continue
            kind, token = ("read", entry[3:]) if entry.startswith("ro:") else ("full", entry)
            if len(token) < 16 or not token.isprintable() or " " in token:
                raise ConfigError(
                    f"SENTQ_API_TOKENS: token #{n} is too short or has spaces/control characters; use at least 16 "
                    "printable characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`), "
                    "prefixed with ro: for a read-only token"
                )
            kinds[token] = kind
        return kinds

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``SENTQ_*`` variables (and keyword overrides, e.g. from CLI options) into validated settings."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"SENTQ_{_env_name(f.name)}")
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __repr__(self) -> str:
        """Every field but the tokens, URLs with their passwords masked: safe in a log or a traceback."""
        shown = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name in ("broker_url", "result_backend") and isinstance(value, str):
                value = mask_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @property
    def backend_url(self) -> str:
        """The Redis that holds results, job records and the model registry."""
        if self.result_backend:
            return self.result_backend
        if self.broker_is_redis:
            return self.broker_url
        return DEFAULT_REDIS_URL

    @property
    def broker_is_redis(self) -> bool:
        return urlsplit(self.broker_url.split(";", 1)[0]).scheme in REDIS_SCHEMES

    @property
    def broker_family(self) -> str:
        """ "redis" or "amqp": the workers that reconcile a job are the ones on its kind of broker (an installation
        has one broker; hosts may spell its URL differently)."""
        return "redis" if self.broker_is_redis else "amqp"

    def sentinel_options(self, url: str) -> dict[str, Any]:
        """kombu's and Celery's transport options for a ``sentinel://`` URL: the master's name, and timeouts for the
        Sentinels themselves (else a dead Sentinel is waited on for the OS's TCP timeout). Empty for other URLs."""
        if not is_sentinel(url):
            return {}
        timeouts = {"socket_connect_timeout": self.connect_timeout_s, "socket_timeout": self.socket_timeout_s}
        return {"master_name": self.sentinel_master, "sentinel_kwargs": timeouts}

    @property
    def socket_timeout_s(self) -> float:
        """How long a Redis command may take before the connection is called lost."""
        return max(self.connect_timeout_s, 10.0)

    @property
    def soft_time_limit_s(self) -> int:
        """A soft limit a little before the hard one, so a slow chunk fails cleanly instead of being killed."""
        return max(1, self.task_time_limit_s - max(1, self.task_time_limit_s // 20))


_UNIT_SUFFIXES = ("_s",)


def _env_name(field_name: str) -> str:
    """``visibility_timeout_s`` -> ``VISIBILITY_TIMEOUT`` (units live in field names, not variable names)."""
    for suffix in _UNIT_SUFFIXES:
        if field_name.endswith(suffix):
            field_name = field_name[: -len(suffix)]
    return field_name.upper()


def _parse(name: str, type_name: str, raw: str) -> Any:
    var = f"SENTQ_{_env_name(name)}"
    shown = mask_secrets(raw)
    if type_name == "int":
        try:
            return int(raw.strip())
        except ValueError:
            raise ConfigError(f"{var} must be a whole number, got {shown!r}") from None
    if type_name == "float":
        try:
            return float(raw.strip())
        except ValueError:
            raise ConfigError(f"{var} must be a number, got {shown!r}") from None
    if type_name == "Path":
        return Path(raw).expanduser()
    return raw.strip()


def _check_url(var: str, url: str, schemes: tuple[str, ...]) -> None:
    if ";" in url or is_sentinel(url):
        parts = [p.strip() for p in url.split(";") if p.strip()]
        if not parts:
            raise ConfigError(f"{var} is empty")
        for part in parts:
            if urlsplit(part).scheme != SENTINEL_SCHEME:
                raise ConfigError(
                    f"{var}: only sentinel:// URLs can be joined with ';' (one per Sentinel), got {mask_url(part)!r} "
                    "in " + repr(mask_url(url))
                )
            _check_one_url(var, part, (SENTINEL_SCHEME,))
        given = [urlsplit(part).path.strip("/") for part in parts]
        if any(db and not db.isdigit() for db in given):
            raise ConfigError(f"{var}: the database in {mask_url(url)!r} must be a number, e.g. sentinel://h1:26379/0")
        first = int(given[0] or 0)
        if any(db and int(db) != first for db in given[1:]):
            raise ConfigError(
                f"{var}: the sentinel:// URLs in {mask_url(url)!r} name different databases; give it once, on the "
                "first URL (Celery and kombu read the database, user and password from the first)"
            )
        return
    _check_one_url(var, url, schemes)


def _check_one_url(var: str, url: str, schemes: tuple[str, ...]) -> None:
    shown = mask_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"{var} is not a valid URL: {shown!r} ({exc})") from None
    if parts.scheme not in schemes:
        raise ConfigError(
            f"{var} has unknown scheme {parts.scheme or '(none)'!r} in {shown!r}; use one of: " + ", ".join(schemes)
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{var} has no host in {shown!r}; e.g. redis://localhost:6379/0")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(f"{var} has a bad port in {shown!r}") from None
    if parts.scheme in REDIS_SCHEMES:
        _check_ssl_query(var, parts.scheme, parts.query, shown)


def _check_ssl_query(var: str, scheme: str, query: str, shown: str) -> None:
    """A Redis URL's TLS options (redis-py's query spelling): known names, a known ssl_cert_reqs, files that exist."""
    given = dict(parse_qsl(query, keep_blank_values=True))
    for name, value in given.items():
        if not name.startswith("ssl_"):
            continue
        if name not in REDIS_SSL_PARAMS:
            raise ConfigError(
                f"{var} has an unknown TLS option {name!r} in {shown!r}; the options are " + ", ".join(REDIS_SSL_PARAMS)
            )
        if scheme != "rediss":
            raise ConfigError(f"{var} has the TLS option {name!r} in {shown!r}, which is not TLS: use rediss://")
        if name == "ssl_cert_reqs":
            if value not in SSL_CERT_REQS:
                raise ConfigError(f"{var}: ssl_cert_reqs must be required, optional or none, got {value!r}")
        elif not (Path(value).is_file() and os.access(value, os.R_OK)):  # redis-py opens it as given: no ~
            raise ConfigError(f"{var}: {name} names {value!r}, which is not a readable file")
    if "ssl_keyfile" in given and "ssl_certfile" not in given:
        raise ConfigError(f"{var} has ssl_keyfile without ssl_certfile in {shown!r}: a client certificate needs both")
