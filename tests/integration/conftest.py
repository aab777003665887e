"""Integration fixtures: a local Anvil started by the tests themselves, and compiled contracts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ballast.chain import Anvil, Chain, build_contracts


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    build_contracts()
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
def chain(anvil: Anvil) -> Chain:
    return Chain(anvil.url)
