// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "../utils/Test.sol";
import {KeyMarket} from "../../src/KeyMarket.sol";
import {Handler, Toggler} from "./Handler.sol";

/// @notice Invariants of KeyMarket under random trading by many traders over many subjects, with
/// flushes, fee changes (scheduled and applied) and referred buys with varied referrers.
contract KeyMarketInvariantTest is Test {
    KeyMarket internal market;
    Handler internal handler;
    Toggler internal destination;
    address[] internal actors;
    address[] internal subjects;
    address[] internal outsiders;

    function setUp() public {
        for (uint256 i = 0; i < 5; i++) {
            actors.push(vm.addr(1000 + i));
        }
        // A trader that refuses ETH: its refunds and proceeds become deferred credits, and it
        // withdraws them to another address.
        Toggler refusingTrader = new Toggler();
        refusingTrader.setRefuse(true);
        actors.push(address(refusingTrader));
        for (uint256 i = 0; i < 4; i++) {
            subjects.push(vm.addr(2000 + i));
        }
        for (uint256 i = 0; i < 2; i++) {
            outsiders.push(vm.addr(3000 + i));
        }
        // The destination refuses ETH when the handler says so, so failed flushes are exercised.
        destination = new Toggler();
        address owner = vm.addr(4000);
        market = new KeyMarket(owner, address(destination), 0.05 ether, 0.05 ether, 2_500);
        handler = new Handler(market, owner, destination, actors, subjects, outsiders);
        destination.setRefuse(false);
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @notice The contract's ETH equals the curve reserve of all outstanding keys (Σ over
    /// subjects of the price of their supply) plus the accrued protocol fees plus every
    /// withdrawable balance (credits and pending subject fees), to the wei.
    function invariant_balanceEqualsReservePlusAccruedPlusWithdrawable() public view {
        uint256 owed;
        uint256 reserve;
        for (uint256 i = 0; i < subjects.length; i++) {
            address s = subjects[i];
            reserve += market.getPriceOnCurve(market.subjectCurve(s), 0, market.sharesSupply(s));
            owed += market.withdrawable(s);
        }
        for (uint256 i = 0; i < actors.length; i++) {
            owed += market.withdrawable(actors[i]);
        }
        for (uint256 i = 0; i < outsiders.length; i++) {
            owed += market.withdrawable(outsiders[i]);
        }
        owed += market.withdrawable(address(destination));
        vm.assertEq(
            address(market).balance,
            reserve + market.accruedProtocolFees() + owed,
            "balance == reserve + accrued protocol fees + withdrawable"
        );
    }

    /// @notice Every protocol fee charged is either credited to a referrer, accrued, or flushed.
    function invariant_protocolFeesAccountedFor() public view {
        vm.assertEq(
            market.accruedProtocolFees() + handler.ghostFlushed() + handler.ghostReferralFees(),
            handler.ghostProtocolFees(),
            "accrued + flushed + referrals == protocol fees"
        );
        vm.assertEq(address(destination).balance, handler.ghostFlushed(), "the destination got every flush");
    }

    /// @notice Each subject's supply equals the sum of its holders' balances.
    function invariant_supplyEqualsSumOfBalances() public view {
        for (uint256 i = 0; i < subjects.length; i++) {
            address s = subjects[i];
            uint256 sum = market.sharesBalance(s, s);
            for (uint256 j = 0; j < actors.length; j++) {
                sum += market.sharesBalance(s, actors[j]);
            }
            vm.assertEq(market.sharesSupply(s), sum, "supply == sum of balances");
        }
    }

    /// @notice Fees stay within the cap; a pending increase is always above the fee in force.
    function invariant_feesCappedAndIncreasesPending() public view {
        vm.assertLe(market.protocolFeePercent(), 0.1 ether, "protocol fee cap");
        vm.assertLe(market.subjectFeePercent(), 0.1 ether, "subject fee cap");
        // A scheduled increase is above the fee in force until its time, and is the fee in force
        // from then on (applied or not).
        (uint256 pp, uint256 pAt) = market.pendingProtocolFeeIncrease();
        if (pAt > block.timestamp) vm.assertGt(pp, market.protocolFeePercent(), "pending protocol is an increase");
        if (pAt != 0 && pAt <= block.timestamp) vm.assertEq(pp, market.protocolFeePercent(), "due protocol in force");
        (uint256 sp, uint256 sAt) = market.pendingSubjectFeeIncrease();
        if (sAt > block.timestamp) vm.assertGt(sp, market.subjectFeePercent(), "pending subject is an increase");
        if (sAt != 0 && sAt <= block.timestamp) vm.assertEq(sp, market.subjectFeePercent(), "due subject in force");
    }

    /// @notice No trader is bound to itself or to the market as referrer.
    function invariant_referrersNeverSelfOrMarket() public view {
        for (uint256 i = 0; i < actors.length; i++) {
            address r = market.referrerOf(actors[i]);
            vm.assertTrue(r != actors[i] && r != address(market), "valid bound referrer");
        }
    }

    /// @notice The handler's per-call checks (referrals, flushes, fee scheduling, invalid
    /// referrers refused) all held.
    function invariant_handlerChecksHeld() public view {
        vm.assertEq(handler.ghostViolations(), 0, "no violation");
    }

    /// @notice A buy followed by a sell of the same keys never returns more than was paid.
    function invariant_roundTripNeverProfits() public view {
        vm.assertEq(handler.ghostRoundTripProfit(), 0, "no round-trip profit");
    }
}
