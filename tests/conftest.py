"""Shared test fixtures.

The real-fairseq fixtures and corpora live outside the repository in ../shared (next to the clone);
set FAIRSEQ_SCTD_SHARED to point elsewhere. Tests that need them skip with a clear reason when absent.
"""
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FAIRSEQ_SCTD_SHARED", REPO.parent / "shared"))
PEER = SHARED / "fixtures" / "fairseq-peer"

torch.set_num_threads(min(2, os.cpu_count() or 1))


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (the benchmarks are scripts, not a package): the one way tests
    reach a benchmark's functions. Loaded once per session, under its own name, with benchmarks/ on
    sys.path as when the script runs (a benchmark imports its siblings, e.g. bench_vs_hf)."""
    bench_dir = str(REPO / "benchmarks")
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set FAIRSEQ_SCTD_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def peer_dir() -> Path:
    if not PEER.is_dir():
        pytest.skip(f"fairseq-peer fixtures not found at {PEER} (set FAIRSEQ_SCTD_SHARED)")
    return PEER


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread and lose a lot when the 2 cores are busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
