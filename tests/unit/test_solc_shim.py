"""Tests for the solc shim (bin/solc, a node script over solcjs) and its installer for py-solc-x.

Each shim call loads solcjs (~1-2 s), so the compiler runs are started together, once per module,
and the tests read their results."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ballast.errors import BallastError
from ballast.toolchain import ROOT, SOLC_VERSION, install_solc_shim, solc_shim

pytestmark = pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "node_modules" / "solc").is_dir(),
                                reason="needs node and node_modules/solc (npm ci)")

SPDX = "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.20;\n"
TINY = SPDX + "contract Tiny { uint256 public x; function set(uint256 v) external { x = v; } }\n"
WITH_IMPORT = SPDX + (
    'import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";\n'
    "contract Reader { function supply(IERC20 t) external view returns (uint256) { return t.totalSupply(); } }\n"
)
BROKEN = SPDX + "contract Broken { function f( external {} }\n"


def standard_json(**sources: str) -> str:
    return json.dumps({
        "language": "Solidity",
        "sources": {f"{name}.sol": {"content": src} for name, src in sources.items()},
        # ABI everywhere, bytecode for Tiny only, no optimizer: the shim's job is I/O, not codegen
        # (bytecode plus optimizer for every contract triples solcjs's time).
        "settings": {"outputSelection": {"*": {"*": ["abi"]}, "Tiny.sol": {"Tiny": ["abi", "evm.bytecode.object"]}}},
    })


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, Run]]:
    """Start every shim invocation at once (cwd = the repository, as forge and brownie run it)."""
    jobs: dict[str, tuple[list[str], str | None]] = {
        "version": (["--version"], None),
        "compile": (["--standard-json"], standard_json(Tiny=TINY, Reader=WITH_IMPORT)),
        "broken": (["--standard-json"], standard_json(Broken=BROKEN)),
    }
    procs = {k: (subprocess.Popen([str(solc_shim()), *args], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True), stdin)
             for k, (args, stdin) in jobs.items()}
    out = {}
    for k, (p, stdin) in procs.items():
        so, se = p.communicate(stdin, timeout=120)
        out[k] = Run(p.returncode, so, se)
    yield out


def _json_only(stdout: str) -> dict[str, Any]:
    """stdout is exactly one JSON document (no banner, no warnings, nothing after it)."""
    doc = json.loads(stdout)
    assert isinstance(doc, dict)
    assert stdout.lstrip().startswith("{") and stdout.rstrip().endswith("}")
    return doc


def test_version(runs: dict[str, Run]) -> None:
    r = runs["version"]
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith(f"Version: {SOLC_VERSION}") for line in lines), r.stdout
    assert r.stderr == ""


def test_standard_json_round_trip(runs: dict[str, Run]) -> None:
    r = runs["compile"]
    assert r.returncode == 0, r.stderr
    doc = _json_only(r.stdout)
    assert not [e for e in doc.get("errors", []) if e["severity"] == "error"]
    c = doc["contracts"]["Tiny.sol"]["Tiny"]
    assert {e["name"] for e in c["abi"] if e["type"] == "function"} == {"x", "set"}
    assert len(c["evm"]["bytecode"]["object"]) > 100


def test_import_resolves_from_node_modules(runs: dict[str, Run]) -> None:
    r = runs["compile"]
    assert r.returncode == 0, r.stderr
    doc = _json_only(r.stdout)
    assert "@openzeppelin/contracts/token/ERC20/IERC20.sol" in doc["sources"]
    reader = doc["contracts"]["Reader.sol"]["Reader"]
    assert [e["name"] for e in reader["abi"]] == ["supply"]
    ierc20 = doc["contracts"]["@openzeppelin/contracts/token/ERC20/IERC20.sol"]["IERC20"]
    assert "transfer" in {e.get("name") for e in ierc20["abi"]}


def test_syntax_error(runs: dict[str, Run]) -> None:
    r = runs["broken"]
    assert r.returncode != 0
    assert "ParserError" in r.stderr and "Broken.sol" in r.stderr
    doc = _json_only(r.stdout)  # the JSON with the errors is still on stdout, alone
    errors = [e for e in doc["errors"] if e["severity"] == "error"]
    assert errors and errors[0]["type"] == "ParserError"
    assert "contracts" not in doc or not doc["contracts"]


# --------------------------------------------------------------------------- install_solc_shim


def test_install_solc_shim_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import solcx

    folder = tmp_path / "solcx"
    monkeypatch.setenv("SOLCX_BINARY_PATH", str(folder))  # py-solc-x's own override of ~/.solcx
    assert Path(solcx.get_solcx_install_folder()) == folder
    folder.mkdir()
    stale = folder / f"solc-v{SOLC_VERSION}"
    stale.write_text("#!/bin/sh\necho old\n")  # a wrapper from another checkout, not executable
    stale.chmod(0o644)
    first = install_solc_shim()
    assert first == stale
    content, mtime = first.read_text(), first.stat().st_mtime_ns
    assert str(solc_shim()) in content and content.startswith("#!/bin/sh")
    assert first.stat().st_mode & stat.S_IXUSR
    second = install_solc_shim()
    assert second == first and second.read_text() == content
    assert second.stat().st_mtime_ns == mtime  # not rewritten
    assert sorted(os.listdir(folder)) == [f"solc-v{SOLC_VERSION}"]
    assert str(SOLC_VERSION) in {str(v) for v in solcx.get_installed_solc_versions()}


def test_install_solc_shim_refuses_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    (other / f"solc-v{SOLC_VERSION}").mkdir(parents=True)
    monkeypatch.setenv("SOLCX_BINARY_PATH", str(other))
    with pytest.raises(BallastError, match="is a directory"):
        install_solc_shim()
