import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

import polneurons.activations as activations
from polneurons.activations import (
    check_dumps_of_adapter,
    dump_activations,
    read_dump,
    topic_contrast,
)
from polneurons.errors import IntegrityError
from polneurons.io import sha256_file
from polneurons.testing import FIXTURE_TEXT, randomize_lora

# Different lengths, so every batch of 3 is padded.
PROMPTS = [FIXTURE_TEXT[i] for i in (0, 4, 10, 13, 2, 11, 7)]
IDS = [f"p{i}" for i in range(len(PROMPTS))]


@pytest.fixture
def peft_llama(llama):
    model = get_peft_model(
        llama, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    return randomize_lora(model, scale=0.5, seed=0).eval()


def brute_force(model, tokenizer, site):
    """Per prompt, unpadded, with plain hooks: token counts, squared-difference sums, last tokens."""
    layers = model.base_model.model.model.layers
    captured = {}

    def keep(layer):
        def hook(module, args, output=None):
            captured[layer] = (args[0] if site == "mlp_intermediate" else output)[0].detach()

        return hook

    handles = [
        layer.mlp.down_proj.register_forward_pre_hook(keep(i))
        if site == "mlp_intermediate"
        else layer.mlp.register_forward_hook(keep(i))
        for i, layer in enumerate(layers)
    ]
    results = []
    with torch.no_grad():
        for prompt in PROMPTS:
            input_ids = torch.tensor([tokenizer(prompt)["input_ids"]])
            with model.disable_adapter():
                model(input_ids=input_ids)
            base = torch.stack([captured[i] for i in range(len(layers))], 1)  # [tokens, L, W]
            model(input_ids=input_ids)
            tuned = torch.stack([captured[i] for i in range(len(layers))], 1)
            results.append(
                (input_ids.shape[1], ((tuned - base) ** 2).sum(0), base[-1], tuned[-1], base, tuned)
            )
    for handle in handles:
        handle.remove()
    return results


def dump(model, tokenizer, out_dir, **kwargs):
    kwargs = {"batch_size": 3, "shard_size": 2, **kwargs}
    return dump_activations(model, tokenizer, PROMPTS, IDS, out_dir, **kwargs)


def shards_of(out_dir):
    return list(read_dump(out_dir)[1])


@pytest.mark.parametrize("site", ["mlp_output", "mlp_intermediate"])
def test_dump_matches_unpadded_prompt_by_prompt_brute_force(peft_llama, tokenizer, tmp_path, site):
    expected = brute_force(peft_llama, tokenizer, site)
    assert len({n for n, *_ in expected}) > 1  # prompts of different lengths: padding happens
    manifest = dump(peft_llama, tokenizer, tmp_path / "dump", site=site)
    assert (manifest["site"], manifest["n_layers"]) == (site, 2)
    assert manifest["width"] == (64 if site == "mlp_intermediate" else 32)

    records = [
        {name: value[row] for name, value in shard.items() if isinstance(value, torch.Tensor)}
        for shard in shards_of(tmp_path / "dump")
        for row in range(len(shard["n_tokens"]))
    ]
    for record, (n, sq, last_base, last_tuned, _, _) in zip(records, expected, strict=True):
        assert record["n_tokens"] == n
        torch.testing.assert_close(record["sq_diff_sum"], sq, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(record["last_m0"].float(), last_base, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(record["last_ms"].float(), last_tuned, rtol=1e-3, atol=1e-3)

    total_sq = sum(sq for _, sq, *_ in expected)
    r_expected = torch.sqrt(total_sq / sum(n for n, *_ in expected))
    r = topic_contrast(tmp_path / "dump")
    assert r.shape == (manifest["n_layers"], manifest["width"]) and (r > 0).all()
    torch.testing.assert_close(r, r_expected, rtol=1e-4, atol=1e-6)


def test_raw_tokens_hold_every_prompt_token_of_both_models(peft_llama, tokenizer, tmp_path):
    expected = brute_force(peft_llama, tokenizer, "mlp_output")
    manifest = dump(peft_llama, tokenizer, tmp_path / "dump", raw_tokens=True)
    assert manifest["fields"]["raw_m0"] == {"dtype": "float16", "shape": ["tokens", 2, 32]}
    raw_m0 = torch.cat([shard["raw_m0"] for shard in shards_of(tmp_path / "dump")]).float()
    raw_ms = torch.cat([shard["raw_ms"] for shard in shards_of(tmp_path / "dump")]).float()
    torch.testing.assert_close(
        raw_m0, torch.cat([b for *_, b, _ in expected]), rtol=1e-3, atol=1e-3
    )
    torch.testing.assert_close(raw_ms, torch.cat([t for *_, t in expected]), rtol=1e-3, atol=1e-3)


def test_shards_respect_shard_size_and_manifest_lists_each_checksum(
    peft_llama, tokenizer, tmp_path
):
    meta = {"model_sha256": "m" * 8, "adapter_sha256": "a" * 8}
    manifest = dump(peft_llama, tokenizer, tmp_path / "dump", meta=meta)
    assert [(s["first_prompt"], s["n_prompts"]) for s in manifest["shards"]] == [
        (0, 2), (2, 2), (4, 2), (6, 1)
    ]  # fmt: skip
    on_disk = json.loads((tmp_path / "dump" / "manifest.json").read_text())
    assert on_disk == manifest and on_disk["meta"] == meta and on_disk["prompt_ids"] == IDS
    assert on_disk["fields"]["sq_diff_sum"] == {"dtype": "float32", "shape": ["prompts", 2, 32]}
    assert on_disk["fields"]["last_m0"]["dtype"] == "float16"
    files = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert files == ["manifest.json"] + [f"shard-{i:05d}.pt" for i in range(4)]
    for entry in manifest["shards"]:
        assert sha256_file(tmp_path / "dump" / entry["file"]) == entry["sha256"]
    assert [s["prompt_ids"] for s in shards_of(tmp_path / "dump")] == [
        IDS[i : i + 2] for i in (0, 2, 4, 6)
    ]


def truncate(path):
    path.write_bytes(path.read_bytes()[:-10])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, flip_a_byte, lambda path: path.unlink()])
def test_a_damaged_or_missing_shard_is_refused(peft_llama, tokenizer, tmp_path, damage):
    dump(peft_llama, tokenizer, tmp_path / "dump")
    damage(tmp_path / "dump" / "shard-00001.pt")
    with pytest.raises(IntegrityError, match="shard-00001.pt"):
        topic_contrast(tmp_path / "dump")


def test_a_malformed_manifest_is_refused(peft_llama, tokenizer, tmp_path):
    dump(peft_llama, tokenizer, tmp_path / "dump")
    path = tmp_path / "dump" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shards"][2]["first_prompt"] = 3
    path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="manifest.json"):
        read_dump(tmp_path / "dump")
    path.write_text("{not json")
    with pytest.raises(IntegrityError, match="manifest.json"):
        read_dump(tmp_path / "dump")


def test_no_dump_folder_when_the_dump_fails_midway(peft_llama, tokenizer, tmp_path, monkeypatch):
    written = []

    def save_then_fail(obj, path):
        if written:
            raise RuntimeError("disk full")
        written.append(path)
        return real_save(obj, path)

    real_save = activations.save_torch
    monkeypatch.setattr(activations, "save_torch", save_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        dump(peft_llama, tokenizer, tmp_path / "dump")
    assert written and list(tmp_path.iterdir()) == []


def test_topic_contrast_over_resampled_prompts(peft_llama, tokenizer, tmp_path):
    dump(peft_llama, tokenizer, tmp_path / "dump")
    plain = topic_contrast(tmp_path / "dump")
    assert torch.equal(topic_contrast(tmp_path / "dump", prompt_index=range(len(PROMPTS))), plain)
    shards = shards_of(tmp_path / "dump")
    sq = torch.cat([s["sq_diff_sum"] for s in shards])
    n = torch.cat([s["n_tokens"] for s in shards])
    resampled = [0, 0, 5, 3]
    expected = torch.sqrt((2 * sq[0] + sq[5] + sq[3]) / (2 * n[0] + n[5] + n[3]))
    torch.testing.assert_close(topic_contrast(tmp_path / "dump", prompt_index=resampled), expected)
    with pytest.raises(ValueError):
        topic_contrast(tmp_path / "dump", prompt_index=[len(PROMPTS)])


def test_a_dump_of_another_adapter_is_refused_before_localization(peft_llama, tokenizer, tmp_path):
    for topic, sha in (("race", "a" * 64), ("science", "b" * 64)):
        dump(peft_llama, tokenizer, tmp_path / topic, meta={"adapter_sha256": sha})
    dumps = {"race": tmp_path / "race", "science": tmp_path / "science"}
    check_dumps_of_adapter({"race": dumps["race"]}, "a" * 64)  # the current adapter's: accepted
    with pytest.raises(IntegrityError, match="science dump .* another adapter") as err:
        check_dumps_of_adapter(dumps, "a" * 64)
    assert "\n" not in str(err.value) and "delete" in str(err.value)


# ---------------------------------------------------------------- contrast variants


def _instruction_mask(tokenizer, prompt, span):
    """Brute force: the tokens whose characters overlap the span, from the offsets."""
    offsets = tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
    return torch.tensor([b > a and a < span[1] and b > span[0] for a, b in offsets])


def test_instruction_tokens_sum_only_the_instructions_own_tokens(peft_llama, tokenizer, tmp_path):
    instructions = [p[: len(p) // 2] or p for p in PROMPTS]
    prompts = [f"Template: answer about x. {text} Answer:" for text in instructions]
    spans = activations.instruction_spans(prompts, instructions)
    assert [prompts[i][a:b] for i, (a, b) in enumerate(spans)] == instructions
    dump_activations(
        peft_llama, tokenizer, prompts, IDS, tmp_path / "dump", batch_size=3, spans=spans
    )
    manifest = read_dump(tmp_path / "dump")[0]
    assert manifest["tokens"] == "instruction"
    layers = peft_llama.base_model.model.model.layers
    captured = {}
    hooks = [
        layer.mlp.register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(i, out[0]))
        for i, layer in enumerate(layers)
    ]
    records = [
        row
        for shard in shards_of(tmp_path / "dump")
        for row in zip(
            shard["n_tokens"],
            shard["sq_diff_sum"],
            shard["sq_base_sum"],
            shard["prompt_length"],
            shard["last_m0"],
            shard["last_ms"],
            strict=True,
        )
    ]
    with torch.no_grad():
        for prompt, span, record in zip(prompts, spans, records, strict=True):
            n, sq, sq_base, length, last_m0, last_ms = record
            mask = _instruction_mask(tokenizer, prompt, span)
            input_ids = torch.tensor([tokenizer(prompt)["input_ids"]])
            with peft_llama.disable_adapter():
                peft_llama(input_ids=input_ids)
            every_base = torch.stack([captured[i] for i in range(len(layers))], 1)
            peft_llama(input_ids=input_ids)
            every_tuned = torch.stack([captured[i] for i in range(len(layers))], 1)
            base, tuned = every_base[mask], every_tuned[mask]
            assert 0 < n == int(mask.sum()) < length == input_ids.shape[1]
            # the last token (outside the instruction) is kept whole, not masked
            assert not mask[-1]
            torch.testing.assert_close(last_m0.float(), every_base[-1], rtol=1e-3, atol=1e-3)
            torch.testing.assert_close(last_ms.float(), every_tuned[-1], rtol=1e-3, atol=1e-3)
            torch.testing.assert_close(sq, ((tuned - base) ** 2).sum(0), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(sq_base, (base**2).sum(0), rtol=1e-4, atol=1e-5)
    for hook in hooks:
        hook.remove()


def test_prompts_that_differ_only_in_the_template_get_the_same_instruction_contrast(
    peft_llama, tokenizer, tmp_path
):
    """Two topics whose prompts share every instruction and differ only in the template text
    (after the instruction: a causal model's instruction tokens cannot see it): under
    `instruction` their r_t are identical (difference 0); over all tokens they are not."""
    r = {}
    for tokens in ("all", "instruction"):
        for topic, template in (
            ("a", "{} Answer about guns:"),
            ("b", "{} Reply on taxes, please:"),
        ):
            prompts = [template.format(text) for text in PROMPTS]
            spans = activations.instruction_spans(prompts, PROMPTS) if tokens != "all" else None
            folder = tmp_path / tokens / topic
            dump_activations(peft_llama, tokenizer, prompts, IDS, folder, spans=spans)
            r[tokens, topic] = topic_contrast(folder, "relative")
    torch.testing.assert_close(r["instruction", "a"], r["instruction", "b"], rtol=0, atol=1e-5)
    assert (r["all", "a"] - r["all", "b"]).abs().max() > 1e-3


def test_relative_contrast_is_the_rms_over_the_base_models_own_rms(peft_llama, tokenizer, tmp_path):
    dump(peft_llama, tokenizer, tmp_path / "dump")
    expected = brute_force(peft_llama, tokenizer, "mlp_output")
    n = sum(e[0] for e in expected)
    sq = sum(e[1] for e in expected)
    base_sq = sum((e[4] ** 2).sum(0) for e in expected)
    relative = torch.sqrt(sq / n) / torch.sqrt(base_sq / n)
    torch.testing.assert_close(
        topic_contrast(tmp_path / "dump", "relative"), relative, rtol=1e-4, atol=1e-6
    )
    torch.testing.assert_close(
        topic_contrast(tmp_path / "dump", "rms"), torch.sqrt(sq / n), rtol=1e-4, atol=1e-6
    )


def test_an_instruction_missing_from_its_prompt_is_refused_in_one_line():
    from polneurons.errors import DataError

    with pytest.raises(DataError, match="not in its rendered prompt") as err:
        activations.instruction_spans(["Template: {}"], ["Why guns?"])
    assert "neurons.tokens: all" in str(err.value) and "\n" not in str(err.value)
