"""Issue 13's done-when: the example front-end client (examples/frontend, Node + viem, written from
docs/integrators.md and @ballast/abi alone) runs against the embedded chain: it sizes an order with
MarginLens.maxOrderSize, previews and commits it, settles it at the next price round as the keeper
would, reads its liquidation price, decodes reverts with the package alone, and reconciles a
liquidation's collateral change from events alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ballast.chain import Anvil, Chain, build_contracts
from ballast.deployments import UnlockedSigner, deploy_and_record
from ballast.toolchain import ROOT

EXAMPLE = ROOT / "examples" / "frontend"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_example_client_runs_against_the_embedded_chain(tmp_path: Path) -> None:
    if not (EXAMPLE / "node_modules" / "viem").is_dir():
        pytest.fail("examples/frontend/node_modules is missing: run `make install` (npm ci from its lock file)")
    build_contracts()
    with Anvil() as node:
        chain = Chain(node.url)
        assert len(chain.accounts()) >= 3, "the example needs the embedded Anvil's dev accounts"
        res = deploy_and_record(node.url, UnlockedSigner(chain.accounts()[0]), directory=tmp_path, log=lambda _: None)
        env = dict(os.environ, BALLAST_RPC_URL=node.url, BALLAST_DEPLOYMENT=str(res.path))
        proc = subprocess.run(["node", "client.mjs"], cwd=EXAMPLE, env=env, capture_output=True, text=True,
                              timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] and all(c["ok"] for c in summary["checks"])
    assert summary["decoded"] == ["ERC20InsufficientAllowance", "MarketNotListed", "AccountHealthy"]
    assert summary["collateralChange"] == summary["fromEvents"] and int(summary["collateralChange"]) < 0
    assert 0 < int(summary["size"]) < int(summary["maxSize"])
