"""train.run (how the rule launches torchrun): both configs parse, bad launch shapes are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kxl.config import from_dict
from kxl.errors import KxlError
from kxl.train.config import RunResources, TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["config.yaml", "epsilon.yaml"])
def test_config_train_sections_parse(name: str) -> None:
    section = yaml.safe_load((ROOT / "config" / name).read_text())["train"]
    cfg = from_dict(TrainConfig, section, "train")
    assert cfg.run.launcher == "standalone" and cfg.run.nodes == 1


@pytest.mark.parametrize(
    ("run", "match"),
    [
        ({"nodes": 2}, "nodes 2 needs launcher: multinode"),
        ({"launcher": "multinode", "nodes": 0}, "nodes 0 must be >= 1"),
        ({"launcher": "multinode", "nodes": 4, "gpu": 6}, "gpu 6 is not a multiple of nodes 4"),
        ({"launcher": "srun"}, "not one of"),
    ],
)
def test_bad_launch_shape_is_named(run: dict, match: str) -> None:
    with pytest.raises(KxlError, match=match):
        from_dict(RunResources, run, "train.run")


def test_multinode_shape_accepted() -> None:
    run = from_dict(RunResources, {"launcher": "multinode", "nodes": 2, "gpu": 8}, "train.run")
    assert run.gpu // run.nodes == 4


def test_cpu_multinode_is_nodes_times_nproc_without_a_gpu() -> None:
    run = from_dict(RunResources, {"launcher": "multinode", "nodes": 2, "nproc": 1}, "train.run")
    assert (run.gpu, run.nodes, run.nproc) == (0, 2, 1)


def test_vae_scale_defaults_to_the_vae_config_and_must_agree() -> None:
    import pytest

    from kxl.errors import KxlError
    from kxl.train.trainer import resolve_vae_scale

    assert resolve_vae_scale(None, 0.4321) == 0.4321
    assert resolve_vae_scale(0.13025, 0.13025) == 0.13025
    with pytest.raises(KxlError, match=r"train.vae_scale=0.13025 disagrees .* 0.4321"):
        resolve_vae_scale(0.13025, 0.4321)
