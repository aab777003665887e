"""Brownie fixtures: the whole system deployed on brownie's Anvil (network `development`)."""

import pytest
from brownie import (
    LeverageController,
    MarginEngine,
    MockAggregator,
    MockUSD,
    accounts,
    network,
)

from ballast.config import FEED_KINDS, load_config
from ballast.deploy import feed_config_tuples


@pytest.fixture(scope="session", autouse=True)
def fees():
    # Anvil needs EIP-1559 fees; without this deploys fail with "max fee per gas less than block base fee".
    network.priority_fee("auto")


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def system(cfg):
    admin = accounts[0]
    m = cfg.markets[0]
    usd = MockUSD.deploy({"from": admin})
    controller = LeverageController.deploy(admin, cfg.engine.param_delay_sec, {"from": admin})
    engine = MarginEngine.deploy(admin, usd, controller, cfg.engine.engine_config_tuple(), {"from": admin})
    controller.bindEngine(engine, {"from": admin})
    feeds = {k: MockAggregator.deploy(m.feed_decimals, f"{m.symbol} {k}", m.feed_answer(k, m.initial[k]), {"from": admin})
             for k in FEED_KINDS}

    class _F:  # feed_config_tuples wants `.address`
        def __init__(self, c):
            self.address = c.address

    controller.listMarket(m.id, feed_config_tuples(m, {k: _F(v) for k, v in feeds.items()}), m.params.as_tuple(),
                          {"from": admin})
    controller.poke(m.id, {"from": admin})
    controller.sealBootstrap({"from": admin})
    return {"admin": admin, "usd": usd, "controller": controller, "engine": engine, "feeds": feeds, "market": m}
