import sys
from pathlib import Path

import pytest
import torch

from polneurons.testing import tiny_model, tiny_tokenizer

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# the workflow runs' helpers live with them (tests/workflow/); a few unit tests reuse them
sys.path.insert(0, str(REPO / "tests" / "workflow"))
MIRROR = REPO.parent / "shared" / "political_stance_data"


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def llama():
    return tiny_model("llama")


@pytest.fixture(scope="session")
def mirror():
    if not MIRROR.exists():
        pytest.skip(f"data mirror not found at {MIRROR}")
    return MIRROR
