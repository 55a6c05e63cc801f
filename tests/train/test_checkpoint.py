"""Checkpoint codec and manager: atomic save, verification, fallback, retention."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl.errors import KxlError
from kxl.train.checkpoint import CheckpointManager, decode_state, encode_state

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)
trees = st.recursive(
    scalars,
    lambda c: (
        st.lists(c, max_size=3)
        | st.tuples(c, c)
        | st.dictionaries(st.integers(0, 9) | st.text(min_size=1, max_size=4), c, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(trees)
def test_codec_roundtrips_python_state(tree) -> None:
    tensors: dict = {}
    import json

    node = json.loads(json.dumps(encode_state(tree, tensors)))
    assert decode_state(node, tensors) == tree


def test_codec_roundtrips_tensors_and_int_keys() -> None:
    import json

    s1 = torch.arange(4, dtype=torch.uint8)
    state = {
        "state": {0: {"step": torch.tensor(3.0), "state1": s1}},
        "param_groups": [{"betas": (0.9, 0.95), "params": [0, 1]}],
    }
    tensors: dict = {}
    back = decode_state(json.loads(json.dumps(encode_state(state, tensors))), tensors)
    assert back["param_groups"][0]["betas"] == (0.9, 0.95)
    assert torch.equal(back["state"][0]["state1"], state["state"][0]["state1"])


def _save(m: CheckpointManager, step: int) -> None:
    lokr = {"a.lokr_w1": torch.full((2, 2), float(step))}
    m.save(step, lokr, {"data": {"next_step": step}}, {"s": step})


def test_save_load_and_layout(tmp_path) -> None:
    m = CheckpointManager(tmp_path, keep_last=3, keep_steps=[])
    _save(m, 4)
    path = m.path(4)
    assert sorted(p.name for p in path.iterdir()) == [
        "lokr.safetensors",
        "manifest.json",
        "state.json",
        "state.safetensors",
    ]
    lokr, state, meta = m.load(path)
    assert state == {"data": {"next_step": 4}} and meta == {"s": 4}
    assert torch.equal(lokr["a.lokr_w1"], torch.full((2, 2), 4.0))


def test_corrupt_checkpoint_named_and_skipped(tmp_path) -> None:
    m = CheckpointManager(tmp_path, keep_last=5, keep_steps=[])
    _save(m, 1)
    _save(m, 2)
    f = m.path(2) / "state.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(KxlError, match=r"step-00000002/state.safetensors: sha256 mismatch"):
        m.verify(m.path(2))
    warnings: list[str] = []
    ck = m.latest_valid(warn=warnings.append)
    assert ck is not None and ck.step == 1
    assert "step-00000002/state.safetensors" in warnings[0]


def test_truncated_checkpoint_named(tmp_path) -> None:
    m = CheckpointManager(tmp_path, keep_last=5, keep_steps=[])
    _save(m, 3)
    f = m.path(3) / "lokr.safetensors"
    f.write_bytes(f.read_bytes()[:10])
    with pytest.raises(KxlError, match=r"lokr.safetensors: truncated"):
        m.verify(m.path(3))
    (m.path(3) / "manifest.json").unlink()
    with pytest.raises(KxlError, match="manifest"):
        m.verify(m.path(3))
    assert m.latest_valid(warn=lambda s: None) is None


def test_retention_keeps_last_and_listed(tmp_path) -> None:
    m = CheckpointManager(tmp_path, keep_last=2, keep_steps=[2])
    for s in range(1, 6):
        _save(m, s)
    assert [c.step for c in m.list()] == [2, 4, 5]
