"""Does the classifier judge abstain on text without a stance, and what does it cost it?

For each `judge.classifier.no_stance_weight` given (0: no stance-free class), the classifier judge
is trained as rule `train_judge` trains it (`judge_classifier.train_classifier_judge`, the config's pools
and seed) and measured on: the stance-free battery of the tests (share rated left or right), and
its held-out answers with GPT-4's labels, whole and cut to each of `--tokens` tokens of a
model's tokenizer (accuracy, Cohen's kappa, the share it abstains on, and S over the answers of
IdeoINST's right-leaning and left-leaning files). With `--ratings`, the answers of generated
runs (ratings.jsonl files) are rated again and counted. Results go to a Markdown file (`--out`).

    python benchmarks/judge_abstention.py --mirror /path/to/political_stance_data \
        --tokenizer results/models/smollm2/checkpoint --weights 0 0.25 0.5 1 2 \
        --tokens 32 16 --ratings results/smollm2/base/ratings.jsonl \
        --out benchmarks/results/judge_abstention.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from polneurons.config import pool_sizes, validate_config  # noqa: E402
from polneurons.data import TOPICS  # noqa: E402
from polneurons.judge_classifier import (  # noqa: E402
    train_classifier_judge,
    truncate_to_tokens,
)
from polneurons.judges import NO_STANCE, JudgeItem  # noqa: E402
from polneurons.prompts import topic_pools  # noqa: E402

BATTERY = REPO / "tests" / "data" / "stance_free_battery.yaml"


def stance(labels) -> float:
    labels = list(labels)
    return (labels.count("right leaning") - labels.count("left leaning")) / len(labels)


def measure(judge, texts, truth, sides) -> dict:
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    classes = np.asarray(judge.pipeline.predict(list(texts)), dtype=object)
    rated = np.where(classes == NO_STANCE, "neutral", classes)
    return {
        "accuracy": accuracy_score(truth, rated),
        "kappa": cohen_kappa_score(truth, rated),
        "no_stance": float(np.mean(classes == NO_STANCE)),
        "S_right_files": stance(rated[sides == "right"]),
        "S_left_files": stance(rated[sides == "left"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--mirror", type=Path, required=True, help="the offline data mirror")
    parser.add_argument("--tokenizer", required=True, help="a checkpoint folder or hub id")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[32])
    parser.add_argument("--ratings", type=Path, nargs="*", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    config = validate_config(yaml.safe_load(args.config.read_text()))
    sizes, seed = pool_sizes(config), config["seed"]
    pools = {topic: topic_pools(args.mirror, topic, sizes, seed) for topic in TOPICS}
    side = {}
    for pool in pools.values():
        for pair in pool.judge:
            side.setdefault(pair.left, "left")
            side.setdefault(pair.right, "right")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    battery = [text for texts in yaml.safe_load(BATTERY.read_text()).values() for text in texts]
    answers = [json.loads(line)["response"] for p in args.ratings for line in p.open()]

    rows = []
    for weight in args.weights:
        cfg = config["judge"]["classifier"]
        judge = train_classifier_judge(
            pools, test_fraction=cfg["test_fraction"], seed=seed, no_stance_weight=weight
        )
        texts = judge.held_out["texts"]
        truth = np.asarray(judge.held_out["labels"], dtype=object)
        sides = np.asarray([side[text] for text in texts], dtype=object)
        rated = judge.rate([JudgeItem("pct", None, text) for text in battery])
        row = {
            "no_stance_weight": weight,
            "battery_left_or_right": sum(r in ("left leaning", "right leaning") for r in rated),
            "battery_n": len(battery),
        }
        cuts = {"whole": texts} | {
            f"{n} tokens": truncate_to_tokens(texts, tokenizer, n) for n in args.tokens
        }
        for name, cut in cuts.items():
            row |= {f"{name}: {k}": v for k, v in measure(judge, cut, truth, sides).items()}
        if answers:
            rated = judge.rate([JudgeItem("pct", None, text) for text in answers])
            row["runs L/R/N/error"] = "/".join(
                str(rated.count(label))
                for label in ("left leaning", "right leaning", "neutral", "error")
            )
        rows.append(row)
        print(row, flush=True)

    command = " ".join(["python benchmarks/judge_abstention.py", *sys.argv[1:]])
    columns = list(rows[0])
    lines = [
        "# The classifier judge's abstention: the stance-free battery and the agreement it keeps",
        "",
        f"`{command}`",
        "",
        f"Held-out answers: {len(texts)} (the judge pool's test split, GPT-4's labels); cut with "
        f"the tokenizer of `{args.tokenizer}`. S: (right - left) / n over the held-out answers "
        "of IdeoINST's right-leaning (left-leaning) files; by GPT-4's own labels S is "
        f"{stance(truth[sides == 'right']):.3f} ({stance(truth[sides == 'left']):.3f}). "
        "no_stance: the share rated neutral by the stance-free class. battery: "
        "tests/data/stance_free_battery.yaml (empty answers are rated `error`, not left or right).",
        "",
    ]
    # measures as rows, one column per weight: the table is too wide the other way round
    lines.append(
        "| measure | " + " | ".join(f"weight {r['no_stance_weight']:g}" for r in rows) + " |"
    )
    lines.append("|---|" + "---|" * len(rows))
    for column in columns[1:]:
        shown = [
            f"{r[column]:.3f}" if isinstance(r[column], float) else str(r[column]) for r in rows
        ]
        lines.append(f"| {column} | " + " | ".join(shown) + " |")
    lines.append("")
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
