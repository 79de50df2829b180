"""Activation dumps of M_s vs M0 (method.md: PNLAC): streamed .pt shards with a checksummed manifest,
and the RMS contrast r_t computed from them.

A dump folder holds ``shard-00000.pt``, ``shard-00001.pt``, ... (at most ``shard_size`` prompts
each, in prompt order) and ``manifest.json``. Each shard is a dict:

- ``first_prompt`` (int), ``prompt_ids`` (list of str);
- ``prompt_length`` int64 [p]: prompt tokens of each prompt (padding excluded);
- ``n_tokens`` int64 [p]: the tokens the contrast sums over (``tokens``: every prompt token,
  or only the instruction's own tokens; docs/method.md, "Contrast variants");
- ``sq_diff_sum`` float32 [p, n_layers, width]: per prompt, the sum over those tokens of
  (h_Ms - h_M0)^2. Kept in float32, not float16: these sums feed r_t exactly, and a float16
  sum of squares loses precision (and overflows above 65504) where float32 does not;
- ``sq_base_sum`` float32 [p, n_layers, width]: the sum over the same tokens of h_M0^2 (the
  base model's own scale, for the ``relative`` contrast; from the same pass);
- ``last_m0``, ``last_ms`` float16 [p, n_layers, width]: activations at the last prompt token;
- only with ``raw_tokens``: ``raw_m0``, ``raw_ms`` float16 [tokens, n_layers, width], every
  prompt token of the shard's prompts, prompt after prompt.

The manifest records the format, package version, site, token selection, n_layers, width, dtype and shape of
each field, the prompt ids, every shard's file name, sha256 and prompt range, and the caller's
``meta`` (model and adapter hashes). Readers refuse any shard that does not match it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import torch

from polneurons import __version__
from polneurons.errors import ConfigError, DataError, IntegrityError, ModelError
from polneurons.io import atomic_path, load_torch_verified, save_torch, write_json
from polneurons.models import AdapterSwitch
from polneurons.sites import NeuronSite

DUMP_FORMAT = "polneurons.activations/2"
TOKEN_SELECTIONS = ("all", "instruction")
CONTRASTS = ("rms", "relative")
MANIFEST = "manifest.json"


def _field_specs(n_layers: int, width: int, raw_tokens: bool) -> dict[str, dict]:
    """dtype and shape of each shard field; the first dimension is named ("prompts" or "tokens")."""
    neurons = [n_layers, width]
    specs = {
        "prompt_length": ("int64", ["prompts"]),
        "n_tokens": ("int64", ["prompts"]),
        "sq_diff_sum": ("float32", ["prompts", *neurons]),
        "sq_base_sum": ("float32", ["prompts", *neurons]),
        "last_m0": ("float16", ["prompts", *neurons]),
        "last_ms": ("float16", ["prompts", *neurons]),
    }
    if raw_tokens:
        specs["raw_m0"] = ("float16", ["tokens", *neurons])
        specs["raw_ms"] = ("float16", ["tokens", *neurons])
    return {name: {"dtype": dtype, "shape": shape} for name, (dtype, shape) in specs.items()}


def _pad_right(
    token_lists: list[list[int]], pad_id: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right padding: real tokens keep positions 0..n-1, so no position ids are needed."""
    longest = max(map(len, token_lists))
    input_ids = torch.full((len(token_lists), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, tokens in enumerate(token_lists):
        input_ids[row, : len(tokens)] = torch.tensor(tokens)
        attention_mask[row, : len(tokens)] = 1
    return input_ids.to(device), attention_mask.to(device)


def _contrast_batch(
    model, neuron_site: NeuronSite, input_ids, attention_mask, counted, raw_tokens: bool, switch
) -> dict:
    """One teacher-forced pass of M0 (adapter disabled by `switch`, a models.AdapterSwitch) and
    one of M_s over a padded batch; the sums run over the `counted` [batch, tokens] positions
    (a subset of the real tokens)."""
    batch = len(input_ids)
    n_layers, width = neuron_site.n_layers, neuron_site.width
    rows = torch.arange(batch, device=input_ids.device)
    last = attention_mask.sum(1) - 1
    # [batch, 1, tokens]: 1 at a counted token, 0 elsewhere; a sum over tokens is one batched
    # matrix product with it (no masked copy of the activations)
    weights = (counted & attention_mask.bool()).float()[:, None, :]
    forward = dict(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1
    )
    sq_diff_sum = torch.zeros(batch, n_layers, width, dtype=torch.float32, device=input_ids.device)
    sq_base_sum = torch.zeros_like(sq_diff_sum)
    last_ms = torch.zeros(batch, n_layers, width, dtype=torch.float16, device=input_ids.device)
    raw_ms = {}

    with switch.disabled(), neuron_site.record() as base:
        model(**forward)

    # two float32 buffers the size of one layer's activations, reused by every layer: the
    # recorded tensors are never written (M_s's is still used by the forward, M0's below)
    shape = (*input_ids.shape, width)
    reference = torch.empty(shape, device=input_ids.device)
    diff = torch.empty(shape, device=input_ids.device)

    def contrast(layer: int, act: torch.Tensor) -> None:
        reference.copy_(base[layer])
        torch.sub(act, reference, out=diff)
        sq_diff_sum[:, layer] = torch.bmm(weights, diff.square_()).squeeze(1)
        sq_base_sum[:, layer] = torch.bmm(weights, reference.square_()).squeeze(1)
        last_ms[:, layer] = act[rows, last]
        if raw_tokens:
            raw_ms[layer] = act.half()

    with neuron_site.record(callback=contrast):
        model(**forward)
    out = {
        "prompt_length": (last + 1).cpu(),
        "n_tokens": (counted & attention_mask.bool()).sum(1).cpu(),
        "sq_diff_sum": sq_diff_sum.cpu(),
        "sq_base_sum": sq_base_sum.cpu(),
        "last_m0": torch.stack([base[layer][rows, last] for layer in range(n_layers)], 1)
        .half()
        .cpu(),
        "last_ms": last_ms.cpu(),
    }
    if raw_tokens:  # [batch, tokens, n_layers, width]
        out["raw_m0"] = torch.stack([base[layer] for layer in range(n_layers)], 2).half().cpu()
        out["raw_ms"] = torch.stack([raw_ms[layer] for layer in range(n_layers)], 2).cpu()
    return out


def dump_activations(
    model,
    tokenizer,
    prompts: list[str],
    prompt_ids: list[str],
    out_dir,
    site: str = "mlp_output",
    batch_size: int = 8,
    shard_size: int = 32,
    raw_tokens: bool = False,
    add_special_tokens: bool = True,
    meta: dict | None = None,
    progress=None,
    spans: list[tuple[int, int]] | None = None,
) -> dict:
    """Dump the contrast of a peft model with its adapter on (M_s) and off (M0) over `prompts`.

    Teacher-forced passes in inference mode over prompt tokens only, padding masked out. The
    sums run over every prompt token, or with `spans` (one (start, end) character span per
    prompt, e.g. `instruction_spans`) only over the tokens whose characters overlap the span:
    no BOS, chat markup or template text (docs/method.md, "Contrast variants"). Memory is bounded by one batch and one shard, whatever the number of prompts.
    `out_dir` appears only when complete. `meta` (model and adapter hashes, ...) goes into the
    manifest as given; `progress` is a stream for a tqdm bar. Returns the manifest.
    """
    from polneurons.progress import progress_bar

    if len(prompts) != len(prompt_ids) or not prompts:
        raise DataError(
            f"{len(prompts)} prompts but {len(prompt_ids)} prompt ids", "give one id per prompt"
        )
    if batch_size < 1 or shard_size < 1:
        raise ConfigError(
            f"batch_size and shard_size must be at least 1, got {batch_size} and {shard_size}",
            "fix the config",
        )
    if spans is not None and len(spans) != len(prompts):
        raise DataError(f"{len(prompts)} prompts but {len(spans)} spans", "give one per prompt")
    if spans is not None and not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            "neurons.tokens: instruction needs a fast tokenizer (character offsets)",
            "use a checkpoint with tokenizer.json, or set neurons.tokens: all",
        )
    if len(set(prompt_ids)) != len(prompt_ids):
        raise DataError("prompt ids are not unique", "give every prompt its own id")
    if not hasattr(model, "disable_adapter"):
        raise ModelError(
            f"{type(model).__name__} has no adapter to disable",
            "dump a peft model (base model + LoRA adapter)",
        )
    neuron_site = NeuronSite(model, site)
    switch = AdapterSwitch(model)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    manifest = {
        "format": DUMP_FORMAT,
        "package_version": __version__,
        "site": site,
        "n_layers": neuron_site.n_layers,
        "width": neuron_site.width,
        "raw_tokens": raw_tokens,
        "tokens": "all" if spans is None else "instruction",
        "add_special_tokens": add_special_tokens,
        "padding": "right, masked",
        "fields": _field_specs(neuron_site.n_layers, neuron_site.width, raw_tokens),
        "prompt_ids": list(prompt_ids),
        "shards": [],
        "meta": meta or {},
    }
    pending: list[dict] = []  # per-prompt records of the shard being filled

    def flush(folder: Path) -> None:
        first = sum(entry["n_prompts"] for entry in manifest["shards"])
        shard = {"first_prompt": first, "prompt_ids": prompt_ids[first : first + len(pending)]}
        for name in manifest["fields"]:
            shard[name] = torch.cat([record[name] for record in pending])
        name = f"shard-{len(manifest['shards']):05d}.pt"
        digest = save_torch(shard, folder / name)
        manifest["shards"].append(
            {"file": name, "sha256": digest, "first_prompt": first, "n_prompts": len(pending)}
        )
        pending.clear()

    was_training = model.training
    model.eval()  # LoRA dropout must be off
    try:
        with (
            atomic_path(out_dir, is_dir=True) as folder,
            torch.inference_mode(),
            progress_bar(progress, total=len(prompts), unit="prompt") as bar,
        ):
            for start in range(0, len(prompts), batch_size):
                texts = prompts[start : start + batch_size]
                encoded = tokenizer(
                    texts,
                    add_special_tokens=add_special_tokens,
                    return_offsets_mapping=spans is not None,
                )
                tokens = encoded["input_ids"]
                for offset, ids in enumerate(tokens):
                    if not ids:
                        raise DataError(
                            f"prompt {prompt_ids[start + offset]!r} has no tokens",
                            "drop empty prompts",
                        )
                input_ids, attention_mask = _pad_right(tokens, pad_id, device)
                if spans is None:
                    counted = attention_mask.bool()
                else:
                    counted = _span_mask(
                        encoded["offset_mapping"],
                        spans[start : start + batch_size],
                        prompt_ids[start : start + batch_size],
                        input_ids.shape[1],
                    ).to(device)
                batch = _contrast_batch(
                    model, neuron_site, input_ids, attention_mask, counted, raw_tokens, switch
                )
                for row, n in enumerate(batch["prompt_length"].tolist()):
                    pending.append(
                        {
                            name: batch[name][row : row + 1]
                            if spec["shape"][0] == "prompts"
                            else batch[name][row, :n]
                            for name, spec in manifest["fields"].items()
                        }
                    )
                    if len(pending) == shard_size:
                        flush(folder)
                bar.update(len(texts))
            if pending:
                flush(folder)
            write_json(folder / MANIFEST, manifest)
    finally:
        model.train(was_training)
    return manifest


def _span_mask(offsets, spans, prompt_ids, width: int) -> torch.Tensor:
    """[prompts, width] bool: the tokens whose character offsets overlap their prompt's span."""
    mask = torch.zeros(len(offsets), width, dtype=torch.bool)
    for row, (pairs, (begin, end)) in enumerate(zip(offsets, spans, strict=True)):
        for position, (first, last) in enumerate(pairs):
            mask[row, position] = last > first and first < end and last > begin
        if not mask[row].any():
            raise DataError(
                f"prompt {prompt_ids[row]!r} has no token inside its instruction",
                "drop empty instructions, or set neurons.tokens: all",
            )
    return mask


def instruction_spans(prompts: list[str], instructions: list[str]) -> list[tuple[int, int]]:
    """The (start, end) character span of each instruction in its rendered prompt (its last
    occurrence: the template comes first). DataError when a prompt does not contain it.

    >>> instruction_spans(["Topic: x. Q: Why?"], ["Why?"])
    [(13, 17)]
    """
    spans = []
    for prompt, text in zip(prompts, instructions, strict=True):
        begin = prompt.rfind(text)
        if begin < 0 or not text:
            raise DataError(
                f"the instruction {text[:40]!r} is not in its rendered prompt",
                "set neurons.tokens: all for a template that rewrites the instruction",
            )
        spans.append((begin, begin + len(text)))
    return spans


def _malformed(out_dir: Path, what: str) -> IntegrityError:
    return IntegrityError(
        f"{out_dir / MANIFEST} is missing or malformed ({what})",
        f"delete {out_dir} and rerun the dump",
    )


def _check_manifest(manifest, out_dir: Path) -> None:
    def require(ok: bool, what: str) -> None:
        if not ok:
            raise _malformed(out_dir, what)

    require(isinstance(manifest, dict), "not a JSON object")
    require(manifest.get("format") == DUMP_FORMAT, f"format is not {DUMP_FORMAT}")
    for key in ("n_layers", "width"):
        require(isinstance(manifest.get(key), int) and manifest[key] > 0, f"bad {key}")
    require(isinstance(manifest.get("site"), str), "bad site")
    ids = manifest.get("prompt_ids")
    require(isinstance(ids, list) and all(isinstance(i, str) for i in ids), "bad prompt_ids")
    expected = _field_specs(
        manifest["n_layers"], manifest["width"], manifest.get("raw_tokens") is True
    )
    require(manifest.get("fields") == expected, "fields do not match n_layers, width, raw_tokens")
    shards = manifest.get("shards")
    require(isinstance(shards, list) and bool(shards), "no shard list")
    covered = 0
    for entry in shards:
        require(isinstance(entry, dict), "bad shard entry")
        require(
            isinstance(entry.get("file"), str) and re.fullmatch(r"shard-\d{5}\.pt", entry["file"]),
            "bad shard file name",
        )
        require(
            isinstance(entry.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]),
            f"bad sha256 for {entry['file']}",
        )
        require(
            entry.get("first_prompt") == covered,
            f"{entry['file']} does not start where the previous shard ends",
        )
        require(
            isinstance(entry.get("n_prompts"), int) and entry["n_prompts"] > 0,
            f"bad n_prompts for {entry['file']}",
        )
        covered += entry["n_prompts"]
    require(covered == len(ids), "shards do not cover the prompt ids")


def _check_shard(shard, entry: dict, manifest: dict, path: Path, out_dir: Path) -> None:
    def require(ok: bool, what: str) -> None:
        if not ok:
            raise IntegrityError(
                f"{path} does not match its manifest ({what})",
                f"delete {out_dir} and rerun the dump",
            )

    fields = manifest["fields"]
    require(
        isinstance(shard, dict) and set(shard) == {"first_prompt", "prompt_ids", *fields}, "fields"
    )
    first, count = entry["first_prompt"], entry["n_prompts"]
    require(shard["first_prompt"] == first, "first prompt")
    require(shard["prompt_ids"] == manifest["prompt_ids"][first : first + count], "prompt ids")
    leading = {"prompts": count}
    if "raw_m0" in fields:
        leading["tokens"] = int(shard["prompt_length"].sum())
    for name, spec in fields.items():
        tensor = shard[name]
        shape = [leading[spec["shape"][0]], *spec["shape"][1:]]
        require(isinstance(tensor, torch.Tensor) and list(tensor.shape) == shape, f"{name} shape")
        require(str(tensor.dtype).removeprefix("torch.") == spec["dtype"], f"{name} dtype")
    require(bool((shard["n_tokens"] > 0).all()), "a prompt with no counted tokens")
    require(bool((shard["n_tokens"] <= shard["prompt_length"]).all()), "more tokens than prompt")


def read_dump(out_dir) -> tuple[dict, Iterator[dict]]:
    """The manifest of a dump and an iterator over its shards, each verified (sha256, shapes).

    The manifest is checked and every shard file's presence confirmed before returning; each
    shard's checksum and contents are checked as the iterator reaches it. Any mismatch raises
    IntegrityError naming the file.
    """
    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _malformed(out_dir, type(exc).__name__) from None
    _check_manifest(manifest, out_dir)
    for entry in manifest["shards"]:
        if not (out_dir / entry["file"]).is_file():
            raise IntegrityError(
                f"{out_dir / entry['file']} is missing", f"delete {out_dir} and rerun the dump"
            )

    def shards() -> Iterator[dict]:
        for entry in manifest["shards"]:
            path = out_dir / entry["file"]
            shard = load_torch_verified(path, entry["sha256"])
            _check_shard(shard, entry, manifest, path, out_dir)
            yield shard

    return manifest, shards()


def check_dumps_of_adapter(dumps: dict[str, str | Path], adapter_sha256: str) -> None:
    """IntegrityError (one line) unless every dump's manifest records ``adapter_sha256`` (the
    adapter the neurons are localized for): a dump left over from an earlier training of the
    run would mix two fine-tuned models' contrasts."""
    for topic, out_dir in dumps.items():
        manifest, _ = read_dump(out_dir)
        recorded = manifest["meta"].get("adapter_sha256")
        if recorded != adapter_sha256:
            raise IntegrityError(
                f"the {topic} dump {out_dir} was made with another adapter "
                f"({str(recorded)[:12]}, not {adapter_sha256[:12]})",
                f"delete {out_dir} and rerun: it is dumped again from the current adapter",
            )


def contrast_sums(out_dir, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """Prompt-weighted totals of a dump, streamed shard by shard.

    `weights` [n_sets, n_prompts] (e.g. how often a bootstrap draw picked each prompt) ->
    {"sq_diff_sum", "sq_base_sum": [n_sets, n_layers, width], "n_tokens": [n_sets]}, float32.
    """
    manifest, shards = read_dump(out_dir)
    n_prompts = len(manifest["prompt_ids"])
    if weights.dim() != 2 or weights.shape[1] != n_prompts:
        raise ValueError(f"weights must be [n_sets, {n_prompts}], got {list(weights.shape)}")
    weights = weights.float()
    neurons = manifest["n_layers"] * manifest["width"]
    sums = {name: torch.zeros(len(weights), neurons) for name in ("sq_diff_sum", "sq_base_sum")}
    n_tokens = torch.zeros(len(weights))
    for shard in shards:
        first = shard["first_prompt"]
        shard_weights = weights[:, first : first + len(shard["n_tokens"])]
        for name in sums:
            sums[name] += shard_weights @ shard[name].flatten(1)
        n_tokens += shard_weights @ shard["n_tokens"].float()
    shape = (len(weights), manifest["n_layers"], manifest["width"])
    return {**{name: total.view(shape) for name, total in sums.items()}, "n_tokens": n_tokens}


def contrast_from_sums(sums: dict[str, torch.Tensor], contrast: str = "rms") -> torch.Tensor:
    """r_t [..., n_layers, width] from the totals of `contrast_sums` (docs/method.md, "PNLAC").

    ``rms`` (the paper): r = sqrt( sum over prompts and tokens of (h_Ms - h_M0)^2 / tokens ).
    ``relative``: r / rms(h_M0), the base model's RMS of the same neuron on the same tokens, so
    a neuron's change is measured against its own scale, not the layer's (a neuron the base
    model never drives, rms(h_M0) = 0, gets r / 1e-6: as large as its change makes it).
    """
    n_tokens = sums["n_tokens"][..., None, None]
    r = torch.sqrt(sums["sq_diff_sum"] / n_tokens)
    if contrast == "rms":
        return r
    if contrast == "relative":
        return r / torch.sqrt(sums["sq_base_sum"] / n_tokens).clamp_min(1e-6)
    raise ConfigError(f"unknown neurons.contrast {contrast!r}", f"use one of {CONTRASTS}")


def topic_contrast(out_dir, contrast: str = "rms", prompt_index=None) -> torch.Tensor:
    """r_t [n_layers, width] of a dump, over all prompts or over `prompt_index` (repeats count)."""
    n_prompts = len(read_dump(out_dir)[0]["prompt_ids"])
    if prompt_index is None:
        weights = torch.ones(1, n_prompts)
    else:
        prompt_index = torch.as_tensor(prompt_index, dtype=torch.long).flatten()
        if (
            len(prompt_index) == 0
            or not 0 <= int(prompt_index.min()) <= int(prompt_index.max()) < n_prompts
        ):
            raise ValueError(f"prompt_index must be non-empty, with entries in 0..{n_prompts - 1}")
        weights = torch.bincount(prompt_index, minlength=n_prompts)[None]
    return contrast_from_sums(contrast_sums(out_dir, weights), contrast)[0]
