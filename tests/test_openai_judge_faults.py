"""The OpenAI-compatible judge against a local fake endpoint that misbehaves on cue."""

import json
import logging
import socket
from itertools import pairwise

import pytest
from fake_openai import FakeOpenAI, late, malformed_json, missing_choices, status

from polneurons.errors import ConfigError, EnvironmentProblem
from polneurons.judges import JudgeItem, OpenAIJudge, Templates

KEY_ENV = "POLNEURONS_TEST_JUDGE_KEY"
KEY = "sk-test-secret-0123456789"
MAX_REQUESTS = 30
TEMPLATES = Templates(
    topic="Rate the leaning towards {test_topic}.\\n{response}",
    general="Rate the leaning.\\n{response}",
)
GUNS = JudgeItem("crime_and_gun", "crime and gun", "The right to bear arms protects citizens.")
WELFARE = JudgeItem(
    "economy_and_inequality", "economy and inequality", "Expand welfare for families."
)
REPORT = JudgeItem("pct", None, "The report lists the figures.")


@pytest.fixture
def endpoint(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with FakeOpenAI(max_requests=MAX_REQUESTS) as fake:
        yield fake


def make(fake, tmp_path, delays=None, **options):
    options = {
        "timeout": 5.0,
        "max_retries": 6,
        "backoff_base": 1.0,
        "backoff_max": 30.0,
        **options,
    }
    return OpenAIJudge(
        fake.base_url,
        "gpt-4o-mini",
        templates=TEMPLATES,
        cache_path=tmp_path / "cache.jsonl",
        api_key_env=KEY_ENV,
        sleep=(delays if delays is not None else []).append,
        **options,
    )


def cache_lines(tmp_path):
    return [json.loads(line) for line in (tmp_path / "cache.jsonl").read_text().splitlines()]


def test_transient_faults_are_retried_with_growing_backoff_then_rated(endpoint, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    endpoint.script.extend(
        [status(429, "0"), status(500), late(2.0), malformed_json, missing_choices]
    )
    delays = []
    assert make(endpoint, tmp_path, delays, timeout=0.5).rate([GUNS]) == ["right leaning"]
    assert len(endpoint.requests) == 6
    assert len(delays) == 5
    for attempt, delay in enumerate(delays):  # equal jitter: in [2^k / 2, 2^k] seconds
        assert 2**attempt / 2 <= delay <= 2**attempt
    assert all(later > earlier for earlier, later in pairwise(delays))
    request = endpoint.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == f"Bearer {KEY}"
    assert request["body"]["model"] == "gpt-4o-mini" and request["body"]["temperature"] == 0.0
    assert (
        request["body"]["messages"][0]["content"]
        == f"Rate the leaning towards crime and gun.\n{GUNS.response}"
    )
    assert [line["rating"] for line in cache_lines(tmp_path)] == ["right leaning"]
    assert KEY not in caplog.text


def test_retry_after_is_honoured(endpoint, tmp_path):
    endpoint.script.append(status(429, "7"))
    delays = []
    assert make(endpoint, tmp_path, delays).rate([WELFARE]) == ["left leaning"]
    assert delays == [7.0]


@pytest.mark.parametrize("max_workers", [1, 3])
def test_each_rating_is_recorded_once_and_a_second_judge_makes_no_calls(
    endpoint, tmp_path, max_workers
):
    items = [GUNS, WELFARE, GUNS, REPORT]
    expected = ["right leaning", "left leaning", "right leaning", "neutral"]
    judge = make(endpoint, tmp_path, max_workers=max_workers)
    assert judge.rate(items) == expected
    assert judge.rate(items) == expected
    assert len(endpoint.requests) == 3
    keys = [line["key"] for line in cache_lines(tmp_path)]
    assert len(keys) == len(set(keys)) == 3

    assert make(endpoint, tmp_path).rate(items) == expected
    assert len(endpoint.requests) == 3


def test_a_cache_truncated_by_a_kill_loads_and_the_lost_item_is_asked_again(endpoint, tmp_path):
    make(endpoint, tmp_path).rate([GUNS, WELFARE])
    cache = tmp_path / "cache.jsonl"
    text = cache.read_text()
    cache.write_text(text[: len(text) - 25])  # the last append cut short
    assert make(endpoint, tmp_path).rate([GUNS, WELFARE]) == ["right leaning", "left leaning"]
    assert len(endpoint.requests) == 3
    assert endpoint.requests[-1]["body"]["messages"][0]["content"].endswith(WELFARE.response)
    lines = cache_lines(tmp_path)  # every line complete JSON again, each prompt once
    assert len(lines) == len({line["key"] for line in lines}) == 2


def test_giving_up_after_max_retries_is_one_line_and_keeps_cached_ratings(endpoint, tmp_path):
    endpoint.script.extend([None, status(503), status(503), status(503)])  # None: answer normally
    delays = []
    with pytest.raises(EnvironmentProblem) as error:
        make(endpoint, tmp_path, delays, max_retries=2).rate([GUNS, WELFARE])
    assert "\n" not in str(error.value) and "3 times" in str(error.value)
    assert len(endpoint.requests) == 4 and len(delays) == 2
    assert [line["rating"] for line in cache_lines(tmp_path)] == ["right leaning"]

    assert make(endpoint, tmp_path).rate([GUNS, WELFARE]) == ["right leaning", "left leaning"]
    assert len(endpoint.requests) == 5


def test_connection_refused_is_retried_then_one_line_error(endpoint, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    endpoint.base_url = f"http://127.0.0.1:{closed_port}/v1"
    delays = []
    with pytest.raises(EnvironmentProblem) as error:
        make(endpoint, tmp_path, delays, max_retries=2).rate([REPORT])
    assert "ConnectionError" in str(error.value) and "\n" not in str(error.value)
    assert len(delays) == 2


@pytest.mark.parametrize("code, error_type", [(401, EnvironmentProblem), (404, ConfigError)])
def test_client_errors_fail_at_once_in_one_line(endpoint, tmp_path, code, error_type):
    endpoint.script.append(status(code))
    delays = []
    with pytest.raises(error_type) as error:
        make(endpoint, tmp_path, delays).rate([GUNS])
    message = str(error.value)
    assert "\n" not in message and f"HTTP {code}" in message and KEY not in message
    assert len(endpoint.requests) == 1 and delays == []
    if code == 401:
        assert KEY_ENV in message


def test_missing_api_key_is_one_line_naming_the_variable(endpoint, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(EnvironmentProblem) as error:
        make(endpoint, tmp_path)
    assert KEY_ENV in str(error.value) and "\n" not in str(error.value)
    assert endpoint.requests == []
