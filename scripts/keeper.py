"""Brownie script over `ballast keeper`: `brownie run keeper --network <net>` with the keeper's
arguments in BALLAST_KEEPER_ARGS (e.g. "--deployment deployments/31337.json --rounds 10").

Each round is one RiskPusher.push transaction (the answers due, then the market's poke and funding
accrual): the deployments file must record the pusher (`pusher`), and the sender needs its KEEPER_ROLE.
Signing is local, as for `ballast deploy`: `--account ID` (brownie's store or a keystore file;
BALLAST_KEEPER_ACCOUNT, password in BALLAST_ACCOUNT_PASSWORD) or a hex key in BALLAST_KEEPER_KEY;
`--unlocked` (or a local dev chain) uses the node's account. Gas: --base-fee-multiplier,
--priority-fee-gwei, --max-fee-gwei; operator endpoint: --metrics-port (/metrics, /health)."""

import os
import shlex

from brownie import network

from ballast.keeper import keeper_cli


def main() -> None:
    network.priority_fee("auto")
    args = shlex.split(os.environ.get("BALLAST_KEEPER_ARGS", ""))
    if "--rpc-url" not in args:
        args = ["--rpc-url", network.web3.provider.endpoint_uri, *args]
    keeper_cli(args)
