# polneurons: political stance cross-topic generalization, political neurons, patching, InhibitFT.
# Run: snakemake --cores all   (embedded default, config.yaml); see README.md.
import sys

from snakemake.utils import min_version

min_version("9.17")

# One import route: this checkout's src/ comes first, for the Snakefile and, through the
# PYTHONPATH every job inherits, for every job's script (local, Slurm, a conda env), ahead of
# any installed polneurons (an install of another checkout never runs in this one's jobs).
SRC = str(Path(workflow.basedir).resolve() / "src")
sys.path.insert(0, SRC)

from polneurons.rule import put_first_on_job_path

put_first_on_job_path(SRC)

from polneurons.config import check_stack, validate_config
from polneurons.errors import PolneuronsError

# A --configfile on the command line is a whole configuration (the schema fills defaults),
# or a stack of them (an overlay names its base with `extends`); without one, the embedded
# default config.yaml runs.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


try:
    check_stack(workflow.config_settings.configfiles)
    config.update(validate_config(config))
except PolneuronsError as exc:
    sys.exit(f"polneurons config error: {exc}")


# Judge jobs calling an API at once: capped by judge.openai.parallel_jobs (rate limits) unless
# --resources api_slots=N says otherwise.
if "api_slots" not in workflow.global_resources:
    workflow.register_resource("api_slots", config["judge"]["openai"]["parallel_jobs"])


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/stance.smk"
include: "workflow/rules/neurons.smk"
include: "workflow/rules/patching.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
