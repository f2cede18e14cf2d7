"""fairseq.cpu_memory: glibc malloc tuning used by fairseq-train (speed is measured by benchmarks, not here)."""
import ctypes
import ctypes.util
import sys

import pytest

from fairseq import cpu_memory


def test_opt_out_and_non_linux(monkeypatch):
    monkeypatch.setenv("FAIRSEQ_NO_MALLOPT", "1")
    assert cpu_memory.keep_freed_memory() is False
    monkeypatch.delenv("FAIRSEQ_NO_MALLOPT")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cpu_memory.keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_applies_the_three_settings_on_glibc(monkeypatch):
    calls = []

    class FakeLibc:
        def __init__(self, *a):
            self.mallopt = self

        def __call__(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", FakeLibc)
    monkeypatch.delenv("FAIRSEQ_NO_MALLOPT", raising=False)
    assert cpu_memory.keep_freed_memory() is True
    assert calls == [(-3, 32 * 1024 * 1024), (-1, 2**31 - 1), (-2, 64 * 1024 * 1024)]
    monkeypatch.undo()
    if ctypes.util.find_library("c"):  # and the real glibc accepts those values
        assert cpu_memory.keep_freed_memory() is True
