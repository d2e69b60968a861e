// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "../utils/Test.sol";
import {KeyMarket} from "../../src/KeyMarket.sol";

/// @notice Drives KeyMarket with bounded, mostly-valid trades by a fixed set of actors over a
/// fixed set of subjects, and keeps ghost totals for the invariants.
contract Handler is Test {
    KeyMarket public immutable market;
    address[] public actors;
    address[] public subjects;

    // Ghosts.
    uint256 public ghostBuys;
    uint256 public ghostSells;
    uint256 public ghostWithdrawn;
    uint256 public ghostRoundTripProfit; // must stay 0: a round trip never returns more than paid

    constructor(KeyMarket market_, address[] memory actors_, address[] memory subjects_) {
        market = market_;
        actors = actors_;
        subjects = subjects_;
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function subjectCount() external view returns (uint256) {
        return subjects.length;
    }

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % actors.length];
    }

    function _subject(uint256 seed) internal view returns (address) {
        return subjects[seed % subjects.length];
    }

    /// @notice A subject opens its market on a chosen curve.
    function open(uint256 subjectSeed, uint8 curve, uint256 amount) external {
        address s = _subject(subjectSeed);
        if (market.sharesSupply(s) != 0) return;
        amount = bound(amount, 1, 3);
        curve = uint8(bound(curve, 0, 1));
        uint256 cost = market.getPriceOnCurve(curve, 0, amount) * 11 / 10;
        vm.deal(s, s.balance + cost);
        vm.prank(s);
        market.buyFirstShares{value: cost}(curve, amount);
        ghostBuys++;
    }

    function buy(uint256 actorSeed, uint256 subjectSeed, uint256 amount, uint256 extra, uint256 referrerSeed) external {
        address s = _subject(subjectSeed);
        if (market.sharesSupply(s) == 0) return;
        address a = _actor(actorSeed);
        amount = bound(amount, 0, 8);
        uint256 cost = market.getBuyPriceAfterFee(s, amount);
        extra = bound(extra, 0, 1 ether);
        vm.deal(a, a.balance + cost + extra);
        address referrer = referrerSeed % 3 == 0 ? address(0) : _actor(referrerSeed / 3);
        vm.prank(a);
        if (referrer == a || referrer == address(0)) {
            market.buyShares{value: cost + extra}(s, amount);
        } else {
            market.buySharesBounded{value: cost + extra}(s, amount, cost, referrer, block.timestamp);
        }
        ghostBuys++;
    }

    function sell(uint256 actorSeed, uint256 subjectSeed, uint256 amount) external {
        address s = _subject(subjectSeed);
        address a = _actor(actorSeed);
        uint256 supply = market.sharesSupply(s);
        uint256 held = market.sharesBalance(s, a);
        if (supply <= 1 || held == 0) return;
        amount = bound(amount, 1, held < supply - 1 ? held : supply - 1);
        vm.prank(a);
        market.sellShares(s, amount);
        ghostSells++;
    }

    /// @notice Buys keys and sells them straight back; records any profit (there must be none).
    function roundTrip(uint256 actorSeed, uint256 subjectSeed, uint256 amount) external {
        address s = _subject(subjectSeed);
        if (market.sharesSupply(s) == 0) return;
        address a = _actor(actorSeed);
        amount = bound(amount, 1, 10);
        uint256 cost = market.getBuyPriceAfterFee(s, amount);
        vm.deal(a, a.balance + cost);
        uint256 before = a.balance;
        vm.prank(a);
        market.buyShares{value: cost}(s, amount);
        vm.prank(a);
        market.sellShares(s, amount);
        if (a.balance > before) ghostRoundTripProfit += a.balance - before;
    }

    function withdraw(uint256 seed) external {
        address a = seed % 2 == 0 ? _actor(seed / 2) : _subject(seed / 2);
        uint256 owed = market.withdrawable(a);
        if (owed == 0) return;
        vm.prank(a);
        market.withdraw();
        ghostWithdrawn += owed;
    }
}
