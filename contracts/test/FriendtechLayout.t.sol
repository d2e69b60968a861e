// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {KeyMarketFixture} from "./utils/KeyMarketFixture.sol";
import {FriendtechLayout} from "./fixtures/FriendtechLayout.sol";

/// @notice The friend.tech-layout market behaves as friend.tech does (its formula, its kept
/// excess, its pushed fees), so tools tested against it are tested against friend.tech's ABI.
contract FriendtechLayoutTest is KeyMarketFixture {
    FriendtechLayout internal ft;
    address internal dest;

    function setUp() public override {
        super.setUp();
        dest = makeFunded("ft-destination", 0);
        ft = new FriendtechLayout(dest, 5e16, 5e16);
    }

    function testFuzz_getPrice_equalsReference(uint256 supply, uint256 amount) public view {
        supply = bound(supply, 0, 20_000);
        amount = bound(amount, 0, 300);
        vm.assertEq(ft.getPrice(supply, amount), _referencePrice(supply, amount, 16000), "friend.tech formula");
    }

    /// @notice Same trades, same Trade figures as KeyMarket's standard curve with the same fees.
    function test_buyAndSell_matchKeyMarketAndKeepTheExcess() public {
        address subject = makeFunded("ft-subject", 10 ether);
        address buyer = makeFunded("ft-buyer", 10 ether);
        vm.prank(subject);
        ft.buyShares(subject, 1);
        vm.prank(subject);
        market.buyShares(subject, 1);

        uint256 cost = ft.getBuyPriceAfterFee(subject, 5);
        vm.assertEq(cost, market.getBuyPriceAfterFee(subject, 5), "same cost as KeyMarket");
        vm.prank(buyer);
        ft.buyShares{value: cost + 1 ether}(subject, 5);
        vm.assertEq(buyer.balance, 10 ether - cost - 1 ether, "the excess is kept, as on friend.tech");
        vm.assertEq(ft.sharesBalance(subject, buyer), 5, "keys");
        vm.assertEq(dest.balance, ft.getPrice(1, 5) * 5e16 / 1 ether, "protocol fee pushed at once");

        uint256 proceeds = ft.getSellPriceAfterFee(subject, 2);
        vm.prank(buyer);
        ft.sellShares(subject, 2);
        vm.assertEq(buyer.balance, 10 ether - cost - 1 ether + proceeds, "proceeds pushed");
        vm.assertEq(ft.sharesSupply(subject), 4, "supply");
    }

    function test_friendtechRules() public {
        address subject = makeFunded("ft-subject", 1 ether);
        address other = makeFunded("ft-other", 1 ether);
        vm.prank(other);
        vm.expectRevert(bytes("Only the shares' subject can buy the first share"));
        ft.buyShares(subject, 1);
        vm.prank(subject);
        ft.buyShares(subject, 1);
        vm.prank(subject);
        vm.expectRevert(bytes("Cannot sell the last share"));
        ft.sellShares(subject, 1);
        vm.prank(other);
        vm.expectRevert(bytes("Insufficient payment"));
        ft.buyShares{value: 1}(subject, 1);
    }
}
