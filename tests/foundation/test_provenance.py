from __future__ import annotations

import json
from pathlib import Path

import pytest

from kxl.cli import main
from kxl.hashing import sha256_file
from kxl.provenance import record, record_path, verify


@pytest.fixture()
def made(tmp_path: Path) -> tuple[Path, Path]:
    inp = tmp_path / "in.txt"
    out = tmp_path / "stage" / "out.txt"
    inp.write_text("input")
    out.parent.mkdir()
    out.write_text("output")
    record("demo", [out], [inp], {"k": 1})
    return inp, out


def test_record_has_hashes_config_and_versions(made: tuple[Path, Path]) -> None:
    inp, out = made
    rec = json.loads(record_path(out).read_text())
    assert rec["sha256"] == sha256_file(out)
    assert rec["inputs"] == {str(inp): sha256_file(inp)}
    assert rec["config"] == {"k": 1}
    assert rec["stage"] == "demo"
    assert rec["kxl_version"]
    assert "polars" in rec["packages"] and rec["packages"]["polars"]
    assert rec["environment"]["machine"]


def test_record_names_the_kernels_when_torch_made_it(tmp_path: Path) -> None:
    """What exact bytes may depend on (issue 21): AVX2 and AVX512 kernels sum in other orders."""
    import torch

    out = tmp_path / "out.bin"
    out.write_bytes(b"x")
    record("demo", [out], [])
    env = json.loads(record_path(out).read_text())["environment"]
    assert env["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["torch_threads"] == torch.get_num_threads()


def test_verify_clean_then_reports_changed_output_and_input(made: tuple[Path, Path]) -> None:
    inp, out = made
    root = out.parent.parent
    n, findings = verify(root)
    assert n == 1 and findings == []
    out.write_text("tampered")
    inp.write_text("new input")
    _, findings = verify(root)
    problems = sorted(f.problem.split(" (")[0] for f in findings)
    assert problems == ["bytes changed", f"input {inp} changed since it was made"]


def test_verify_cli_exit_codes(made: tuple[Path, Path], capsys: pytest.CaptureFixture) -> None:
    inp, out = made
    root = str(out.parent.parent)
    assert main(["verify", root]) == 0
    out.unlink()
    assert main(["verify", root]) == 1
    assert "artifact missing" in capsys.readouterr().err


def test_verify_json_and_exit_zero(made: tuple[Path, Path], tmp_path: Path) -> None:
    """The run report reads `kxl verify --json`; --exit-zero keeps rule verify from failing."""
    _, out = made
    root, result = str(out.parent.parent), tmp_path / "verify.json"
    out.unlink()
    assert main(["verify", root, "--json", str(result), "--exit-zero"]) == 0
    assert json.loads(result.read_text()) == {
        "root": root, "checked": 1, "passed": False,
        "problems": [{"artifact": str(out), "problem": "artifact missing"}]}


def test_directory_hash_ignores_snakemake_timestamp_and_uses_blob_names(tmp_path: Path) -> None:
    from kxl.provenance import sha256_tree

    d = tmp_path / "dir"
    d.mkdir()
    (d / "a.txt").write_text("a")
    before = sha256_tree(d)
    (d / ".snakemake_timestamp").write_text("")
    assert sha256_tree(d) == before
    blob = tmp_path / ("ab" * 32)
    blob.write_text("big shard")
    (d / "link.tar").symlink_to(blob)
    with_link = sha256_tree(d)
    blob.write_text("changed content, same content-addressed name")
    assert sha256_tree(d) == with_link
    (d / "a.txt").write_text("b")
    assert sha256_tree(d) != with_link


def test_verify_of_a_missing_or_empty_root_fails(tmp_path: Path, capsys) -> None:
    """Issue 21: `kxl verify result` (a typo) said '0 artifact record(s) ... 0 problem(s)'."""
    assert main(["verify", str(tmp_path / "result")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"kxl verify: error: {tmp_path / 'result'}: no such folder (nothing to verify)"
    assert main(["verify", str(tmp_path)]) == 1
    assert "no provenance records" in capsys.readouterr().err


def test_verify_checks_folders_with_their_own_manifest(tmp_path: Path) -> None:
    """Training checkpoints list each file's sha256 and size in manifest.json."""
    import json

    ck = tmp_path / "train/checkpoints/step-00000002"
    ck.mkdir(parents=True)
    (ck / "a.bin").write_bytes(b"abc")
    (ck / "manifest.json").write_text(json.dumps(
        {"step": 2, "files": {"a.bin": {"sha256": sha256_file(ck / "a.bin"), "size": 3}}}))
    n, findings = verify(tmp_path)
    assert n == 1 and [f.problem for f in findings] == ["no provenance records (not a results "
                                                        "folder?)"]
    (ck / "a.bin").write_bytes(b"abd")
    problems = [f.problem for f in verify(tmp_path)[1]]
    assert any(p.startswith("bytes changed (manifest ") for p in problems), problems
    (ck / "a.bin").write_bytes(b"ab")
    assert "size 2, its manifest says 3" in [f.problem for f in verify(tmp_path)[1]]


def test_verify_of_covers_the_lineage_and_nothing_else(tmp_path: Path) -> None:
    """a -> b -> c, and d beside them: `of c` re-hashes c, b and a (the chain c was made from),
    never d (what another job may be writing meanwhile); a name without a record is a finding."""
    root = tmp_path / "results"
    paths = {n: root / n / f"{n}.txt" for n in "abcd"}
    for n, p in paths.items():
        p.parent.mkdir(parents=True)
        p.write_text(n)
    record("s", [paths["a"]], [])
    record("s", [paths["b"]], [paths["a"]])
    record("s", [paths["c"]], [paths["b"]])
    record("s", [paths["d"]], [paths["a"]])
    n, findings = verify(root, of=[str(paths["c"])])
    assert (n, findings) == (3, [])
    assert verify(root)[0] == 4
    paths["d"].write_text("being written")  # outside the lineage: not looked at
    assert verify(root, of=[str(paths["c"])]) == (3, [])
    paths["a"].write_text("changed")  # in it: found through b's record and a's own
    assert sorted(f.artifact for f in verify(root, of=[str(paths["c"])])[1]) == \
        [str(paths["a"]), str(paths["b"])]
    n, findings = verify(root, of=[str(tmp_path / "nope.txt")])
    assert [f.problem for f in findings] == ["no provenance record",
                                            "no provenance records (not a results folder?)"]
