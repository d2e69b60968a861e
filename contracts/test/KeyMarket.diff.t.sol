// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {KeyMarketFixture} from "./utils/KeyMarketFixture.sol";
import {KeyMarket} from "../src/KeyMarket.sol";
import {FriendtechSharesV1} from "./reference/FriendtechSharesV1.sol";

/// @notice Differential tests: KeyMarket's prices and fees equal an independent term-by-term
/// computation of friend.tech's formula, and friend.tech's own contract, for fuzzed inputs.
contract KeyMarketDifferentialTest is KeyMarketFixture {
    FriendtechSharesV1 internal ft;

    function setUp() public override {
        super.setUp();
        ft = new FriendtechSharesV1();
    }

    function testFuzz_getPrice_equalsReference(uint256 supply, uint256 amount) public view {
        supply = bound(supply, 0, 20_000);
        amount = bound(amount, 0, 300);
        uint256 ours = market.getPrice(supply, amount);
        vm.assertEq(ours, _referencePrice(supply, amount, 16000), "standard curve vs reference");
        vm.assertEq(market.getPriceOnCurve(1, supply, amount), _referencePrice(supply, amount, 1600), "steep");
        // friend.tech's `supply - 1 + amount` underflows at supply 0 unless amount is 1 (the
        // first key); everywhere else the two agree to the wei.
        if (supply != 0 || amount == 1) vm.assertEq(ours, ft.getPrice(supply, amount), "vs friend.tech");
    }

    function testFuzz_getPrice_equalsFriendtechAtLargeSupply(uint256 supply, uint256 amount) public view {
        supply = bound(supply, 1, type(uint32).max);
        amount = bound(amount, 0, type(uint32).max);
        vm.assertEq(market.getPrice(supply, amount), ft.getPrice(supply, amount), "closed forms agree");
    }

    /// @notice The same trades on both markets, with the same fuzzed fee settings, pay the same
    /// price and fees and leave the same supplies and balances.
    function testFuzz_tradesMatchFriendtech(uint256 protocolPct, uint256 subjectPct, uint256 seed) public {
        protocolPct = bound(protocolPct, 0, 1e11) * 1e6;
        subjectPct = bound(subjectPct, 0, 1e11) * 1e6;
        KeyMarket ours = new KeyMarket(owner, feeDestination, protocolPct, subjectPct, 0);
        ft.setFeeDestination(feeDestination);
        ft.setProtocolFeePercent(protocolPct);
        ft.setSubjectFeePercent(subjectPct);

        vm.prank(subject);
        ours.buyShares(subject, 1);
        vm.prank(subject);
        ft.buyShares(subject, 1);
        address[2] memory traders = [alice, bob];
        for (uint256 i = 0; i < 12; i++) {
            seed = uint256(keccak256(abi.encode(seed, i)));
            address t = traders[seed % 2];
            uint256 amount = (seed >> 8) % 6;
            bool isBuy = (seed >> 16) % 3 != 0;
            if (isBuy) {
                uint256 cost = ft.getBuyPriceAfterFee(subject, amount);
                vm.assertEq(ours.getBuyPriceAfterFee(subject, amount), cost, "buy cost");
                vm.assertEq(ours.getBuyPrice(subject, amount), ft.getBuyPrice(subject, amount), "buy price");
                vm.prank(t);
                ours.buyShares{value: cost}(subject, amount);
                vm.prank(t);
                ft.buyShares{value: cost}(subject, amount);
            } else {
                uint256 held = ft.sharesBalance(subject, t);
                if (amount > held) amount = held;
                if (amount >= ft.sharesSupply(subject)) continue;
                vm.assertEq(
                    ours.getSellPriceAfterFee(subject, amount), ft.getSellPriceAfterFee(subject, amount), "sell"
                );
                uint256 before = t.balance;
                vm.prank(t);
                ours.sellShares(subject, amount);
                uint256 oursPaid = t.balance - before;
                before = t.balance;
                vm.prank(t);
                ft.sellShares(subject, amount);
                vm.assertEq(oursPaid, t.balance - before, "proceeds");
            }
            vm.assertEq(ours.sharesSupply(subject), ft.sharesSupply(subject), "supply");
            vm.assertEq(ours.sharesBalance(subject, t), ft.sharesBalance(subject, t), "balance");
        }
    }

    /// @notice A buy followed by selling the same keys never returns more than was paid.
    function testFuzz_sellAfterBuy_neverProfits(uint256 preSupply, uint256 amount, bool steep) public {
        preSupply = bound(preSupply, 0, 200);
        amount = bound(amount, 0, 100);
        vm.deal(alice, 1e9 ether);
        vm.deal(bob, 1e9 ether);
        vm.prank(subject);
        market.buyFirstShares(steep ? 1 : 0, 1);
        if (preSupply > 0) _buy(bob, subject, preSupply);
        uint256 before = alice.balance;
        _buy(alice, subject, amount);
        _sell(alice, subject, amount);
        vm.assertLe(alice.balance, before, "no profit from a round trip");
    }
}
