"""Stance fine-tuning (method.md: Fine-tuning) and its inhibited variant (method.md: InhibitFT): a plain PyTorch loop.

LoRA (peft) or full fine-tuning, loss on completion tokens only, AdamW with linear decay after a
linear warm-up, seeded so that two runs on CPU are bit-identical.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import random
import time

import torch
from torch import nn

from polneurons.errors import ConfigError, DataError, ModelError
from polneurons.io import atomic_path, write_json
from polneurons.models import write_train_checksums


def _schema_defaults() -> dict:
    """method.md: Fine-tuning's values, read from the config schema (the one place that holds defaults)."""
    from polneurons.config import fill_defaults, load_schema

    schema = load_schema()
    return {**fill_defaults({}, schema["definitions"]["finetune"], schema), "seed": 0}


FINETUNE_DEFAULTS = _schema_defaults()
ADAPTER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
IGNORE_INDEX = -100


@dataclasses.dataclass
class FinetuneResult:
    """What `finetune` returns: the trained model (a peft model for LoRA, in eval mode) and the
    training log also written to `out_dir/train_log.json`."""

    model: nn.Module
    log: dict


def resolve_config(cfg: dict) -> dict:
    """`cfg` over FINETUNE_DEFAULTS (the `lora` subtree merged key by key); unknown keys refused."""
    unknown = set(cfg) - set(FINETUNE_DEFAULTS)
    unknown_lora = set(cfg.get("lora") or {}) - set(FINETUNE_DEFAULTS["lora"])
    if unknown or unknown_lora:
        names = sorted(unknown) + [f"lora.{k}" for k in sorted(unknown_lora)]
        raise ConfigError(
            f"unknown fine-tuning key(s): {', '.join(names)}",
            f"use only {', '.join(FINETUNE_DEFAULTS)}",
        )
    resolved = {**FINETUNE_DEFAULTS, **cfg}
    resolved["lora"] = {**FINETUNE_DEFAULTS["lora"], **(cfg.get("lora") or {})}
    if resolved["method"] not in ("lora", "full"):
        raise ConfigError(f"method is {resolved['method']!r}", "set method to 'lora' or 'full'")
    epochs = resolved["epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs <= 0:
        raise ConfigError(f"epochs is {epochs!r}", "set epochs to a number above 0")
    for key in ("batch_size", "grad_accum", "max_length", "max_steps"):
        value = resolved[key]
        if not (value is None and key == "max_steps") and not (
            isinstance(value, int) and value >= 1
        ):
            raise ConfigError(f"{key} is {value!r}", f"set {key} to an integer of 1 or more")
    if resolved["adapter_dtype"] not in ADAPTER_DTYPES:
        raise ConfigError(
            f"adapter_dtype is {resolved['adapter_dtype']!r}",
            f"use one of {', '.join(ADAPTER_DTYPES)}",
        )
    return resolved


def linear_module_names(model: nn.Module) -> list[str]:
    """Sorted leaf names of the model's linear layers (nn.Linear and GPT-2's Conv1D)."""
    from transformers.pytorch_utils import Conv1D

    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, Conv1D))
        }
    )


def check_target_modules(model: nn.Module, target_modules: list[str]) -> None:
    """ConfigError (one line) if a LoRA target names no linear layer of this model."""
    present = linear_module_names(model)
    missing = [t for t in target_modules if t not in present]
    if missing:
        raise ConfigError(
            f"LoRA target module(s) {', '.join(missing)} not in {type(model).__name__}",
            f"choose target_modules among this model's linear layers: {', '.join(present)}",
        )


def add_lora(model: nn.Module, cfg: dict) -> nn.Module:
    """Wrap a plain transformers model with a LoRA adapter (peft); only the adapter trains."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers.pytorch_utils import Conv1D

    if isinstance(model, PeftModel):
        raise ModelError(
            "finetune received a model that already carries a peft adapter",
            "pass the plain base model; finetune adds the adapter itself",
        )
    lora = cfg["lora"]
    check_target_modules(model, lora["target_modules"])
    conv1d_targets = any(
        isinstance(module, Conv1D) and name.rsplit(".", 1)[-1] in lora["target_modules"]
        for name, module in model.named_modules()
    )
    peft_model = get_peft_model(
        model,
        LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=list(lora["target_modules"]),
            fan_in_fan_out=conv1d_targets,  # Conv1D stores weights as (in, out)
            task_type="CAUSAL_LM",
        ),
    )
    dtype = ADAPTER_DTYPES[cfg["adapter_dtype"]]
    for param in peft_model.parameters():
        if param.requires_grad:
            param.data = param.data.to(dtype)
    return peft_model


def tokenize_example(
    tokenizer, prompt: str, completion: str, max_length: int, add_special_tokens: bool
) -> tuple[list[int], list[int]]:
    """Token ids and labels of prompt + completion + EOS, labels -100 on the prompt.

    Prompt and completion are tokenized separately, so the loss covers exactly the completion's
    tokens; the sequence is truncated at the end to `max_length` (the prompt's start is kept).
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    completion_ids = completion_ids + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_length]
    return input_ids, labels


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int, device) -> dict:
    """Right-pad a list of (input_ids, labels) into tensors; padding is masked and labelled -100."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        attention_mask[row, : len(ids)] = 1
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "labels": labels.to(device),
    }


def completion_loss_sum(model: nn.Module, batch: dict) -> torch.Tensor:
    """Summed next-token cross-entropy over the labelled (completion) tokens of a batch.

    Logits are computed only from the position before the batch's first labelled token on (the
    vocabulary projection of the prompt positions would be thrown away)."""
    labels = batch["labels"]
    predicted = (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero()  # position p is labels[:, p + 1]
    first = int(predicted[0]) + 1 if len(predicted) else 1  # first labelled position (>= 1)
    keep = labels.shape[1] - first + 1  # logits at positions first-1 .. end
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
    ).logits
    return nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        labels[:, labels.shape[1] - keep + 1 :].flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def count_loss_tokens(batch: dict) -> int:
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def accumulate_gradients(
    model: nn.Module, group: list[dict], inhibition=None
) -> tuple[float, int, float | None]:
    """Backward the loss of one optimizer step's micro-batches; (completion loss, loss tokens,
    anchor term or None).

    The completion loss is the token-weighted mean over the whole step (every completion token
    counts once, whatever the micro-batch it falls in), so grad_accum does not change what is
    optimised. With an anchoring `Inhibition` (method.md: InhibitFT, ``anchor``) the loss adds
    anchor_weight x the mean over the step's non-padding tokens and the anchored neurons of the
    squared deviation from M0 over the base RMS; the anchor term is returned before weighting.
    """
    n_tokens = sum(count_loss_tokens(batch) for batch in group)
    anchored = inhibition is not None and inhibition.anchored
    if anchored:
        n_anchor = inhibition.n_neurons * sum(int(b["attention_mask"].sum()) for b in group)
    total, anchor_total = 0.0, 0.0
    for batch in group:
        if anchored:
            base = inhibition.base_values(batch)
            with inhibition.neuron_site.capture(inhibition.neurons) as tuned:
                loss = completion_loss_sum(model, batch) / n_tokens
            anchor = inhibition.anchor_term(tuned, base, batch["attention_mask"]) / n_anchor
            (loss + inhibition.anchor_weight * anchor).backward()
            anchor_total += anchor.item()
        else:
            loss = completion_loss_sum(model, batch) / n_tokens
            loss.backward()
        total += loss.item()
    return total, n_tokens, anchor_total if anchored else None


def train_step(model, group, optimizer, scheduler, inhibition=None) -> tuple[float, int, float]:
    """One optimizer step on a group of micro-batches: (loss, loss tokens, learning rate used).

    With an `Inhibition`, the frozen slices' gradients are masked before the update and their
    values restored after it; its `active()` block must surround the call (stopgrad); an
    anchoring one adds its term to the loss (its value: `inhibition.last_anchor`).
    """
    loss, n_tokens, anchor = accumulate_gradients(model, group, inhibition)
    if inhibition:
        inhibition.last_anchor = anchor
        inhibition.mask_gradients()
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    if inhibition:
        inhibition.restore_frozen()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, n_tokens, lr


def step_groups(tokenized: list, cfg: dict, total_steps: int):
    """Yield (epoch, micro-batches of one optimizer step) for `total_steps` steps.

    The order of the examples is reshuffled every epoch by a generator seeded with cfg seed.
    """
    order_rng = torch.Generator().manual_seed(cfg["seed"])
    per_step = cfg["batch_size"] * cfg["grad_accum"]
    step = 0
    for epoch in itertools.count():
        order = torch.randperm(len(tokenized), generator=order_rng).tolist()
        for first in range(0, len(order), per_step):
            if step == total_steps:
                return
            ids = order[first : first + per_step]
            yield (
                epoch,
                [
                    [tokenized[i] for i in ids[b : b + cfg["batch_size"]]]
                    for b in range(0, len(ids), cfg["batch_size"])
                ],
            )
            step += 1


def optimizer_steps(n_examples: int, cfg: dict) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps after the max_steps cap).

    A fractional `epochs` (e.g. 0.5) stops part-way through the last epoch.
    """
    per_epoch = math.ceil(math.ceil(n_examples / cfg["batch_size"]) / cfg["grad_accum"])
    total = math.ceil(per_epoch * cfg["epochs"])
    if cfg["max_steps"] is not None:
        total = min(total, cfg["max_steps"])
    return per_epoch, total


def training_set(
    tokenizer, examples: list[tuple[str, str]], cfg: dict, add_special_tokens: bool, log=None
) -> list:
    """The tokenized examples that keep at least one completion token within max_length."""
    if tokenizer.eos_token_id is None:
        raise ModelError("the tokenizer has no EOS token", "use a tokenizer that defines eos_token")
    if not examples:
        raise DataError("no training examples", "check the training set of this run")
    tokenized = [
        tokenize_example(tokenizer, p, c, cfg["max_length"], add_special_tokens)
        for p, c in examples
    ]
    # Keep the examples with at least one predicted completion token (label position >= 1).
    tokenized = [(ids, labs) for ids, labs in tokenized if any(x != IGNORE_INDEX for x in labs[1:])]
    if not tokenized:
        raise DataError(
            "no example keeps a completion token within max_length",
            "raise max_length or shorten the prompts",
        )
    if log is not None and len(tokenized) < len(examples):
        log.warning(
            "%d of %d examples dropped: prompt longer than max_length",
            len(examples) - len(tokenized),
            len(examples),
        )
    return tokenized


def trainable_model(model: nn.Module, cfg: dict, inhibit: dict | None):
    """(model to train, its Inhibition or None): LoRA injected (or every weight trainable),
    seeded, and the inhibition checked to act before any step."""
    from polneurons.inhibit import Inhibition, inhibition_problem

    if inhibit is not None:
        problem = inhibition_problem(
            inhibit["site"],
            inhibit["strategy"],
            cfg["method"],
            cfg["lora"]["target_modules"],
            model=model,
        )
        if problem and inhibit["strategy"] == "anchor" and cfg["method"] != "lora":
            raise ConfigError(problem, "fine-tune with method: lora")
        if problem:
            raise ConfigError(problem, "train the MLP projections too (lora.target_modules)")
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    if cfg["method"] == "lora":
        model = add_lora(model, cfg)
    else:
        model.requires_grad_(True)
    return model, Inhibition(model, inhibit) if inhibit is not None else None


def run_steps(model, tokenized, cfg, pad_id, total_steps, inhibition, progress=None) -> list:
    """Train for `total_steps` optimizer steps (AdamW, linear schedule with warm-up); one log
    record per step (loss, lr, tokens, seconds since the start)."""
    from transformers import get_linear_schedule_with_warmup

    from polneurons.progress import progress_bar

    trainable = [p for p in model.parameters() if p.requires_grad]
    device = model.get_input_embeddings().weight.device
    if inhibition is not None and inhibition.anchored:  # the base RMS over the training set
        size = cfg["batch_size"]
        inhibition.calibrate(
            collate(tokenized[i : i + size], pad_id, device) for i in range(0, len(tokenized), size)
        )
    optimizer = torch.optim.AdamW(trainable, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg["warmup_steps"], total_steps)
    steps = []
    start = time.perf_counter()
    model.train()
    with (
        inhibition.active() if inhibition else contextlib.nullcontext(),
        progress_bar(progress, total=total_steps, desc="finetune") as bar,
    ):
        for step, (epoch, group) in enumerate(step_groups(tokenized, cfg, total_steps), start=1):
            group = [collate(batch, pad_id, device) for batch in group]
            loss, n_tokens, lr = train_step(model, group, optimizer, scheduler, inhibition)
            seconds = round(time.perf_counter() - start, 3)
            record = {
                "step": step,
                "epoch": epoch,
                "loss": loss,
                "lr": lr,
                "tokens": n_tokens,
                "seconds": seconds,
            }
            if inhibition is not None and inhibition.anchored:
                record["anchor"] = inhibition.last_anchor  # before anchor_weight
            steps.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
    model.eval()
    return steps


def save_run(model, tokenizer, cfg: dict, train_log: dict, out_dir) -> None:
    """The adapter (or full weights and tokenizer), train_log.json and their checksums, atomically."""
    with atomic_path(out_dir, is_dir=True) as tmp:
        if cfg["method"] == "lora":
            model.save_pretrained(tmp / "adapter")
        else:
            model.save_pretrained(tmp / "model")
            tokenizer.save_pretrained(tmp / "model")
        write_json(tmp / "train_log.json", train_log)
        write_train_checksums(tmp)  # inside the atomic block: no finished run without its sums


def finetune(
    model: nn.Module,
    tokenizer,
    examples: list[tuple[str, str]],
    cfg: dict,
    out_dir,
    inhibit: dict | None = None,
    add_special_tokens: bool = True,
    progress=None,
    log=None,
    examples_from: str | None = None,
) -> FinetuneResult:
    """Fine-tune `model` on (prompt, completion) pairs and save the result atomically in `out_dir`.

    `model` is a plain transformers causal LM; it is modified in place (for LoRA the adapter is
    injected into it). `cfg` holds FINETUNE_DEFAULTS' keys (missing ones take the default;
    adapter_dtype applies to LoRA only, full FT trains the weights in the model's dtype).
    Examples whose prompt fills max_length are dropped (logged).
    `inhibit` ({"strategy", "site", "neurons"}, see polneurons.inhibit) turns the run into
    InhibitFT; everything else is the same as vanilla FT. `progress` is a stream for a tqdm bar,
    `log` a logging.Logger; `examples_from` (where the examples came from, e.g. the null
    fine-tune's "topic" or "pooled") goes into the training log when given.

    Writes `out_dir/train_log.json` and either `out_dir/adapter/` (peft adapter with its
    adapter_config.json) or, for method full, `out_dir/model/` (weights and tokenizer).
    """
    cfg = resolve_config(cfg)
    tokenized = training_set(tokenizer, examples, cfg, add_special_tokens, log)
    model, inhibition = trainable_model(model, cfg, inhibit)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    steps_per_epoch, total_steps = optimizer_steps(len(tokenized), cfg)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if log is not None:
        log.info(
            "%s fine-tuning: %d examples, %d optimizer steps, %d trainable parameters%s",
            cfg["method"],
            len(tokenized),
            total_steps,
            n_trainable,
            f", inhibition {inhibition.summary()}" if inhibition else "",
        )
    start = time.perf_counter()
    steps = run_steps(model, tokenized, cfg, pad_id, total_steps, inhibition, progress)
    train_log = {
        "config": cfg,
        "inhibit": inhibition.summary() if inhibition else None,
        "n_examples": len(examples),
        "n_examples_used": len(tokenized),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "trainable_parameters": n_trainable,
        "seconds": round(time.perf_counter() - start, 3),
        "steps": steps,
    }
    if examples_from is not None:
        train_log["examples_from"] = examples_from
    save_run(model, tokenizer, cfg, train_log, out_dir)
    if log is not None:
        log.info(
            "fine-tuning done in %.1f s, final loss %.4f", train_log["seconds"], steps[-1]["loss"]
        )
    return FinetuneResult(model=model, log=train_log)
