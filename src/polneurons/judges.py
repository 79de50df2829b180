"""Stance judges (method.md: Stance): rate each response left leaning / right leaning / neutral.

Three backends share one interface, `Judge.rate(items) -> list[str]`:
- `judge_classifier.ClassifierJudge`: TF-IDF + logistic regression trained on IdeoINST's GPT-4
  labels (offline default), with a "no stance" class it rates neutral (it abstains on text
  without a stance);
- `OpenAIJudge`: any OpenAI-compatible chat endpoint, answers cached by content hash;
- `HFJudge`: a local instruct model with the same prompts.
A rating is one of LABELS or "error" (counted and excluded from the score).
"""

from __future__ import annotations

import abc
import fcntl
import hashlib
import inspect
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from polneurons.errors import (
    ConfigError,
    DataError,
    EnvironmentProblem,
    ModelError,
)

log = logging.getLogger(__name__)

LABELS = ("left leaning", "right leaning", "neutral")
ERROR = "error"
# the classifier judge's class of stance-free text; a response it puts there is rated "neutral"
NO_STANCE = "no stance"

_LABEL_IN_TEXT = re.compile(r"\b(left leaning|right leaning|neutral)\b")


def parse_rating(text: str) -> str:
    """A judge's answer as one of LABELS, or "error" when it names none or several."""
    words = " ".join(re.findall(r"[a-z]+", text.lower()))
    named = set(_LABEL_IN_TEXT.findall(words))
    if len(named) == 1:
        return named.pop()
    if words in ("left", "right"):
        return f"{words} leaning"
    return ERROR


@dataclass(frozen=True)
class JudgeItem:
    test_set: str
    topic_name: str | None  # the topic as prompt_topic_names writes it; None for pct, questionnaire
    response: str


@dataclass(frozen=True)
class Templates:
    """The judge prompts: `topic` has slots {test_topic} and {response}, `general` has {response}."""

    topic: str
    general: str

    def render(self, item: JudgeItem) -> str:
        # The released files write the line break before {response} as a literal backslash-n.
        if item.topic_name is None:
            return self.general.replace("\\n", "\n").format(response=item.response)
        return self.topic.replace("\\n", "\n").format(
            test_topic=item.topic_name, response=item.response
        )


class Judge(abc.ABC):
    @abc.abstractmethod
    def rate(self, items: list[JudgeItem]) -> list[str]:
        """One rating per item, in order: a member of LABELS or "error"."""


# ---------------------------------------------------------------- OpenAI-compatible endpoint


class RatingCache:
    """Append-only JSONL of judge answers keyed by content hash, one fsync'd line per prompt.

    A line cut short by a kill is dropped on load (its prompt is asked again); any other
    unreadable line is a corrupt cache. Several processes may append (lines are written
    under an exclusive lock), but one prompt is asked and recorded once per process only.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._ratings: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        *lines, partial = data.split(b"\n")
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                key, rating = record["key"], record["rating"]
            except (ValueError, KeyError, TypeError):
                rating = None
            if rating not in (*LABELS, ERROR):
                raise DataError(
                    f"judge cache {self.path} line {number} is corrupt",
                    "delete the cache file (its prompts will be asked again)",
                )
            self._ratings.setdefault(key, rating)
        if partial:  # the tail of a kill mid-append: cut it so the next line starts cleanly
            log.warning("judge cache %s: dropping a truncated last line", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(len(data) - len(partial))

    def __contains__(self, key: str) -> bool:
        return key in self._ratings

    def __getitem__(self, key: str) -> str:
        return self._ratings[key]

    def record(self, key: str, rating: str, answer: str) -> None:
        line = json.dumps({"key": key, "rating": rating, "answer": answer}) + "\n"
        with self._lock:
            if key in self._ratings:
                return
            with open(self.path, "ab") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.write(line.encode())
                f.flush()
                os.fsync(f.fileno())
            self._ratings[key] = rating


class _TransientFailure(Exception):
    """A failure worth retrying (rate limit, server error, timeout, malformed reply)."""

    def __init__(self, what: str, retry_after: float | None = None):
        super().__init__(what)
        self.retry_after = retry_after


def _seconds(header: str | None) -> float | None:
    try:
        return max(0.0, float(header))
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date: fall back to the backoff


class OpenAIJudge(Judge):
    """gpt-4o-mini (or any model) behind an OpenAI-compatible /chat/completions endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        templates: Templates,
        cache_path: str | os.PathLike,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.0,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        timeout: float = 60.0,
        max_workers: int = 1,
        sleep: Callable[[float], None] = time.sleep,
    ):
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise EnvironmentProblem(
                f"the environment variable {api_key_env} (API key of the judge endpoint) is not set",
                f"export {api_key_env}, or use judge backend 'classifier' which needs no key",
            )
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._api_key_env = api_key_env
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.templates = templates
        self.temperature = float(temperature)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.max_workers = max_workers
        self._sleep = sleep
        self._jitter = random.Random()
        self.cache = RatingCache(cache_path)

    def rate(self, items: list[JudgeItem]) -> list[str]:
        prompts = [self.templates.render(item) for item in items]
        keys = [self._key(prompt) for prompt in prompts]
        to_ask = {
            key: prompt for key, prompt in zip(keys, prompts, strict=True) if key not in self.cache
        }
        pool = ThreadPoolExecutor(self.max_workers)
        try:
            futures = [pool.submit(self._ask, key, prompt) for key, prompt in to_ask.items()]
            for future in as_completed(futures):
                future.result()
        finally:
            pool.shutdown(cancel_futures=True)
        return [self.cache[key] for key in keys]

    def _key(self, prompt: str) -> str:
        return hashlib.sha256(
            json.dumps([self.model, prompt, self.temperature]).encode()
        ).hexdigest()

    def _ask(self, key: str, prompt: str) -> None:
        answer = self._complete(prompt)
        self.cache.record(key, parse_rating(answer), answer)

    def _complete(self, prompt: str) -> str:
        payload = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.temperature,
        }
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(payload)
            except _TransientFailure as failure:
                last_failure = failure
                if attempt < self.max_retries:
                    self._sleep(self._delay(attempt, failure.retry_after))
        raise EnvironmentProblem(
            f"judge endpoint {self.url} failed {self.max_retries + 1} times (last: {last_failure})",
            f"check the endpoint and rerun; the ratings obtained so far are cached in {self.cache.path}",
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter, never shorter than the server's Retry-After."""
        ceiling = min(self.backoff_max, self.backoff_base * 2**attempt)
        delay = ceiling / 2 + self._jitter.uniform(0, ceiling / 2)
        return delay if retry_after is None else max(delay, retry_after)

    def _post(self, payload: dict) -> str:
        import requests

        try:
            reply = requests.post(
                self.url, json=payload, headers=self._headers, timeout=self.timeout
            )
        except (
            requests.Timeout,
            requests.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise _TransientFailure(type(exc).__name__) from None
        status = reply.status_code
        if status == 429 or status >= 500:
            raise _TransientFailure(f"HTTP {status}", _seconds(reply.headers.get("Retry-After")))
        if status in (401, 403):
            raise EnvironmentProblem(
                f"judge endpoint {self.url} refused the API key in {self._api_key_env} (HTTP {status})",
                f"set {self._api_key_env} to a valid key for this endpoint",
            )
        if status >= 400:
            body = " ".join(reply.text.split())[:200]
            raise ConfigError(
                f"judge endpoint {self.url} rejected the request (HTTP {status}: {body})",
                "check the judge's base_url and model in the config",
            )
        try:
            answer = reply.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _TransientFailure("malformed reply") from None
        if not isinstance(answer, str):
            raise _TransientFailure("malformed reply")
        return answer


# ---------------------------------------------------------------- local instruct model


class HFJudge(Judge):
    """A local instruct model prompted like the OpenAI judge (chat template if it has one), greedy."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        templates: Templates,
        dtype: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 8,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ConfigError(
                f"judge dtype {dtype!r} is not a torch dtype", "use auto, float32 or bfloat16"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
            model = AutoModelForCausalLM.from_pretrained(
                model_path, dtype=dtype if dtype == "auto" else getattr(torch, dtype)
            )
        except (OSError, ValueError) as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(
                f"cannot load judge model {model_path}: {first_line}", "check judge.hf.model_path"
            ) from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        self.templates = templates
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens

    def _prompt(self, item: JudgeItem) -> str:
        text = self.templates.render(item)
        if self.tokenizer.chat_template is None:
            return text
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )

    def rate(self, items: list[JudgeItem]) -> list[str]:
        import torch

        prompts = [self._prompt(item) for item in items]
        answers = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(
                prompts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=self.tokenizer.chat_template is None,  # a template adds its own
            ).to(self.model.device)
            with torch.inference_mode():
                output = self.model.generate(
                    **batch,
                    do_sample=False,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            answers += self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [parse_rating(answer) for answer in answers]


# ---------------------------------------------------------------- from the config


def judge_name(judge_cfg: Mapping) -> str:
    """Which judge a config's `judge` section rates with, in words (for the judge table)."""
    backend = judge_cfg["backend"]
    if backend == "classifier":
        return "TF-IDF + logistic regression on IdeoINST's GPT-4 labels"
    if backend == "openai":
        return f"{judge_cfg['openai']['model']} at {judge_cfg['openai']['base_url']}"
    return str(judge_cfg["hf"]["path"])


def cached_answer_count(path: str | os.PathLike) -> int:
    """Complete answers in an `openai` judge cache (0 if none yet); reads, never repairs."""
    if not Path(path).exists():
        return 0
    return Path(path).read_bytes().count(b"\n")


def _build(cls: type, section: str, options: Mapping, templates: Templates) -> Judge:
    """cls(templates=..., **options), refusing unknown or missing config keys in one line."""
    parameters = inspect.signature(cls).parameters
    allowed = set(parameters) - {"templates", "sleep"}
    required = {n for n, p in parameters.items() if p.default is p.empty and n != "templates"}
    unknown, missing = sorted(set(options) - allowed), sorted(required - set(options))
    if unknown or missing:
        raise ConfigError(
            f"judge.{section}: unknown keys {unknown}, missing keys {missing}",
            f"use only {sorted(allowed)}, including {sorted(required)}",
        )
    return cls(templates=templates, **options)


def make_judge(
    judge_cfg: Mapping, templates: Templates, classifier_path: str | os.PathLike | None = None
) -> Judge:
    """The judge a config's `judge` section names: {"backend": "classifier" | "openai" | "hf", ...}."""
    backend = judge_cfg.get("backend")
    if backend == "classifier":
        if classifier_path is None:
            raise ConfigError(
                "the classifier judge needs a trained model file", "pass classifier_path"
            )
        from polneurons.judge_classifier import ClassifierJudge

        return ClassifierJudge.load(classifier_path)
    if backend == "openai":
        return _build(OpenAIJudge, "openai", judge_cfg.get("openai", {}), templates)
    if backend == "hf":
        return _build(HFJudge, "hf", judge_cfg.get("hf", {}), templates)
    raise ConfigError(f"judge.backend is {backend!r}", "use one of classifier, openai, hf")
