"""kxl.determinism: the three levels set exactly the flags their docstring promises."""

from __future__ import annotations

import os

import pytest
import torch
from torch_state import torch_state

from kxl.determinism import deterministic_torch


def test_strict_fixes_threads_kernels_and_the_cublas_workspace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # so that monkeypatch restores it after
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    with torch_state():
        deterministic_torch(1)
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.benchmark is False
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_warn_leaves_threads_and_only_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # so that monkeypatch restores it after
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    with torch_state():
        torch.set_num_threads(2)
        deterministic_torch(None, "warn")
        assert torch.get_num_threads() == 2
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_default_sets_only_the_thread_count() -> None:
    with torch_state():
        torch.use_deterministic_algorithms(False)
        deterministic_torch(1, "default")
        assert torch.get_num_threads() == 1
        assert not torch.are_deterministic_algorithms_enabled()
