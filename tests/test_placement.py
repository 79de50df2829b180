"""Where jobs run and what they ask a cluster for, read from the parsed workflow (no run):
the rules that need the network are local rules, and the GPU site settings (partition, GPU
model) reach every GPU rule and no CPU rule."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "paper.yaml"

PARSE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, OutputSettings, ResourceSettings,
        StorageSettings)
    configfiles, config = [Path(p) for p in json.loads(sys.argv[1])], json.loads(sys.argv[2])
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=configfiles, config=config),
            storage_settings=StorageSettings(),
            snakefile=Path(sys.argv[3]) / "Snakefile",
            workdir=Path(sys.argv[4]),
        )._workflow
        out = {
            rule.name: {
                "local": rule.name in workflow._localrules,
                "resources": {k: getattr(v, "raw", v) for k, v in rule.resources.items()
                              if isinstance(getattr(v, "raw", v), (int, str))},
            }
            for rule in workflow.rules
        }
    print("RULES=" + json.dumps(out))
    """
)


def parse_rules(tmp_path: Path, config: dict, configfiles=(PAPER,)) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PARSE,
            json.dumps([str(p) for p in configfiles]),
            json.dumps(config),
            str(REPO),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RULES="))
    return json.loads(line.removeprefix("RULES="))


GPU_RULES = {
    "finetune",
    "inhibitft",
    "generate",
    "score_likelihood",
    "readout",
    "dump_activations",
    "dump_moved",
}


def test_network_rules_run_on_the_submit_host_and_gpu_rules_as_jobs(tmp_path):
    rules = parse_rules(tmp_path, {"judge": {"backend": "openai"}})
    assert rules["prepare_model"]["local"] and rules["judge"]["local"]
    assert rules["download_data"]["local"]
    for name in GPU_RULES | {"patch_generate", "restore_generate", "localize_neurons"}:
        assert not rules[name]["local"], name


def test_network_rules_become_jobs_when_turned_off_and_judge_follows_its_backend(tmp_path):
    rules = parse_rules(
        tmp_path,
        {"resources": {"network_rules_local": False}, "judge": {"backend": "openai"}},
    )
    assert not rules["prepare_model"]["local"] and not rules["judge"]["local"]
    # The classifier judge needs no network: a cluster job either way.
    assert not parse_rules(tmp_path, {"judge": {"backend": "classifier"}})["judge"]["local"]


def test_gpu_partition_and_model_reach_every_gpu_rule_and_no_cpu_rule(tmp_path):
    site = {"gpu_partition": "gpu", "gpu_model": "a100"}
    rules = parse_rules(tmp_path, {"resources": site, "judge": {"backend": "hf"}})
    gpu_rules = {n for n, r in rules.items() if r["resources"].get("gpu", 0)}
    assert gpu_rules == GPU_RULES | {"patch_generate", "restore_generate", "judge"}
    for name, rule in rules.items():
        res = rule["resources"]
        if name in gpu_rules:
            assert res["gpu"] == 1 and res["slurm_partition"] == "gpu", (name, res)
            assert res["gpu_model"] == "a100", (name, res)
        else:
            assert "gpu_model" not in res and "slurm_partition" not in res, (name, res)
    # Unset (the default): no site resource anywhere, the profile's defaults apply.
    default = parse_rules(tmp_path, {})
    assert not any("gpu_model" in r["resources"] for r in default.values())


def test_readme_slurm_command_with_a_site_profile_sends_gpu_rules_to_the_gpu_partition(tmp_path):
    # The README's cluster command, dry-run: `--profile slurm` (the link in the repository
    # root) plus the user's own site profile (here the tracked template, unedited).
    command = [
        *(sys.executable, "-m", "snakemake", "-n", "--profile", "slurm"),
        *("--profile", "profiles/site-example.yaml", "--configfile", str(PAPER)),
        *("--directory", str(tmp_path), "--nocolor"),
        *("results/llama31_8b/base/ratings.jsonl", "results/llama31_8b/base/loglik.csv"),
    ]
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout + out.stderr
    blocks = dict(re.findall(r"^rule (\w+):\n(?:.*\n)*?\s+resources: (.*)$", text, re.M))
    assert set(blocks) >= {"prepare_model", "generate", "score_likelihood", "judge"}, text
    for rule, resources in blocks.items():
        gpu = "gpu=1" in resources.split(", ")
        assert gpu == (rule in GPU_RULES), (rule, resources)
        assert ("slurm_partition=gpu" in resources) == gpu, (rule, resources)
        assert ("gpu_model=a100" in resources) == gpu, (rule, resources)
