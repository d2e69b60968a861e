// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "./Test.sol";
import {KeyMarket} from "../../src/KeyMarket.sol";

/// @notice A deployed KeyMarket with friend.tech's mainnet fees (5% + 5%), a 20% referral share
/// of the protocol fee, and funded actors.
abstract contract KeyMarketFixture is Test {
    KeyMarket internal market;
    address internal owner;
    address internal feeDestination;
    address internal subject;
    address internal alice;
    address internal bob;
    address internal carol;

    uint256 internal constant PROTOCOL_FEE = 0.05 ether;
    uint256 internal constant SUBJECT_FEE = 0.05 ether;
    uint256 internal constant REFERRAL_BPS = 2_000;

    function setUp() public virtual {
        owner = makeFunded("owner", 0);
        feeDestination = makeFunded("feeDestination", 0);
        subject = makeFunded("subject", 1_000 ether);
        alice = makeFunded("alice", 1_000 ether);
        bob = makeFunded("bob", 1_000 ether);
        carol = makeFunded("carol", 1_000 ether);
        market = new KeyMarket(owner, feeDestination, PROTOCOL_FEE, SUBJECT_FEE, REFERRAL_BPS);
    }

    function _buy(address who, address s, uint256 amount) internal returns (uint256 cost) {
        cost = market.getBuyPriceAfterFee(s, amount);
        vm.prank(who);
        market.buyShares{value: cost}(s, amount);
    }

    function _sell(address who, address s, uint256 amount) internal returns (uint256 proceeds) {
        proceeds = market.getSellPriceAfterFee(s, amount);
        vm.prank(who);
        market.sellShares(s, amount);
    }

    /// @dev A bounded buy naming `referrer`, paying exactly the cost.
    function _referredBuy(address who, address s, uint256 amount, address referrer) internal returns (uint256 cost) {
        cost = market.getBuyPriceAfterFee(s, amount);
        vm.prank(who);
        market.buySharesBounded{value: cost}(s, amount, cost, referrer, block.timestamp);
    }

    /// @dev The subject buys its first key, so others can trade.
    function _open(address s) internal {
        vm.prank(s);
        market.buyShares(s, 1);
    }

    /// @dev Σ_{i=supply}^{supply+amount-1} i² × 1 ether / divisor, summed term by term: an
    /// independent reference for the contract's closed form.
    function _referencePrice(uint256 supply, uint256 amount, uint256 divisor) internal pure returns (uint256) {
        uint256 sum;
        for (uint256 i = supply; i < supply + amount; i++) {
            sum += i * i;
        }
        return sum * 1 ether / divisor;
    }
}
