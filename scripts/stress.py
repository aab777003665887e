"""Brownie script over `ballast stress` (the lab starts its own Anvil; brownie's network is not used):
`brownie run stress` with arguments in BALLAST_STRESS_ARGS (e.g. "--accounts 100 --out out/s")."""

import os
import shlex

from ballast.cli import main as ballast_main


def main() -> None:
    ballast_main(["stress", *shlex.split(os.environ.get("BALLAST_STRESS_ARGS", ""))])
