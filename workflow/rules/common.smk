# Helpers shared by the rules: paths, run ids, resources. The config is already validated.
from polneurons.data import TOPICS, EXTRA_SETS, FILES
from polneurons.config import inhibitft_finetune

RES = config["results"]
MODELS = list(config["models"])
SPECS = config["model_registry"]
TEST_SETS = list(config["topics"]) + list(config["extra_sets"])
IFT = config["inhibitft"]
CONTROL_KIND = "ftctl" if IFT["finetune"] else "ft"


def fmt_n(n):
    return f"{n:g}"


def train_kinds():
    """Fine-tuned run kinds of one (model, leaning, source): vanilla, control, inhibited."""
    kinds = ["ft"]
    if IFT["enabled"]:
        if CONTROL_KIND != "ft":
            kinds.append(CONTROL_KIND)
        for strategy in IFT["strategies"]:
            for n in IFT["n"]:
                kinds.append(f"ift-{strategy}-n{fmt_n(n)}")
                if IFT["random_control"]:
                    kinds.append(f"rnd-{strategy}-n{fmt_n(n)}")
    return kinds


def patch_kinds():
    if not config["patching"]["enabled"]:
        return []
    return [f"patch-{c}" for c in config["patching"]["conditions"]]


def run_ids(kinds):
    return [
        f"{lean}/{src}/{kind}"
        for lean in config["leanings"]
        for src in config["source_topics"]
        for kind in kinds
    ]


def alt(values):
    return "|".join(sorted(str(v).replace(".", r"\.") for v in values))


TRAIN_KIND_RE = r"ft|ftctl|(ift|rnd)-(freeze_rows|stopgrad)-n[0-9.]+"
RUN_RE = (
    rf"base|({alt(config['leanings'])})/({alt(config['source_topics'])})/"
    rf"({TRAIN_KIND_RE}|patch-(general|specific|random))"
)


wildcard_constraints:
    model=alt(MODELS),
    lean=alt(config["leanings"]),
    src=alt(config["source_topics"]),
    topic=alt(config["topics"]),
    kind=TRAIN_KIND_RE,
    run=RUN_RE,


def model_record(wc):
    return f"{RES}/models/{wc.model}/model.json"


def adapter_of(wc):
    """The trained adapter a run uses (patched runs use the vanilla one); none for base."""
    if wc.run == "base":
        return []
    lean, src, kind = wc.run.split("/")
    if kind.startswith("patch-"):
        kind = "ft"
    return f"{RES}/{wc.model}/{lean}/{src}/{kind}/train"


def neurons_of(wc):
    if wc.run == "base" or not wc.run.split("/")[2].startswith("patch-"):
        return []
    lean, src, _ = wc.run.split("/")
    return f"{RES}/{wc.model}/{lean}/{src}/ft/neurons"


def params_b(wc):
    return SPECS[wc.model]["params_b"]


def mem_mb(wc, attempt):
    r = config["resources"]
    return int((r["mem_mb_base"] + r["mem_mb_per_b_params"] * params_b(wc)) * (1 + 0.5 * (attempt - 1)))


def runtime(wc, attempt):
    r = config["resources"]
    return int((r["runtime_base"] + r["runtime_per_b_params"] * params_b(wc)) * attempt)


MODEL_JOB = dict(
    gpu=config["resources"]["gpu"],
    mem_mb=mem_mb,
    runtime=runtime,
)


def raw(rel):
    return f"{RES}/data/raw/{rel}"


def stage_of(run):
    return "base" if run == "base" else run.split("/")[2]
