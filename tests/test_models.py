"""Loading a trained run for inference: the adapter's dtype (config inference_adapter_dtype)."""

import pytest
import torch
from workflow_helpers import build_tiny_checkpoint

from polneurons.models import load_with_adapter, prepare_model, write_train_checksums
from polneurons.testing import tiny_lora


def test_inference_adapter_dtype_model_casts_only_the_adapter_and_keeps_m0(tmp_path):
    record = prepare_model(
        {"path": str(build_tiny_checkpoint(tmp_path / "model"))}, tmp_path / "prepared"
    )
    train = tmp_path / "train"
    tiny_lora("llama").save_pretrained(train / "adapter")
    write_train_checksums(train)
    ids = torch.arange(3, 19).reshape(2, 8)
    outputs = {}
    for adapter_dtype in ("float32", "model"):
        model, _ = load_with_adapter(record, train / "adapter", "bfloat16", "cpu", adapter_dtype)
        lora = {p.dtype for name, p in model.named_parameters() if "lora_" in name}
        base = {p.dtype for name, p in model.named_parameters() if "lora_" not in name}
        assert base == {torch.bfloat16}
        assert lora == {torch.float32 if adapter_dtype == "float32" else torch.bfloat16}
        with torch.inference_mode():
            m_s = model(input_ids=ids).logits.float()
            with model.disable_adapter():
                m0 = model(input_ids=ids).logits.float()
        outputs[adapter_dtype] = (m_s, m0)
    (ms32, m0_32), (ms16, m0_16) = outputs["float32"], outputs["model"]
    assert torch.equal(m0_32, m0_16)  # M0 is the base weights whichever the adapter's dtype
    assert not torch.allclose(ms16, m0_16, atol=1e-2)  # the bfloat16 adapter still acts
    assert torch.allclose(ms16, ms32, atol=0.1, rtol=0.05)  # and acts as the float32 one


def test_auto_dtype_is_bfloat16_on_gpu_and_float32_on_cpu_never_float16():
    """The authors ran Qwen2.5 in fp16, which overflows; `auto` never picks it."""
    import torch

    from polneurons.models import pick_dtype

    assert pick_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32


def test_a_model_record_is_read_once_checked_and_refused_in_one_line(tmp_path):
    import json

    from polneurons.errors import DataError, ModelError
    from polneurons.models import RECORD_KEYS, read_record

    record = {key: f"value of {key}" for key in RECORD_KEYS}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(record))
    assert read_record(path) == record
    path.write_text(json.dumps({"path": "/x"}))
    with pytest.raises(ModelError) as error:
        read_record(path)
    assert "model_type" in str(error.value) and "\n" not in str(error.value)
    path.write_text("{")
    with pytest.raises(DataError):
        read_record(path)


def test_the_output_projection_gets_a_contiguous_input_and_the_same_logits(tmp_path):
    """A strided slice (logits_to_keep) into the head is slow on CPU in bfloat16; the loaded
    model hands it a contiguous copy, with the logits it would have computed anyway."""
    from polneurons.models import load_base

    record = prepare_model(
        {"path": str(build_tiny_checkpoint(tmp_path / "model"))}, tmp_path / "prepared"
    )
    model, _ = load_base(record, "bfloat16", "cpu")
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(
        lambda _module, args: seen.append(args[0].is_contiguous())
    )
    ids = torch.arange(3, 19).reshape(2, 8)
    with torch.inference_mode():
        kept = model(input_ids=ids, logits_to_keep=3).logits
        full = model(input_ids=ids).logits
    assert seen == [True, True]
    assert torch.equal(kept, full[:, -3:])
