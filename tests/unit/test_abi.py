"""The committed ABI package abi/ matches the compiled contracts (and the deployments files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ballast import __version__
from ballast.abi_export import ABI_DIR, CONTRACTS, diff, export, main


def test_abi_package_matches_compiled_contracts() -> None:
    problems = diff()
    assert not problems, "abi/ is stale, run `python -m ballast.abi_export`:\n" + "\n".join(problems)
    assert main(["--check"]) == 0


def test_abi_package_contents() -> None:
    pkg = json.loads((ABI_DIR / "package.json").read_text())
    assert pkg["name"] == "@ballast/abi" and pkg["version"] == __version__
    engine = json.loads((ABI_DIR / "MarginEngine.json").read_text())
    names = {e.get("name") for e in engine if e["type"] == "event"}
    # The events the risk page reads are emitted through EventsLib and must be in the engine's ABI.
    assert {"Liquidated", "PositionModified", "BadDebt"} <= names
    for c in CONTRACTS:
        assert isinstance(json.loads((ABI_DIR / f"{c}.json").read_text()), list)


def test_check_detects_stale_missing_and_extra_files(tmp_path: Path) -> None:
    out, deps = tmp_path / "abi", tmp_path / "deployments"
    deps.mkdir()
    export(out, deps, build=False)
    assert diff(out, deps, build=False) == []
    abi = json.loads((out / "MarginEngine.json").read_text())
    (out / "MarginEngine.json").write_text(json.dumps(abi[1:], indent=2) + "\n")
    (out / "MockUSD.json").unlink()
    (out / "Old.json").write_text("[]\n")
    (deps / "11155111.json").write_text(json.dumps({"schema": 1, "chainId": 11155111}))
    problems = diff(out, deps, build=False)
    assert set(problems) == {"stale    abi/MarginEngine.json", "missing  abi/MockUSD.json", "extra    abi/Old.json",
                             "missing  abi/deployments/11155111.json", "stale    abi/package.json"}
    assert main(["--check", "--out", str(out), "--deployments", str(deps)]) == 1
    export(out, deps, build=False)
    assert diff(out, deps, build=False) == []
    assert json.loads((out / "package.json").read_text())["ballast"]["deployments"] == [11155111]
    shutil.rmtree(out)
