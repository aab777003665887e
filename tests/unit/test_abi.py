"""The committed ABI package abi/ matches the compiled contracts (and the deployments files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from web3 import Web3

from ballast.abi_export import ABI_DIR, CONTRACTS, changelog_version, diff, export, main, ts_type
from ballast.errors import BallastError


def test_abi_package_matches_compiled_contracts() -> None:
    problems = diff()
    assert not problems, "abi/ is stale, run `python -m ballast.abi_export`:\n" + "\n".join(problems)
    assert main(["--check"]) == 0


def test_abi_package_contents() -> None:
    pkg = json.loads((ABI_DIR / "package.json").read_text())
    assert pkg["name"] == "@ballast/abi" and pkg["version"] == changelog_version()
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
    # The deployment also changes the index module (it embeds the deployments) and the README.
    assert set(problems) == {"stale    abi/MarginEngine.json", "missing  abi/MockUSD.json", "extra    abi/Old.json",
                             "missing  abi/deployments/11155111.json", "stale    abi/package.json",
                             "stale    abi/dist/index.js", "stale    abi/README.md"}
    assert main(["--check", "--out", str(out), "--deployments", str(deps)]) == 1
    export(out, deps, build=False)
    assert diff(out, deps, build=False) == []
    assert json.loads((out / "package.json").read_text())["ballast"]["deployments"] == [11155111]
    shutil.rmtree(out)


def _selector(frag: dict[str, object]) -> str:
    types = ",".join(str(i["type"]) for i in frag["inputs"])  # type: ignore[index, union-attr]
    return "0x" + bytes(Web3.keccak(text=f"{frag['name']}({types})")[:4]).hex()


def test_every_error_a_call_can_hit_is_in_the_published_abis() -> None:
    """Issue 13 item 3: a controller error bubbling through the engine and an OpenZeppelin token
    error decode with the engine's ABI alone; interfaces carry events and errors."""
    wanted = {"0xe5204ba1": "MarketNotListed", "0xfb8f41b2": "ERC20InsufficientAllowance"}
    for name in ("MarginEngine", "IMarginEngine", "MarginLens", "ILeverageController", "LeverageController"):
        abi = json.loads((ABI_DIR / f"{name}.json").read_text())
        sels = {_selector(f): f["name"] for f in abi if f["type"] == "error"}
        for sel, err in wanted.items():
            assert sels.get(sel) == err, (name, err)
        for err in ("SafeERC20FailedOperation", "ReentrancyGuardReentrantCall", "RoundNotAvailable", "FeedReverting",
                    "RiskFeedInvalid", "PriceTooOld", "MulWadFailed", "AccessControlUnauthorizedAccount"):
            assert err in sels.values(), (name, err)
        assert len(sels) == len(set(sels)), "one fragment per selector"
    for name, event in (("IMarginEngine", "LiquidationSettled"), ("ILeverageController", "MaintenanceLoosened")):
        abi = json.loads((ABI_DIR / f"{name}.json").read_text())
        assert event in {f.get("name") for f in abi if f["type"] == "event"}


def test_typed_modules_and_exports() -> None:
    pkg = json.loads((ABI_DIR / "package.json").read_text())
    assert pkg["exports"]["."]["default"] == "./dist/index.js"
    assert pkg["exports"]["./deployments/*.json"] == "./deployments/*.json"
    for name in CONTRACTS:
        assert (ABI_DIR / "dist" / f"{name}.js").is_file() and (ABI_DIR / "dist" / f"{name}.d.ts").is_file()
    dts = (ABI_DIR / "dist" / "MarginLens.d.ts").read_text()
    assert 'readonly "name": "previewOrder";' in dts
    assert ts_type([{"a": [1, True, "x"]}]) == 'readonly [\n  {\n    readonly "a": readonly [\n      1,\n      true,\n      "x"\n    ];\n  }\n]'


def test_version_bump_rule(tmp_path: Path) -> None:
    out, deps = tmp_path / "abi", tmp_path / "deployments"
    deps.mkdir()
    out.mkdir()
    shutil.copy(ABI_DIR / "CHANGELOG.md", out / "CHANGELOG.md")
    export(out, deps, build=False)
    pkg = json.loads((out / "package.json").read_text())
    pkg["ballast"]["abiSha256"] = "0x" + "00" * 32  # as if the committed ABIs were different
    (out / "package.json").write_text(json.dumps(pkg))
    with pytest.raises(BallastError, match="CHANGELOG.md still names"):
        export(out, deps, build=False)
    log = (out / "CHANGELOG.md").read_text().replace("\n## ", "\n## 99.0.0\n\n- test\n\n## ", 1)
    (out / "CHANGELOG.md").write_text(log)
    export(out, deps, build=False)
    assert json.loads((out / "package.json").read_text())["version"] == "99.0.0"
