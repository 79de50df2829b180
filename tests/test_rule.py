"""The rule-script wrapper: what a failing rule leaves in its log and in Snakemake's output."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from polneurons.errors import DataError
from polneurons.rule import rule_context


class Wildcards(dict):
    """Snakemake's wildcards: a mapping with attribute access."""

    __getattr__ = dict.__getitem__


def fake_snakemake(tmp_path, rule="generate", **wildcards):
    log = tmp_path / "logs" / f"{rule}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(
        rule=rule,
        log=[str(log)],
        wildcards=Wildcards(wildcards),
        resources=SimpleNamespace(gpu=0),
        threads=1,
    )


def stderr_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_an_unexpected_error_is_one_line_naming_rule_run_and_log_with_the_traceback_in_the_log(
    tmp_path, capsys
):
    smk = fake_snakemake(tmp_path, model="tiny", run="right/crime_and_gun/ft")
    with pytest.raises(SystemExit) as exit_info, rule_context(smk):
        {}["missing"]  # noqa: B018 - a bug, not a user error
    assert exit_info.value.code == 1
    lines = stderr_lines(capsys)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("polneurons error: rule generate failed for tiny/right/crime_and_gun/ft")
    assert "KeyError" in line and smk.log[0] in line and " -- fix: " in line
    log = open(smk.log[0]).read()
    assert "Traceback (most recent call last)" in log and "KeyError: 'missing'" in log


def test_a_user_error_stays_its_own_one_line(tmp_path, capsys):
    smk = fake_snakemake(tmp_path, rule="judge", model="tiny", run="base")
    with pytest.raises(SystemExit), rule_context(smk):
        raise DataError("the answers are missing", "rerun generate")
    lines = stderr_lines(capsys)
    assert lines == ["polneurons error: the answers are missing -- fix: rerun generate"]
    assert "Traceback" not in open(smk.log[0]).read()


def test_a_rule_without_wildcards_is_named_with_a_dash(tmp_path, capsys):
    smk = fake_snakemake(tmp_path, rule="claims_table")
    with pytest.raises(SystemExit), rule_context(smk):
        raise ValueError("bad frame\nsecond line")
    (line,) = stderr_lines(capsys)
    assert "rule claims_table failed for - with an unexpected ValueError: bad frame --" in line
