"""Settings: read from SENTQ_* only, validated, passwords never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentq.errors import ConfigError
from sentq.settings import DEFAULT_DATA_DIR, Settings, checkout_root, mask_secrets, mask_url, user_data_dir

REPO = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.broker_url == "redis://localhost:6379/0"
    assert s.backend_url == s.broker_url
    assert s.queue == "sentq"
    assert s.task_time_limit_s == 300
    assert s.soft_time_limit_s < 300
    assert (s.max_tasks_per_child, s.max_memory_per_child_mb) == (0, 1024)
    assert (s.model_keep, s.worker_stats_keep_s) == (30, 7 * 24 * 3600)
    read = Settings.from_env({"SENTQ_MODEL_KEEP": "5", "SENTQ_WORKER_STATS_KEEP": "60"})
    assert (read.model_keep, read.worker_stats_keep_s) == (5, 60)
    assert s.visibility_timeout_s > s.task_time_limit_s


def test_reads_every_variable() -> None:
    env = {
        "SENTQ_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        "SENTQ_RESULT_BACKEND": "redis://127.0.0.1:6390/2",
        "SENTQ_QUEUE": "q1",
        "SENTQ_CHUNK_SIZE": "250",
        "SENTQ_TASK_TIME_LIMIT": "60",
        "SENTQ_MAX_TASKS_PER_CHILD": "7",
        "SENTQ_RESULT_EXPIRES": "3600",
        "SENTQ_RETRAIN_SCHEDULE": "*/5 * * * *",
        "SENTQ_VISIBILITY_TIMEOUT": "90",
        "SENTQ_HEARTBEAT": "0.5",
        "SENTQ_HEARTBEAT_TTL": "3",
        "SENTQ_RECONCILE_EVERY": "1",
        "SENTQ_RECONCILE_LOCK_TTL": "4",
        "SENTQ_LOST_AFTER": "5",
        "SENTQ_STALL_AFTER": "6",
    }
    s = Settings.from_env(env)
    assert (s.queue, s.chunk_size, s.task_time_limit_s, s.max_tasks_per_child) == ("q1", 250, 60, 7)
    assert (s.result_expires_s, s.retrain_schedule, s.visibility_timeout_s) == (3600, "*/5 * * * *", 90)
    clocks = (s.heartbeat_s, s.heartbeat_ttl_s, s.reconcile_every_s, s.reconcile_lock_ttl_s, s.lost_after_s)
    assert clocks + (s.stall_after_s,) == (0.5, 3, 1, 4, 5, 6)
    assert not s.broker_is_redis
    assert s.backend_url == "redis://127.0.0.1:6390/2"


def test_amqp_broker_without_backend_uses_local_redis() -> None:
    s = Settings.from_env({"SENTQ_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"})
    assert s.backend_url == "redis://localhost:6379/0"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"SENTQ_BROKER_URL": "redsi://localhost:6379/0"}, ["SENTQ_BROKER_URL", "redsi", "redis"]),
        ({"SENTQ_BROKER_URL": "localhost:6379"}, ["SENTQ_BROKER_URL"]),
        ({"SENTQ_RESULT_BACKEND": "amqp://x@h//"}, ["SENTQ_RESULT_BACKEND", "amqp"]),
        ({"SENTQ_CHUNK_SIZE": "-5"}, ["SENTQ_CHUNK_SIZE", "-5"]),
        ({"SENTQ_CHUNK_SIZE": "lots"}, ["SENTQ_CHUNK_SIZE", "lots"]),
        ({"SENTQ_TASK_TIME_LIMIT": "0"}, ["SENTQ_TASK_TIME_LIMIT"]),
        ({"SENTQ_VISIBILITY_TIMEOUT": "100"}, ["SENTQ_VISIBILITY_TIMEOUT", "SENTQ_TASK_TIME_LIMIT"]),
        ({"SENTQ_BROKER_URL": "redis://localhost:99999/0"}, ["SENTQ_BROKER_URL", "port"]),
        ({"SENTQ_HEARTBEAT": "0"}, ["SENTQ_HEARTBEAT", "positive"]),
        ({"SENTQ_LOST_AFTER": "soon"}, ["SENTQ_LOST_AFTER", "soon"]),
        ({"SENTQ_HEARTBEAT_TTL": "3"}, ["SENTQ_HEARTBEAT_TTL", "SENTQ_HEARTBEAT", "twice"]),
        ({"SENTQ_RECONCILE_EVERY": "9"}, ["SENTQ_RECONCILE_LOCK_TTL", "SENTQ_RECONCILE_EVERY", "twice"]),
        ({"SENTQ_MODEL_KEEP": "0"}, ["SENTQ_MODEL_KEEP", "positive"]),
        ({"SENTQ_WORKER_STATS_KEEP": "a week"}, ["SENTQ_WORKER_STATS_KEEP", "a week"]),
        ({"SENTQ_API_FORWARDED_ALLOW_IPS": "127.0.0.1, proxy.lan"}, ["SENTQ_API_FORWARDED_ALLOW_IPS", "proxy.lan"]),
        ({"SENTQ_API_SESSION_TTL": "0"}, ["SENTQ_API_SESSION_TTL", "positive"]),
        ({"SENTQ_JOB_MAX_BYTES": "0"}, ["SENTQ_JOB_MAX_BYTES", "positive"]),
        ({"SENTQ_MAX_GUNZIP_BYTES": "-1"}, ["SENTQ_MAX_GUNZIP_BYTES", "positive"]),
        ({"SENTQ_RETRAIN_MAX_BYTES": "1GB"}, ["SENTQ_RETRAIN_MAX_BYTES", "1GB"]),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(env)
    for word in words:
        assert word in str(exc.value)


def test_forwarded_allow_ips_are_written_as_uvicorn_matches_them() -> None:
    """An address, a network (host bits dropped: uvicorn would take 10.1.2.3/8 for a name and match nothing), or *."""
    s = Settings.from_env({"SENTQ_API_FORWARDED_ALLOW_IPS": " 127.0.0.1, 10.1.2.3/8 ,::1,fd00::/64, * "})
    assert s.api_proxies == ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/64", "*"]
    assert Settings.from_env({}).api_proxies == []


def test_passwords_are_masked_in_errors() -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({"SENTQ_BROKER_URL": "redsi://user:hunter2@localhost:6379/0"})
    assert "hunter2" not in str(exc.value)
    assert "user:***@localhost" in str(exc.value)


def test_mask_url() -> None:
    assert mask_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("amqp://guest:guest@127.0.0.1:5672//") == "amqp://guest:***@127.0.0.1:5672//"
    assert mask_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert "pw" not in mask_secrets("Error connecting to redis://u:pw@host:1/0 and amqp://a:pw@b//")


def test_overrides_and_empty_values() -> None:
    s = Settings.from_env({"SENTQ_CHUNK_SIZE": ""}, chunk_size=42, queue=None)
    assert s.chunk_size == 42
    assert s.queue == "sentq"


def test_repr_masks_passwords_and_leaves_out_tokens() -> None:
    settings = Settings.from_env(
        {"SENTQ_BROKER_URL": "redis://sentq:hunter2@db:6379/0", "SENTQ_API_TOKENS": "ro:secret-token-0123456789"}
    )
    shown = repr(settings)
    assert "redis://sentq:***@db:6379/0" in shown
    assert "hunter2" not in shown and "secret-token" not in shown


def test_user_data_dir_per_platform(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert user_data_dir({}, "linux", home) == home / ".local" / "share" / "sentq"
    assert user_data_dir({"XDG_DATA_HOME": "/srv/xdg"}, "linux", home) == Path("/srv/xdg/sentq")
    # A relative XDG_DATA_HOME is invalid by the spec and ignored; so is an empty one.
    assert user_data_dir({"XDG_DATA_HOME": "rel/xdg"}, "linux", home) == home / ".local" / "share" / "sentq"
    assert user_data_dir({"XDG_DATA_HOME": ""}, "freebsd14", home) == home / ".local" / "share" / "sentq"
    assert user_data_dir({"XDG_DATA_HOME": "/srv/xdg"}, "darwin", home) == (
        home / "Library" / "Application Support" / "sentq"
    )
    assert user_data_dir({"LOCALAPPDATA": str(tmp_path / "Local")}, "win32", home) == tmp_path / "Local" / "sentq"
    assert user_data_dir({}, "win32", home) == home / "AppData" / "Local" / "sentq"


def test_data_dir_is_the_checkout_data_only_in_a_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "sentq").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname = 'sentq'\n")
    assert checkout_root(repo / "sentq") == repo
    # A wheel's copy: no pyproject.toml beside it, or anywhere under site-packages / dist-packages.
    (tmp_path / "target" / "sentq").mkdir(parents=True)
    assert checkout_root(tmp_path / "target" / "sentq") is None
    installed = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (installed / "sentq").mkdir(parents=True)
    (installed / "pyproject.toml").write_text("")  # even with a stray pyproject.toml there
    assert checkout_root(installed / "sentq") is None
    assert checkout_root(tmp_path / "dist-packages" / "sentq") is None
    # This test runs from the checkout: `make setup` put the data in <repo>/data, and that stays the default.
    assert DEFAULT_DATA_DIR == REPO / "data" == Settings.from_env({}).data_dir
    assert Settings.from_env({"SENTQ_DATA_DIR": str(tmp_path / "d")}).data_dir == tmp_path / "d"
