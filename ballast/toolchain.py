"""Locate the project's native tools (from npm packages) and install the solc shim for py-solc-x.

The npm ``@foundry-rs/<tool>`` packages carry native binaries in
``node_modules/@foundry-rs/<tool>-<platform>/bin/<tool>``; the ``.bin`` wrappers exit 0 even when
tests fail, so everything here calls the native binaries.
"""

from __future__ import annotations

import argparse
import platform
import stat
import subprocess
from pathlib import Path

from ballast.errors import BallastError

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the package is used from a checkout)."""

SOLC_VERSION = "0.8.28"
"""The solcjs version pinned in package.json."""


def _platform_tag() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    system = platform.system().lower()
    return f"{system}-{arch}"


def native_binary(tool: str, root: Path = ROOT) -> Path:
    """Path of a Foundry tool's native binary (``forge``, ``anvil``, ``cast``).

    Raises
    ------
    BallastError
        If the npm package is not installed (run ``npm ci``).
    """
    if tool not in ("forge", "anvil", "cast"):
        raise BallastError(f"tool={tool!r} is invalid: allowed forge, anvil, cast")
    path = root / "node_modules" / "@foundry-rs" / f"{tool}-{_platform_tag()}" / "bin" / tool
    if not path.is_file():
        raise BallastError(f"{tool} binary not found at {path}: run `npm ci` (or `make install`)")
    return path


def solc_shim(root: Path = ROOT) -> Path:
    """Path of the repository's solc shim over solcjs."""
    return root / "bin" / "solc"


def install_solc_shim(root: Path = ROOT) -> Path:
    """Install the shim where py-solc-x (and so brownie) looks for ``solc-v<version>``.

    Idempotent: rewrites a small wrapper that executes this checkout's ``bin/solc``.
    """
    import solcx  # local import: only needed here

    folder = Path(solcx.get_solcx_install_folder())
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"solc-v{SOLC_VERSION}"
    script = f'#!/bin/sh\nexec node "{solc_shim(root)}" "$@"\n'
    if target.is_dir():
        raise BallastError(f"{target} is a directory: remove it to install the shim")
    if not target.exists() or target.read_text() != script:
        target.write_text(script)
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    out = subprocess.run([str(target), "--version"], capture_output=True, text=True, check=True).stdout
    if f"Version: {SOLC_VERSION}" not in out:
        raise BallastError(f"solc shim at {target} reports {out.strip()!r}, expected {SOLC_VERSION}")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m ballast.toolchain {install-solc,which TOOL}``."""
    parser = argparse.ArgumentParser(prog="python -m ballast.toolchain")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install-solc", help="install the solc shim for py-solc-x / brownie")
    w = sub.add_parser("which", help="print the path of a native Foundry binary")
    w.add_argument("tool", choices=["forge", "anvil", "cast"])
    args = parser.parse_args(argv)
    if args.cmd == "install-solc":
        print(install_solc_shim())
    else:
        print(native_binary(args.tool))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = ["ROOT", "SOLC_VERSION", "install_solc_shim", "native_binary", "solc_shim"]
