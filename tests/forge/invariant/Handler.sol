// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Test} from "forge-std/Test.sol";
import {Vm} from "forge-std/Vm.sol";
import {LeverageController} from "../../../contracts/LeverageController.sol";
import {MarginEngine} from "../../../contracts/MarginEngine.sol";
import {EventsLib} from "../../../contracts/libraries/EventsLib.sol";
import {MockAggregator} from "../../../contracts/mocks/MockAggregator.sol";
import {MockUSD} from "../../../contracts/mocks/MockUSD.sol";
import {Health, Order} from "../../../interfaces/IMarginEngine.sol";

/// @notice Drives the engine with several actors over two markets. Never reverts: inputs are
/// bounded, actions that cannot apply are skipped, engine calls are wrapped in try/catch.
/// Ghost variables record what the invariants check.
contract Handler is Test {
    MarginEngine public immutable engine;
    LeverageController public immutable controller;
    MockUSD public immutable usd;
    address public immutable admin;

    uint256[] public markets;
    mapping(uint256 marketId => MockAggregator[5]) internal _feeds;
    address[] public actors;
    address public immutable keeper = makeAddr("keeper");

    // ---------------------------------------------------------------- ghosts
    /// @notice Sum of BadDebt event amounts (and their split) seen by the handler.
    uint256 public ghostBadDebt;
    uint256 public ghostBadDebtCovered;
    uint256 public ghostBadDebtSocialized;
    /// @notice Opens (increases) that succeeded, and those that left equity below the initial
    /// requirement or the account liquidatable (must stay 0).
    uint256 public opens;
    uint256 public openViolations;
    /// @notice Liquidations that succeeded, those that succeeded on an account the view called
    /// healthy (must stay 0) and those that reverted on an account the view called liquidatable.
    uint256 public liquidations;
    uint256 public healthyLiquidations;
    uint256 public stuckLiquidations;
    bytes public lastStuckReason;
    uint256 public badDebtEvents;
    /// @notice Orders committed, settled, cancelled after expiry; and order-rule violations (a
    /// settlement at a round other than the first eligible one, a cancellation before expiry or
    /// a refund that is not the escrowed fee, a keeper not paid the fee): must stay 0.
    uint256 public commits;
    uint256 public settlements;
    uint256 public cancellations;
    uint256 public orderViolations;
    mapping(bytes32 action => uint256) public calls;

    constructor(
        MarginEngine engine_,
        LeverageController controller_,
        MockUSD usd_,
        address admin_,
        uint256[] memory markets_,
        MockAggregator[5][] memory feeds_,
        address[] memory actors_
    ) {
        engine = engine_;
        controller = controller_;
        usd = usd_;
        admin = admin_;
        markets = markets_;
        for (uint256 i; i < markets_.length; ++i) {
            _feeds[markets_[i]] = feeds_[i];
        }
        actors = actors_;
        for (uint256 i; i < actors_.length; ++i) {
            vm.prank(actors_[i]);
            usd_.approve(address(engine_), type(uint256).max);
        }
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function marketCount() external view returns (uint256) {
        return markets.length;
    }

    // ---------------------------------------------------------------- helpers

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % actors.length];
    }

    function _market(uint256 seed) internal view returns (uint256) {
        return markets[seed % markets.length];
    }

    function _answer(uint256 m, uint256 k) internal view returns (int256 a) {
        (, a,,,) = _feeds[m][k].latestRoundData();
    }

    function _push(uint256 m, uint256 k, int256 answer) internal {
        vm.prank(admin);
        _feeds[m][k].transmit(answer);
    }

    function _startLogs() internal {
        vm.recordLogs();
    }

    /// @dev Adds every BadDebt event of the engine recorded since `_startLogs` to the ghosts.
    function _collectBadDebt() internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].emitter != address(engine) || logs[i].topics[0] != EventsLib.BadDebt.selector) continue;
            (uint256 amount, uint256 covered, uint256 socialized) = abi.decode(logs[i].data, (uint256, uint256, uint256));
            ghostBadDebt += amount;
            ghostBadDebtCovered += covered;
            ghostBadDebtSocialized += socialized;
            ++badDebtEvents;
        }
    }

    function _abs(int256 x) internal pure returns (uint256) {
        return x < 0 ? uint256(-x) : uint256(x);
    }

    // ---------------------------------------------------------------- collateral

    function deposit(uint256 actorSeed, uint256 amount) external {
        address a = _actor(actorSeed);
        amount = bound(amount, 100e6, 100_000e6);
        usd.mint(a, amount);
        vm.prank(a);
        try engine.deposit(amount) {
            ++calls["deposit"];
        } catch {}
    }

    function withdraw(uint256 actorSeed, uint256 amount) external {
        address a = _actor(actorSeed);
        int256 c = engine.collateralOf(a);
        if (c <= 0) return;
        amount = bound(amount, 1, uint256(c));
        vm.prank(a);
        try engine.withdraw(amount) {
            ++calls["withdraw"];
        } catch {}
    }

    // ---------------------------------------------------------------- orders

    /// @dev Commits an open or an increase on a side: a notional of 1% to 115% of the actor's free
    /// margin (equity above the initial requirement) times the market's live max leverage. Near
    /// and above the cap the settlement refuses: that is part of what is checked.
    function trade(uint256 actorSeed, uint256 marketSeed, uint256 fractionSeed, bool isLong) external {
        address a = _actor(actorSeed);
        uint256 m = _market(marketSeed);
        int256 free;
        uint256 maxLev;
        try engine.health(a) returns (Health memory h) {
            free = h.equityUsdWad - int256(h.initialUsdWad);
        } catch {
            return;
        }
        try controller.maxLeverageWad(m, isLong) returns (uint256 l) {
            maxLev = l;
        } catch {
            return;
        }
        if (free <= 1e18) return;
        // modulo rather than bound(): the fuzzer favours edge values, which bound() maps to the cap
        uint256 lev = maxLev * (0.01e18 + fractionSeed % 1.14e18) / 1e18;
        uint256 price = uint256(_answer(m, 0)) * 1e10;
        int256 delta = int256(uint256(free) * lev / price);
        if (!isLong) delta = -delta;
        _commit(a, m, delta);
    }

    /// @dev Commits a reduction (or a flip, for fractions above 1) by a fraction in (0, 2].
    function reduce(uint256 actorSeed, uint256 marketSeed, uint256 fractionSeed) external {
        address a = _actor(actorSeed);
        uint256 m = _market(marketSeed);
        int256 size = engine.position(a, m).sizeWad;
        if (size == 0) return;
        uint256 f = 0.01e18 + fractionSeed % 1.99e18;
        int256 delta = -size * int256(f) / 1e18;
        _commit(a, m, delta);
    }

    function _commit(address a, uint256 m, int256 delta) internal {
        if (delta == 0) return;
        vm.prank(a);
        try engine.commitOrder(m, delta, 0) {
            ++commits;
            ++calls["commit"];
        } catch {}
    }

    function close(uint256 actorSeed, uint256 marketSeed) external {
        address a = _actor(actorSeed);
        uint256 m = _market(marketSeed);
        if (engine.position(a, m).sizeWad == 0) return;
        vm.prank(a);
        try engine.commitClose(m, 0) {
            ++commits;
            ++calls["commitClose"];
        } catch {}
    }

    /// @dev Settles a pending order (the first from a random actor): waits for its settleFrom if
    /// needed, publishes a price round at or after it, tries a later round first (must revert when
    /// an earlier round is eligible), then settles at the first eligible round.
    function settle(uint256 actorSeed, uint256 marketSeed) external {
        uint256 m = _market(marketSeed);
        address a;
        Order memory o;
        for (uint256 i; i < actors.length; ++i) {
            address cand = _actor(actorSeed % actors.length + i);
            o = engine.order(cand, m);
            if (o.commitSec != 0) {
                a = cand;
                break;
            }
        }
        if (a == address(0)) return;
        uint256 from = uint256(o.commitSec) + engine.orderMinDelaySec();
        uint256 expiry = from + engine.orderWindowSec();
        if (block.timestamp > expiry) return; // only a cancellation now
        if (block.timestamp < from) vm.warp(from);
        (uint80 r, uint80 latest, uint256 rAt) = _firstEligibleRound(m, from);
        if (rAt > expiry) return;
        if (r < latest) {
            try engine.settleOrder(a, m, latest) {
                ++orderViolations; // a later round than the first eligible one settled
            } catch {}
        }
        _settleAt(a, m, r, o);
    }

    /// @dev Publishes a price round at or after `from` if none exists; returns the first round
    /// published at or after `from`, the latest round and the first one's time.
    function _firstEligibleRound(uint256 m, uint256 from) internal returns (uint80 r, uint80 latest, uint256 rAt) {
        MockAggregator pf = _feeds[m][0];
        uint256 latestAt;
        (latest,,, latestAt,) = pf.latestRoundData();
        if (latestAt < from) {
            _push(m, 0, _answer(m, 0));
            latest += 1;
        }
        r = latest;
        while (r > 1) {
            (,,, uint256 t,) = pf.getRoundData(r - 1);
            if (t < from) break;
            --r;
        }
        (,,, rAt,) = pf.getRoundData(r);
    }

    function _settleAt(address a, uint256 m, uint80 r, Order memory o) internal {
        int256 oldSize = engine.position(a, m).sizeWad;
        int256 newSize = o.closeAll ? int256(0) : oldSize + o.sizeDeltaWad;
        bool increasing = _abs(newSize) > _abs(oldSize) || (oldSize != 0 && newSize != 0 && (newSize > 0) != (oldSize > 0));
        int256 k0 = engine.collateralOf(keeper);
        _startLogs();
        vm.prank(keeper);
        try engine.settleOrder(a, m, r) {
            ++settlements;
            ++calls["settle"];
            _collectBadDebt();
            if (engine.collateralOf(keeper) != k0 + int256(uint256(o.feeTokens))) ++orderViolations;
            if (engine.order(a, m).commitSec != 0) ++orderViolations;
            if (increasing) _checkAfterOpen(a);
        } catch {
            vm.getRecordedLogs();
        }
    }

    /// @dev Cancels a pending order: before its expiry this must revert; after it, it must succeed
    /// and refund exactly the escrowed fee. Time jumps past the expiry half of the time (feeds are
    /// re-published, as keepers would).
    function expire(uint256 actorSeed, uint256 marketSeed, bool jump) external {
        address a = _actor(actorSeed);
        uint256 m = _market(marketSeed);
        Order memory o = engine.order(a, m);
        if (o.commitSec == 0) return;
        uint256 expiry = uint256(o.commitSec) + engine.orderMinDelaySec() + engine.orderWindowSec();
        if (block.timestamp <= expiry) {
            try engine.cancelExpiredOrder(a, m) {
                ++orderViolations;
            } catch {}
            if (!jump) return;
            vm.warp(expiry + 1);
            _refreshAll();
        }
        int256 c0 = engine.collateralOf(a);
        try engine.cancelExpiredOrder(a, m) {
            ++cancellations;
            ++calls["cancel"];
            if (engine.collateralOf(a) != c0 + int256(uint256(o.feeTokens))) ++orderViolations;
        } catch {
            ++orderViolations;
        }
    }

    function _checkAfterOpen(address a) internal {
        ++opens;
        try engine.health(a) returns (Health memory h) {
            if (h.equityUsdWad < int256(h.initialUsdWad)) ++openViolations;
        } catch {
            ++openViolations;
        }
        try engine.isLiquidatable(a) returns (bool liq) {
            if (liq) ++openViolations;
        } catch {
            ++openViolations;
        }
    }

    /// @notice Sum of the escrowed fees of every pending order of every actor and market.
    function pendingFees() external view returns (uint256 sum) {
        for (uint256 i; i < actors.length; ++i) {
            for (uint256 j; j < markets.length; ++j) {
                sum += engine.order(actors[i], markets[j]).feeTokens;
            }
        }
    }

    // ---------------------------------------------------------------- liquidation

    /// @dev Liquidates the first liquidatable actor from a random start (or, when none is, a
    /// random actor with a position: that must revert).
    function liquidate(uint256 actorSeed, uint256 marketSeed, uint256 callerSeed) external {
        address a = _actor(actorSeed);
        for (uint256 i; i < actors.length; ++i) {
            address cand = _actor(actorSeed % actors.length + i);
            try engine.isLiquidatable(cand) returns (bool l) {
                if (l) {
                    a = cand;
                    break;
                }
            } catch {}
        }
        uint256 m = _market(marketSeed);
        if (engine.position(a, m).sizeWad == 0) {
            m = _market(marketSeed % markets.length + 1);
            if (engine.position(a, m).sizeWad == 0) return;
        }
        bool liquidatable;
        try engine.isLiquidatable(a) returns (bool l) {
            liquidatable = l;
        } catch {
            return;
        }
        // A liquidatable account is flagged, and liquidated at the first price published after
        // the flag's delay, in the market the engine then prefers.
        if (liquidatable) {
            try engine.flagLiquidation(a) {} catch {}
            vm.warp(block.timestamp + engine.orderMinDelaySec());
            for (uint256 i; i < markets.length; ++i) {
                _push(markets[i], 0, _answer(markets[i], 0));
            }
            try engine.isLiquidatable(a) returns (bool l) {
                liquidatable = l;
            } catch {
                return;
            }
            if (liquidatable) m = engine.liquidationMarket(a);
        }
        address caller = callerSeed % 3 == 0 ? _actor(callerSeed / 3) : keeper;
        _startLogs();
        vm.prank(caller);
        try engine.liquidate(a, m) {
            _collectBadDebt();
            ++liquidations;
            if (!liquidatable) ++healthyLiquidations;
        } catch (bytes memory reason) {
            vm.getRecordedLogs();
            if (liquidatable) {
                ++stuckLiquidations;
                lastStuckReason = reason;
            }
        }
    }

    // ---------------------------------------------------------------- market moves

    /// @dev A small move: up to 3% either way.
    function movePrice(uint256 marketSeed, int256 bps) external {
        _movePrice(_market(marketSeed), bound(bps, -300, 300));
    }

    /// @dev A gap: up to 15% either way (liquidations, bad debt).
    function jumpPrice(uint256 marketSeed, int256 bps) external {
        _movePrice(_market(marketSeed), bound(bps, -1_500, 1_500));
    }

    function _movePrice(uint256 m, int256 bps) internal {
        int256 p = _answer(m, 0) * (10_000 + bps) / 10_000;
        int256 lo = m == 0 ? int256(5_000e8) : int256(300e8);
        int256 hi = m == 0 ? int256(500_000e8) : int256(30_000e8);
        if (p < lo) p = lo;
        if (p > hi) p = hi;
        _push(m, 0, p);
        ++calls["price"];
    }

    function moveVol(uint256 marketSeed, uint256 vol) external {
        _push(_market(marketSeed), 1, int256(bound(vol, 0.05e8, 3e8)));
        ++calls["vol"];
    }

    function moveFunding(uint256 marketSeed, int256 rate) external {
        _push(_market(marketSeed), 2, bound(rate, -0.002e8, 0.002e8));
        ++calls["funding"];
    }

    function moveDepth(uint256 marketSeed, uint256 depthUsd) external {
        _push(_market(marketSeed), 3, int256(bound(depthUsd, 1_000_000, 1_000_000_000) * 1e8));
        ++calls["depth"];
    }

    function moveSkew(uint256 marketSeed, int256 skew) external {
        _push(_market(marketSeed), 4, bound(skew, -0.3e8, 0.3e8));
        ++calls["skew"];
    }

    /// @dev Time passes; keepers re-transmit every feed so that nothing goes stale.
    function warp(uint256 dt) external {
        dt = bound(dt, 1, 3 hours);
        vm.warp(block.timestamp + dt);
        _refreshAll();
        ++calls["warp"];
    }

    function _refreshAll() internal {
        for (uint256 i; i < markets.length; ++i) {
            for (uint256 k; k < 5; ++k) {
                _push(markets[i], k, _answer(markets[i], k));
            }
        }
    }

    /// @dev A keeper accrues a market's funding (as RiskPusher does with every push).
    function accrue(uint256 marketSeed) external {
        try engine.accrueFunding(_market(marketSeed)) {
            ++calls["accrue"];
        } catch {}
    }

    function poke(uint256 marketSeed) external {
        try controller.poke(_market(marketSeed)) {
            ++calls["poke"];
        } catch {}
    }
}
