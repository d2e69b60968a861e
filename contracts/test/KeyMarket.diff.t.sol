// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {KeyMarketFixture} from "./utils/KeyMarketFixture.sol";
import {IKeyMarket} from "../src/interfaces/IKeyMarket.sol";
import {KeyMarket} from "../src/KeyMarket.sol";

/// @notice Differential tests: KeyMarket's prices and fees equal friend.tech's formula computed
/// independently in the test, for fuzzed inputs. friend.tech's formula:
///   price(s, n) = Σ_{i=s}^{s+n-1} i² · 1 ether / 16000 (the steep curve divides by 1600),
///   fee = price · percent / 1 ether, both rounded down once.
/// The contract uses a difference of prefix sums; the tests sum term by term (`_referencePrice`)
/// or, where a loop would be too long, expand Σ (s + j)² (`_expandedPrice`).
contract KeyMarketDifferentialTest is KeyMarketFixture {
    /// @dev Σ_{j=0}^{n-1} (s + j)² = n·s² + s·n(n-1) + (n-1)n(2n-1)/6, then × 1 ether / divisor.
    /// For s, n < 2^32 every term fits easily in 256 bits.
    function _expandedPrice(uint256 s, uint256 n, uint256 divisor) internal pure returns (uint256) {
        if (n == 0) return 0;
        uint256 sum = n * s * s + s * n * (n - 1) + (n - 1) * n * (2 * n - 1) / 6;
        return sum * 1 ether / divisor;
    }

    function testFuzz_getPrice_equalsReference(uint256 supply, uint256 amount) public view {
        supply = bound(supply, 0, 20_000);
        amount = bound(amount, 0, 300);
        vm.assertEq(market.getPrice(supply, amount), _referencePrice(supply, amount, 16000), "standard curve");
        vm.assertEq(market.getPriceOnCurve(0, supply, amount), _referencePrice(supply, amount, 16000), "curve 0");
        vm.assertEq(market.getPriceOnCurve(1, supply, amount), _referencePrice(supply, amount, 1600), "steep");
    }

    /// @notice Up to the largest supply the contract supports, a term-by-term sum agrees.
    function testFuzz_getPrice_equalsReferenceAtHugeSupply(uint256 supply, uint256 amount) public view {
        amount = bound(amount, 0, 40);
        supply = bound(supply, 0, type(uint64).max - amount);
        vm.assertEq(market.getPrice(supply, amount), _referencePrice(supply, amount, 16000), "standard");
        vm.assertEq(market.getPriceOnCurve(1, supply, amount), _referencePrice(supply, amount, 1600), "steep");
    }

    /// @notice For large supplies and large amounts, the expanded closed form agrees.
    function testFuzz_getPrice_equalsExpandedFormAtLargeSupply(uint256 supply, uint256 amount) public view {
        supply = bound(supply, 0, type(uint32).max);
        amount = bound(amount, 0, type(uint32).max);
        vm.assertEq(market.getPrice(supply, amount), _expandedPrice(supply, amount, 16000), "standard");
        vm.assertEq(market.getPriceOnCurve(1, supply, amount), _expandedPrice(supply, amount, 1600), "steep");
    }

    /// @notice The expanded form itself agrees with the loop (so each checks the other).
    function testFuzz_expandedForm_equalsLoop(uint256 supply, uint256 amount) public pure {
        supply = bound(supply, 0, 1e6);
        amount = bound(amount, 0, 200);
        vm.assertEq(_expandedPrice(supply, amount, 16000), _referencePrice(supply, amount, 16000), "forms");
    }

    uint256 internal quotedProtocolPct;
    uint256 internal quotedSubjectPct;

    /// @notice Quotes carry friend.tech's fee arithmetic for fuzzed fee settings.
    function testFuzz_quotes_feesEqualFriendtechFormula(
        uint256 protocolPct,
        uint256 subjectPct,
        uint256 supply,
        uint256 amount,
        bool steep
    ) public {
        quotedProtocolPct = bound(protocolPct, 0, 1e11) * 1e6;
        quotedSubjectPct = bound(subjectPct, 0, 1e11) * 1e6;
        amount = bound(amount, 0, 50);
        supply = bound(supply, 1, 2_001);
        KeyMarket m = new KeyMarket(owner, feeDestination, quotedProtocolPct, quotedSubjectPct, 0);
        vm.deal(subject, 1e12 ether);
        vm.prank(subject);
        m.buyFirstShares{value: 1e12 ether}(steep ? 1 : 0, supply);
        uint256 divisor = steep ? 1600 : 16000;
        _checkQuoteBuy(m, supply, amount, divisor);
        _checkQuoteSell(m, supply, amount > supply - 1 ? supply - 1 : amount, divisor);
    }

    function _checkQuoteBuy(KeyMarket m, uint256 supply, uint256 amount, uint256 divisor) internal view {
        uint256 price = _referencePrice(supply, amount, divisor);
        (uint256 p, uint256 pf, uint256 sf, uint256 total) = m.quoteBuy(subject, amount);
        _assertFees(p, pf, sf, price);
        vm.assertEq(total, price + pf + sf, "buy total");
    }

    function _checkQuoteSell(KeyMarket m, uint256 supply, uint256 amount, uint256 divisor) internal view {
        uint256 price = _referencePrice(supply - amount, amount, divisor);
        (uint256 p, uint256 pf, uint256 sf, uint256 proceeds) = m.quoteSell(subject, amount);
        _assertFees(p, pf, sf, price);
        vm.assertEq(proceeds, price - pf - sf, "sell proceeds");
    }

    function _assertFees(uint256 p, uint256 pf, uint256 sf, uint256 price) internal view {
        vm.assertEq(p, price, "price");
        vm.assertEq(pf, price * quotedProtocolPct / 1 ether, "protocol fee");
        vm.assertEq(sf, price * quotedSubjectPct / 1 ether, "subject fee");
    }

    /// @dev The model of friend.tech's market for one subject and two traders.
    struct Model {
        uint256 protocolPct;
        uint256 subjectPct;
        uint256 supply;
        uint256[2] held;
        uint256 protocolTotal;
        uint256 subjectTotal;
    }

    /// @notice Random trades, with fuzzed fee settings, against a model of friend.tech's market
    /// kept in the test: every Trade event, payment, proceeds, supply, balance, the accrued
    /// protocol fees and the subject's fees equal the model's, to the wei.
    function testFuzz_tradesMatchFriendtechModel(uint256 protocolPct, uint256 subjectPct, uint256 seed) public {
        Model memory m;
        m.protocolPct = bound(protocolPct, 0, 1e11) * 1e6;
        m.subjectPct = bound(subjectPct, 0, 1e11) * 1e6;
        KeyMarket ours = new KeyMarket(owner, feeDestination, m.protocolPct, m.subjectPct, 0);

        vm.prank(subject);
        ours.buyShares(subject, 1);
        m.supply = 1;
        for (uint256 i = 0; i < 16; i++) {
            seed = uint256(keccak256(abi.encode(seed, i)));
            _modelTrade(ours, m, seed);
        }
    }

    /// @dev One trade as the model expects it.
    struct Expected {
        address trader;
        bool isBuy;
        uint256 amount;
        uint256 price;
        uint256 protocolFee;
        uint256 subjectFee;
    }

    function _modelTrade(KeyMarket ours, Model memory m, uint256 seed) internal {
        uint256 who = seed % 2;
        Expected memory e;
        e.trader = who == 0 ? alice : bob;
        e.amount = (seed >> 8) % 6;
        e.isBuy = (seed >> 16) % 3 != 0;
        if (!e.isBuy) {
            if (e.amount > m.held[who]) e.amount = m.held[who];
            if (e.amount >= m.supply) return;
        }
        e.price = e.isBuy
            ? _referencePrice(m.supply, e.amount, 16000)
            : _referencePrice(m.supply - e.amount, e.amount, 16000);
        e.protocolFee = e.price * m.protocolPct / 1 ether;
        e.subjectFee = e.price * m.subjectPct / 1 ether;
        m.supply = e.isBuy ? m.supply + e.amount : m.supply - e.amount;
        m.held[who] = e.isBuy ? m.held[who] + e.amount : m.held[who] - e.amount;
        m.protocolTotal += e.protocolFee;
        m.subjectTotal += e.subjectFee;

        _expectTrade(address(ours), e, m.supply);
        uint256 before = e.trader.balance;
        vm.prank(e.trader);
        if (e.isBuy) {
            ours.buyShares{value: e.price + e.protocolFee + e.subjectFee}(subject, e.amount);
            vm.assertEq(before - e.trader.balance, e.price + e.protocolFee + e.subjectFee, "paid");
        } else {
            ours.sellShares(subject, e.amount);
            vm.assertEq(e.trader.balance - before, e.price - e.protocolFee - e.subjectFee, "proceeds");
        }
        vm.assertEq(ours.sharesSupply(subject), m.supply, "supply");
        vm.assertEq(ours.sharesBalance(subject, e.trader), m.held[who], "balance");
        vm.assertEq(ours.accruedProtocolFees(), m.protocolTotal, "protocol fees");
        vm.assertEq(ours.withdrawable(subject), m.subjectTotal, "subject fees");
    }

    function _expectTrade(address emitter, Expected memory e, uint256 supply) internal {
        vm.expectEmit(emitter);
        emit IKeyMarket.Trade(e.trader, subject, e.isBuy, e.amount, e.price, e.protocolFee, e.subjectFee, supply);
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
