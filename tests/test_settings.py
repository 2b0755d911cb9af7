"""Settings: read from SENTQ_* only, validated, passwords never shown."""

from __future__ import annotations

import pytest

from sentq.errors import ConfigError
from sentq.settings import Settings, mask_secrets, mask_url


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.broker_url == "redis://localhost:6379/0"
    assert s.backend_url == s.broker_url
    assert s.queue == "sentq"
    assert s.task_time_limit_s == 300
    assert s.soft_time_limit_s < 300
    assert s.max_tasks_per_child == 100
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
    }
    s = Settings.from_env(env)
    assert (s.queue, s.chunk_size, s.task_time_limit_s, s.max_tasks_per_child) == ("q1", 250, 60, 7)
    assert (s.result_expires_s, s.retrain_schedule, s.visibility_timeout_s) == (3600, "*/5 * * * *", 90)
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
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(env)
    for word in words:
        assert word in str(exc.value)


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
