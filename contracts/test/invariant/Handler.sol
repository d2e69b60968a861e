// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test, Vm} from "../utils/Test.sol";
import {KeyMarket} from "../../src/KeyMarket.sol";
import {IKeyMarket} from "../../src/interfaces/IKeyMarket.sol";

/// @notice An account that refuses ETH while `refuse` is set: as a fee destination it makes
/// flushes fail, as a trader it turns refunds and proceeds into deferred credits.
contract Toggler {
    bool public refuse;

    function setRefuse(bool r) external {
        refuse = r;
    }

    receive() external payable {
        require(!refuse, "refused");
    }
}

/// @notice Drives KeyMarket with bounded, mostly-valid trades by a fixed set of actors over a
/// fixed set of subjects, plus flushes, fee changes and referred buys with varied referrers, and
/// keeps ghost totals for the invariants.
contract Handler is Test {
    KeyMarket public immutable market;
    address public immutable owner;
    Toggler public immutable destination;
    address[] public actors;
    address[] public subjects;
    /// @dev Referrers that never trade.
    address[] public outsiders;

    // Ghosts.
    uint256 public ghostBuys;
    uint256 public ghostSells;
    uint256 public ghostWithdrawn;
    uint256 public ghostRoundTripProfit; // must stay 0: a round trip never returns more than paid
    uint256 public ghostProtocolFees; // Σ Trade.protocolEthAmount
    uint256 public ghostReferralFees; // Σ ReferralFeePaid.amount
    uint256 public ghostFlushed; // Σ ProtocolFeesFlushed.amount
    uint256 public ghostFlushFailures;
    uint256 public ghostViolations; // must stay 0: see `_violation`
    uint256 public ghostFeeIncreasesApplied;
    uint256 public ghostReferralsPaid;
    uint256 public ghostInvalidReferrersIgnored;
    uint256 public ghostReferralsToBoundSubjectSkipped;
    uint256 public ghostTradesAtScheduledFee; // trades at or after a scheduled increase's time, not applied
    /// @dev The handler's own model of the fees: [0] protocol, [1] subject — the percent written
    /// down, and the scheduled increase (percent, time). A trade pays the scheduled percent from
    /// its time on, written down or not.
    uint256[2] internal ghostFee;
    uint256[2] internal ghostPending;
    uint256[2] internal ghostPendingAt;

    constructor(
        KeyMarket market_,
        address owner_,
        Toggler destination_,
        address[] memory actors_,
        address[] memory subjects_,
        address[] memory outsiders_
    ) {
        market = market_;
        owner = owner_;
        destination = destination_;
        actors = actors_;
        subjects = subjects_;
        outsiders = outsiders_;
        ghostFee[0] = market_.protocolFeePercent();
        ghostFee[1] = market_.subjectFeePercent();
    }

    /// @dev The fee percent a trade pays now, by the model.
    function _feeNow(uint256 i) internal view returns (uint256) {
        if (ghostPendingAt[i] != 0 && ghostPendingAt[i] <= block.timestamp) return ghostPending[i];
        return ghostFee[i];
    }

    /// @dev Writes down the model's due increases (what `setFee` and `applyFeeIncrease` do).
    function _writeDownDue() internal {
        for (uint256 i = 0; i < 2; i++) {
            if (ghostPendingAt[i] != 0 && ghostPendingAt[i] <= block.timestamp) {
                ghostFee[i] = ghostPending[i];
                ghostPending[i] = 0;
                ghostPendingAt[i] = 0;
            }
        }
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function subjectCount() external view returns (uint256) {
        return subjects.length;
    }

    function outsiderCount() external view returns (uint256) {
        return outsiders.length;
    }

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % actors.length];
    }

    function _subject(uint256 seed) internal view returns (address) {
        return subjects[seed % subjects.length];
    }

    /// @dev Records a broken rule without reverting (a revert would be ignored by the fuzzer).
    function _violation() internal {
        ghostViolations++;
    }

    /// @notice A subject opens its market on a chosen curve.
    function open(uint256 subjectSeed, uint8 curve, uint256 amount) external {
        address s = _subject(subjectSeed);
        if (market.sharesSupply(s) != 0) return;
        _openFor(s, uint8(bound(curve, 0, 1)), bound(amount, 1, 3));
    }

    /// @dev `s` buys its first keys on `curve`.
    function _openFor(address s, uint8 curve, uint256 amount) internal {
        uint256 price = market.getPriceOnCurve(curve, 0, amount);
        uint256 cost = price * 12 / 10; // fees are at most 10% + 10%
        vm.deal(s, s.balance + cost);
        vm.recordLogs();
        vm.prank(s);
        market.buyFirstShares{value: cost}(curve, amount);
        // No quote for a subject not yet open: the fees in force by the model.
        _tally(s, s, address(0), price * _feeNow(0) / 1 ether, price * _feeNow(1) / 1 ether);
        ghostBuys++;
    }

    /// @notice A buy, plain or bounded, naming a referrer chosen among: none, another actor, a
    /// subject (possibly the one bought), the buyer, an outsider, or the market itself.
    function buy(uint256 actorSeed, uint256 subjectSeed, uint256 amount, uint256 extra, uint256 referrerSeed) external {
        address a = _actor(actorSeed);
        address s = _subject(subjectSeed);
        // Now and then, buy the keys of the buyer's bound referrer when it is a subject.
        address boundReferrer = market.referrerOf(a);
        if ((referrerSeed >> 32) % 2 == 0 && _isSubject(boundReferrer)) s = boundReferrer;
        if (market.sharesSupply(s) == 0) _openFor(s, uint8((subjectSeed >> 128) % 2), 1);
        amount = bound(amount, 0, 8);
        uint256 cost = market.getBuyPriceAfterFee(s, amount);
        extra = bound(extra, 0, 1 ether);
        vm.deal(a, a.balance + cost + extra);
        address referrer = _referrer(referrerSeed, a);
        // Ignored, never refused: the buyer, the subject, the market, and the fee destination when
        // it would be bound.
        bool invalid = referrer == a || referrer == s || referrer == address(market)
            || (referrer == address(destination) && market.referrerOf(a) == address(0));
        (, uint256 quotedProtocol, uint256 quotedSubject,) = market.quoteBuy(s, amount);
        vm.recordLogs();
        vm.prank(a);
        if (referrerSeed % 7 == 0) {
            market.buyShares{value: cost + extra}(s, amount);
            referrer = address(0);
        } else {
            // Bounded by the quote: a quote is what the trade charges, so it never reverts.
            try market.buySharesBounded{value: cost + extra}(s, amount, cost, referrer, block.timestamp) {}
            catch {
                _violation();
                return;
            }
            if (invalid && referrer != address(0)) ghostInvalidReferrersIgnored++;
            if (invalid) referrer = address(0);
        }
        _tally(a, s, referrer, quotedProtocol, quotedSubject);
        ghostBuys++;
    }

    function _isSubject(address x) internal view returns (bool) {
        for (uint256 i = 0; i < subjects.length; i++) {
            if (subjects[i] == x) return true;
        }
        return false;
    }

    function _referrer(uint256 seed, address buyer) internal view returns (address) {
        uint256 kind = (seed >> 8) % 8;
        if (kind == 0) return address(0);
        if (kind <= 2) return _actor(seed >> 16);
        if (kind <= 4) return _subject(seed >> 16);
        if (kind == 5) return buyer;
        if (kind == 6) return outsiders[(seed >> 16) % outsiders.length];
        return (seed >> 16) % 2 == 0 ? address(market) : address(destination);
    }

    function sell(uint256 actorSeed, uint256 subjectSeed, uint256 amount) external {
        address s = _subject(subjectSeed);
        address a = _actor(actorSeed);
        uint256 supply = market.sharesSupply(s);
        uint256 held = market.sharesBalance(s, a);
        if (supply <= 1 || held == 0) return;
        amount = bound(amount, 1, held < supply - 1 ? held : supply - 1);
        (, uint256 quotedProtocol, uint256 quotedSubject,) = market.quoteSell(s, amount);
        vm.recordLogs();
        vm.prank(a);
        market.sellShares(s, amount);
        _tally(a, s, address(0), quotedProtocol, quotedSubject);
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
        uint256 before = a.balance + market.withdrawable(a);
        (, uint256 qp, uint256 qs,) = market.quoteBuy(s, amount);
        vm.recordLogs();
        vm.prank(a);
        market.buyShares{value: cost}(s, amount);
        _tally(a, s, address(0), qp, qs);
        (, qp, qs,) = market.quoteSell(s, amount);
        vm.recordLogs();
        vm.prank(a);
        market.sellShares(s, amount);
        _tally(a, s, address(0), qp, qs);
        uint256 after_ = a.balance + market.withdrawable(a);
        if (after_ > before) ghostRoundTripProfit += after_ - before;
    }

    function withdraw(uint256 seed) external {
        uint256 kind = seed % 3;
        address a =
            kind == 0 ? _actor(seed / 3) : kind == 1 ? _subject(seed / 3) : outsiders[(seed / 3) % outsiders.length];
        uint256 owed = market.withdrawable(a);
        if (owed == 0) return;
        vm.prank(a);
        // A refusing actor withdraws to another address.
        try market.withdraw() {
            ghostWithdrawn += owed;
        } catch {
            vm.prank(a);
            market.withdrawTo(outsiders[0]);
            ghostWithdrawn += owed;
        }
        if (market.withdrawable(a) != 0) _violation();
    }

    /// @notice Anyone flushes the accrued protocol fees; a refusing destination fails the flush
    /// and the fees must stay accrued.
    function flush(uint256 callerSeed) external {
        uint256 accrued = market.accruedProtocolFees();
        if (accrued == 0) return;
        vm.prank(_actor(callerSeed));
        try market.flushProtocolFees() returns (uint256 amount) {
            if (amount != accrued || market.accruedProtocolFees() != 0) _violation();
            ghostFlushed += amount;
        } catch {
            if (!destination.refuse() || market.accruedProtocolFees() != accrued) _violation();
            ghostFlushFailures++;
        }
    }

    /// @notice The fee destination starts or stops refusing ETH.
    function toggleRefusal(bool refuse) external {
        destination.setRefuse(refuse);
    }

    /// @notice The owner sets a fee percent: decreases apply at once, increases are scheduled.
    function setFee(bool protocol, uint256 units) external {
        uint256 percent = bound(units, 0, 1e11) * 1e6; // 0..10%, whole fee units
        uint256 current = protocol ? market.protocolFeePercent() : market.subjectFeePercent();
        vm.prank(owner);
        if (protocol) market.setProtocolFeePercent(percent);
        else market.setSubjectFeePercent(percent);
        // The model: a due increase written down first, then a decrease at once or a schedule.
        _writeDownDue();
        uint256 i = protocol ? 0 : 1;
        if (current != ghostFee[i]) _violation(); // the fee in force is the model's
        if (percent > ghostFee[i]) {
            ghostPending[i] = percent;
            ghostPendingAt[i] = block.timestamp + 24 hours;
        } else {
            ghostFee[i] = percent;
            ghostPending[i] = 0;
            ghostPendingAt[i] = 0;
        }
        uint256 now_ = protocol ? market.protocolFeePercent() : market.subjectFeePercent();
        (uint256 pending, uint256 effectiveAt) =
            protocol ? market.pendingProtocolFeeIncrease() : market.pendingSubjectFeeIncrease();
        if (percent > current) {
            // Scheduled, not applied.
            if (now_ != current || pending != percent || effectiveAt != block.timestamp + 24 hours) _violation();
        } else {
            // Applied at once, any pending increase cancelled.
            if (now_ != percent || pending != 0 || effectiveAt != 0) _violation();
        }
    }

    /// @notice Time passes (up to two days).
    function warp(uint256 secs) external {
        vm.warp(block.timestamp + bound(secs, 1, 2 days));
    }

    /// @notice Anyone applies due fee increases; each applied value must have been scheduled at
    /// least `FEE_INCREASE_DELAY` earlier (its effectiveAt has passed).
    function applyIncrease(uint256 callerSeed) external {
        (uint256 pp, uint256 pAt) = market.pendingProtocolFeeIncrease();
        (uint256 sp, uint256 sAt) = market.pendingSubjectFeeIncrease();
        uint256 pBefore = market.protocolFeePercent();
        uint256 sBefore = market.subjectFeePercent();
        bool pDue = pAt != 0 && pAt <= block.timestamp;
        bool sDue = sAt != 0 && sAt <= block.timestamp;
        vm.prank(_actor(callerSeed));
        try market.applyFeeIncrease() {
            _writeDownDue();
            if (!pDue && !sDue) _violation();
            if (market.protocolFeePercent() != (pDue ? pp : pBefore)) _violation();
            if (market.subjectFeePercent() != (sDue ? sp : sBefore)) _violation();
            ghostFeeIncreasesApplied++;
        } catch (bytes memory reason) {
            if (pDue || sDue || bytes4(reason) != IKeyMarket.NoFeeIncreaseDue.selector) _violation();
        }
    }

    /// @dev Adds up the fees of the recorded trade's events and checks its referral: exactly the
    /// share of the protocol fee (at most `MAX_REFERRAL_SHARE_BPS`) when the buy named a referrer
    /// and the buyer's bound referrer is not the subject, none otherwise; only ever to the bound
    /// referrer, never to the buyer, the subject or the market.
    function _tally(address trader, address subject, address named, uint256 quotedProtocol, uint256 quotedSubject)
        internal
    {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 protocolFee;
        uint256 referral;
        address referrer;
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].emitter != address(market)) continue;
            bytes32 topic = logs[i].topics[0];
            if (topic == IKeyMarket.Trade.selector) {
                uint256 price;
                uint256 subjectFee;
                (,,,, price, protocolFee, subjectFee,) =
                    abi.decode(logs[i].data, (address, address, bool, uint256, uint256, uint256, uint256, uint256));
                ghostProtocolFees += protocolFee;
                // What the quote said, and the fee in force by the model: a scheduled increase
                // from its time on, whether or not anyone applied it.
                if (protocolFee != quotedProtocol || subjectFee != quotedSubject) _violation();
                if (protocolFee != price * _feeNow(0) / 1 ether) _violation();
                if (subjectFee != price * _feeNow(1) / 1 ether) _violation();
                if (_feeNow(0) != ghostFee[0] || _feeNow(1) != ghostFee[1]) ghostTradesAtScheduledFee++;
            } else if (topic == IKeyMarket.ReferralFeePaid.selector) {
                referrer = address(uint160(uint256(logs[i].topics[1])));
                referral = abi.decode(logs[i].data, (uint256));
                ghostReferralFees += referral;
            }
        }
        address boundReferrer = market.referrerOf(trader);
        uint256 expected =
            named != address(0) && boundReferrer != subject ? protocolFee * market.referralFeeShare() / 10_000 : 0;
        if (referral != expected) _violation();
        if (referral * 10_000 > protocolFee * market.MAX_REFERRAL_SHARE_BPS()) _violation();
        if (named != address(0) && boundReferrer == address(0)) _violation(); // a referred buy binds
        if (named != address(0) && boundReferrer == subject) ghostReferralsToBoundSubjectSkipped++;
        if (referral != 0) {
            ghostReferralsPaid++;
            if (referrer != boundReferrer) _violation();
            if (referrer == trader || referrer == subject || referrer == address(market)) _violation();
        }
    }
}
