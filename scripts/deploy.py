"""Deploy Ballast from brownie: ``brownie run scripts/deploy.py --network <id> [force] [no-seed]``.

A thin wrapper over the same library as ``ballast deploy`` (``ballast.deployments``): brownie
supplies the RPC (its network list, ``brownie networks list``) and the deployer:

* a development network (brownie's Anvil): brownie's unlocked ``accounts[0]``;
* a live network: the brownie account id in ``BALLAST_ACCOUNT`` (``brownie accounts new ID``),
  unlocked with ``BALLAST_ACCOUNT_PASSWORD`` or a prompt, or else ``BALLAST_DEPLOYER_KEY``.

Deploys MockUSD, the controller, the engine (EngineConfig from the ``[engine]`` table of the
config, order settings included), the price feeds, the risk report's ``ReportFeed`` views and the
keeper's ``RiskPusher`` (a transmitter of every price feed and a reporter of the controller). Writes ``deployments/<chainId>.json`` (``out/deployments/`` for a development network), refuses
to redeploy over a recorded deployment unless ``force`` is given, and verifies the result.
Optional environment: ``BALLAST_CONFIG`` (market TOML), ``BALLAST_KIND`` (dynamic, static_calm,
static_conservative).
"""

import os
from pathlib import Path

from brownie import accounts, network, web3
from brownie._config import CONFIG

from ballast.config import DEFAULT_CONFIG
from ballast.deployments import (
    DEPLOYMENTS_DIR,
    LOCAL_CHAIN_IDS,
    LOCAL_DEPLOYMENTS_DIR,
    UnlockedSigner,
    deploy_and_record,
    key_signer,
    load_brownie_account,
    print_checks,
)


def main(*flags):
    unknown = set(flags) - {"force", "no-seed"}
    if unknown:
        raise SystemExit(f"unknown flag(s) {sorted(unknown)}: allowed force, no-seed")
    url = getattr(web3.provider, "endpoint_uri", None)
    if not url or not str(url).startswith("http"):
        raise SystemExit("brownie is not connected over HTTP(S): pass --network <id> of an HTTP network")
    development = CONFIG.network_type == "development"
    if development:
        signer = UnlockedSigner(accounts[0].address)
    elif os.environ.get("BALLAST_ACCOUNT"):
        signer = load_brownie_account(os.environ["BALLAST_ACCOUNT"])
    elif os.environ.get("BALLAST_DEPLOYER_KEY"):
        signer = key_signer(os.environ["BALLAST_DEPLOYER_KEY"])
    else:
        raise SystemExit("set BALLAST_ACCOUNT (a brownie account id) or BALLAST_DEPLOYER_KEY for a live network")
    chain_id = int(web3.eth.chain_id)
    directory = LOCAL_DEPLOYMENTS_DIR if development or chain_id in LOCAL_CHAIN_IDS else DEPLOYMENTS_DIR
    res = deploy_and_record(
        str(url), signer,
        config_path=Path(os.environ.get("BALLAST_CONFIG") or DEFAULT_CONFIG),
        kind=os.environ.get("BALLAST_KIND", "dynamic"),
        seed_liquidity="no-seed" not in flags,
        directory=directory,
        force="force" in flags or development,
        archive=not development,
        network=network.show_active(),
    )
    if not print_checks(res.checks):
        raise SystemExit(1)
    return res.record
