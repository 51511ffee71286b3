"""Shared test settings: small thread pools so the suite behaves on 2-core machines."""

import os

import pytest
import torch
from evaluation_helpers import torch_threads

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a whole module (its module-scoped fixtures included), restored after
    it: small tensors run fastest on one thread, above all on a busy 2-core machine. Modules opt
    in with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    with torch_threads(1):
        yield


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def extractions(monkeypatch):
    """The ``desc`` of every feature extraction the test makes, in order (they still run)."""
    from seedzoo.evaluation import features as features_module

    calls = []
    extract = features_module.extract_features

    def counted(*args, **kwargs):
        calls.append(kwargs.get("desc"))
        return extract(*args, **kwargs)

    monkeypatch.setattr(features_module, "extract_features", counted)
    return calls
