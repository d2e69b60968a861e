// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {KeyMarketFixture} from "./utils/KeyMarketFixture.sol";
import {IKeyMarket} from "../src/interfaces/IKeyMarket.sol";
import {KeyMarket} from "../src/KeyMarket.sol";
import {Vm} from "./utils/Test.sol";

/// @notice A fee destination like a multisig wallet: its receive hook needs far more than a
/// 2,300 or 30,000 gas stipend, and it has no way to call the market itself.
contract GasHungryWallet {
    uint256[8] internal receipts;
    uint256 public received;

    receive() external payable {
        // Eight fresh storage writes: ~180,000 gas.
        for (uint256 i = 0; i < 8; i++) {
            receipts[i] = msg.value + i + 1;
        }
        received += msg.value;
    }
}

/// @notice A fee destination that refuses ETH until told otherwise.
contract ToggleDestination {
    bool public refuse = true;

    function setRefuse(bool r) external {
        refuse = r;
    }

    receive() external payable {
        require(!refuse, "refused");
    }
}

/// @notice The second safety pass (issue #15): one group per finding, each test named after what
/// it prevents.
contract KeyMarketSafetyTest is KeyMarketFixture {
    /// @dev Storage slots of KeyMarket (see `forge inspect KeyMarket storageLayout`).
    uint256 internal constant FEE_STATE_SLOT = 2;
    uint256 internal constant FEE_DESTINATION_SLOT = 3;
    uint256 internal constant REFERRAL_SHARE_SLOT = 4;
    uint256 internal constant PENDING_INCREASES_SLOT = 5; // and 6
    uint256 internal constant REFERRERS_SLOT = 7;

    /*//////////////////////////////////////////////////////////////
                      1. REFERRAL SELF-DEALING
    //////////////////////////////////////////////////////////////*/

    /// @notice A buy naming an invalid referrer goes through as an unreferred buy: nothing paid,
    /// nothing bound, the protocol keeps its whole fee (third pass: a referral never fails a
    /// trade; it used to revert with `InvalidReferrer`).
    function _assertIgnoredReferrer(address buyer, address named) internal {
        uint256 price = market.getBuyPrice(subject, 1);
        uint256 accruedBefore = market.accruedProtocolFees();
        uint256 namedBefore = market.withdrawable(named);
        vm.recordLogs();
        _referredBuy(buyer, subject, 1, named);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i = 0; i < logs.length; i++) {
            vm.assertTrue(logs[i].topics[0] != IKeyMarket.ReferrerBound.selector, "nothing bound");
            vm.assertTrue(logs[i].topics[0] != IKeyMarket.ReferralFeePaid.selector, "nothing paid");
        }
        vm.assertEq(market.referrerOf(buyer), address(0), "no referrer bound");
        vm.assertEq(market.accruedProtocolFees() - accruedBefore, _protocolFeeOf(price), "the protocol keeps all");
        if (named != subject) vm.assertEq(market.withdrawable(named), namedBefore, "nothing credited");
    }

    function test_referral_cannotSelfDeal_viaBuyer() public {
        _open(subject);
        _assertIgnoredReferrer(alice, alice);
    }

    /// @notice A subject cannot take a cut of the protocol fee on its own keys by being named
    /// referrer (it already earns the subject fee); a front end naming itself as default referrer
    /// on its own keys does not fail its users' buys.
    function test_referral_cannotSelfDeal_viaSubject() public {
        _open(subject);
        uint256 subjectBefore = market.withdrawable(subject);
        uint256 price = market.getBuyPrice(subject, 1);
        _assertIgnoredReferrer(alice, subject);
        vm.assertEq(market.withdrawable(subject) - subjectBefore, price * SUBJECT_FEE / 1 ether, "only its fee");
    }

    /// @notice A referral credit to the market itself could never be withdrawn.
    function test_referral_cannotStrandFeesOnMarket() public {
        _open(subject);
        _assertIgnoredReferrer(alice, address(market));
    }

    /// @notice The protocol fee destination is never bound as a referrer: the protocol would pay
    /// itself a referral, credited where a destination that cannot call the market could never
    /// withdraw it. The trader stays free to bind a real referrer later.
    function test_referral_feeDestinationIsNeverBound() public {
        _open(subject);
        _assertIgnoredReferrer(alice, feeDestination);
        _referredBuy(alice, subject, 1, bob);
        vm.assertEq(market.referrerOf(alice), bob, "a real referrer binds afterwards");
    }

    /// @notice The referral's events follow the buy's `Trade`: a consumer reading the logs in
    /// order meets the trade first (they used to come before it).
    function test_referral_eventsFollowTheirTrade() public {
        _open(subject);
        vm.recordLogs();
        _referredBuy(alice, subject, 2, bob);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        vm.assertEq(logs.length, 3, "trade, bound, paid");
        vm.assertEq(logs[0].topics[0], IKeyMarket.Trade.selector, "the trade first");
        vm.assertEq(logs[1].topics[0], IKeyMarket.ReferrerBound.selector, "then the binding");
        vm.assertEq(logs[2].topics[0], IKeyMarket.ReferralFeePaid.selector, "then the payment");
        vm.recordLogs();
        _referredBuy(alice, subject, 1, carol);
        logs = vm.getRecordedLogs();
        vm.assertEq(logs.length, 2, "trade, paid");
        vm.assertEq(logs[0].topics[0], IKeyMarket.Trade.selector, "the trade first");
        vm.assertEq(logs[1].topics[0], IKeyMarket.ReferralFeePaid.selector, "then the payment");
    }

    /// @notice The protocol always keeps at least 75% of its fee.
    function test_referral_cannotTakeMoreThanAQuarterOfProtocolFee() public {
        vm.assertEq(market.MAX_REFERRAL_SHARE_BPS(), 2_500, "cap");
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.ReferralShareTooHigh.selector, 2_501));
        new KeyMarket(owner, feeDestination, PROTOCOL_FEE, SUBJECT_FEE, 2_501);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.ReferralShareTooHigh.selector, 10_000));
        new KeyMarket(owner, feeDestination, PROTOCOL_FEE, SUBJECT_FEE, 10_000);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.ReferralShareTooHigh.selector, 10_000));
        market.setReferralFeeShare(10_000);

        // At the cap, a referred buy leaves exactly 75% (rounded up) to the protocol.
        vm.prank(owner);
        market.setReferralFeeShare(2_500);
        _open(subject);
        _buy(bob, subject, 10);
        uint256 price = market.getBuyPrice(subject, 7);
        uint256 pf = price * PROTOCOL_FEE / 1 ether;
        _referredBuy(alice, subject, 7, bob);
        vm.assertEq(market.withdrawable(bob), pf / 4, "a quarter to the referrer");
        vm.assertEq(market.accruedProtocolFees() - _protocolFeeOf(market.getPrice(1, 10)), pf - pf / 4, "the rest");
    }

    /// @notice Once bound, a trader's referrer cannot be switched to an address of the trader's
    /// own by naming another referrer; the other referrer is ignored, not refused.
    function test_referral_cannotSwitchAfterBinding() public {
        _open(subject);
        vm.expectEmit(address(market));
        emit IKeyMarket.ReferrerBound(alice, bob);
        _referredBuy(alice, subject, 2, bob);
        vm.assertEq(market.referrerOf(alice), bob, "bound");
        uint256 bobBefore = market.withdrawable(bob);

        uint256 pf = _protocolFeeOf(market.getBuyPrice(subject, 3));
        uint256 referral = pf * REFERRAL_BPS / 10_000;
        vm.recordLogs();
        _referredBuy(alice, subject, 3, carol); // a UI's default referrer: no revert
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i = 0; i < logs.length; i++) {
            vm.assertTrue(logs[i].topics[0] != IKeyMarket.ReferrerBound.selector, "bound only once");
        }
        vm.assertEq(market.referrerOf(alice), bob, "still bob");
        vm.assertEq(market.withdrawable(carol), 0, "the named referrer gets nothing");
        vm.assertEq(market.withdrawable(bob) - bobBefore, referral, "the bound referrer is credited");
    }

    /// @notice A trader bound to a subject as referrer pays that subject no referral on its own keys.
    function test_referral_boundSubjectEarnsNothingOnOwnKeys() public {
        _open(subject);
        _open(bob);
        _referredBuy(alice, subject, 1, bob); // bob is bound while buying subject's keys
        vm.assertEq(market.referrerOf(alice), bob, "bound");
        uint256 bobBefore = market.withdrawable(bob);
        uint256 accruedBefore = market.accruedProtocolFees();
        uint256 price = market.getBuyPrice(bob, 4);
        _referredBuy(alice, bob, 4, carol);
        vm.assertEq(market.withdrawable(bob) - bobBefore, price * SUBJECT_FEE / 1 ether, "only the subject fee");
        vm.assertEq(market.accruedProtocolFees() - accruedBefore, _protocolFeeOf(price), "the protocol keeps all");
    }

    /// @notice A buy naming no referrer pays no referral, even for a trader with a bound referrer.
    function test_referral_noneNamedPaysNone() public {
        _open(subject);
        _referredBuy(alice, subject, 1, bob);
        uint256 bobBefore = market.withdrawable(bob);
        uint256 accruedBefore = market.accruedProtocolFees();
        uint256 price = market.getBuyPrice(subject, 2);
        _referredBuy(alice, subject, 2, address(0));
        vm.assertEq(market.withdrawable(bob), bobBefore, "no referral");
        vm.assertEq(market.accruedProtocolFees() - accruedBefore, _protocolFeeOf(price), "the protocol keeps all");
    }

    /// @notice A plain buy, and a bounded buy naming no referrer, touch no referral storage, the
    /// fee destination or the pending fee increases: only the fee slot and the trade's own slots.
    function test_trade_readsNoReferralOrPendingStorage() public {
        _open(subject);
        _referredBuy(alice, subject, 1, bob);
        vm.prank(owner);
        market.setProtocolFeePercent(0.1 ether); // a pending increase exists
        uint256 cost = market.getBuyPriceAfterFee(subject, 1);

        vm.record();
        vm.prank(alice);
        market.buySharesBounded{value: cost}(subject, 1, cost, address(0), block.timestamp);
        _assertNotTouched();

        _buy(alice, subject, 1);
        vm.record();
        _sell(alice, subject, 1);
        _assertNotTouched();
    }

    function _assertNotTouched() internal {
        (bytes32[] memory reads,) = vm.accesses(address(market));
        bytes32 referrerSlot = keccak256(abi.encode(alice, REFERRERS_SLOT));
        bool feeSlotRead;
        for (uint256 i = 0; i < reads.length; i++) {
            uint256 slot = uint256(reads[i]);
            feeSlotRead = feeSlotRead || slot == FEE_STATE_SLOT;
            vm.assertTrue(slot != FEE_DESTINATION_SLOT, "destination not read");
            vm.assertTrue(slot != REFERRAL_SHARE_SLOT, "referral share not read");
            vm.assertTrue(slot != PENDING_INCREASES_SLOT && slot != PENDING_INCREASES_SLOT + 1, "pending not read");
            vm.assertTrue(reads[i] != referrerSlot, "referrer not read");
        }
        vm.assertTrue(feeSlotRead, "the fee slot is read");
    }

    /*//////////////////////////////////////////////////////////////
                    2. STRANDED PROTOCOL FEES
    //////////////////////////////////////////////////////////////*/

    /// @notice A destination whose receive hook needs more gas than any per-trade push could
    /// forward (a multisig), and that cannot call the market, still receives every fee.
    function test_protocolFees_notStrandedWhenDestinationNeedsGas() public {
        GasHungryWallet wallet = new GasHungryWallet();
        vm.prank(owner);
        market.setFeeDestination(address(wallet));
        _open(subject);
        _buy(alice, subject, 5);
        _sell(alice, subject, 2);
        _referredBuy(bob, subject, 3, carol);
        uint256 accrued = market.accruedProtocolFees();
        vm.assertGt(accrued, 0, "accrued");
        vm.assertEq(market.withdrawable(address(wallet)), 0, "nothing stranded as a credit");

        vm.expectEmit(address(market));
        emit IKeyMarket.ProtocolFeesFlushed(address(wallet), accrued);
        vm.prank(carol); // anyone
        uint256 flushed = market.flushProtocolFees();
        vm.assertEq(flushed, accrued, "returned");
        vm.assertEq(wallet.received(), accrued, "every fee reached the wallet");
        vm.assertEq(market.accruedProtocolFees(), 0, "cleared");
    }

    /// @notice Trades never call the destination, so it can neither block nor tax them.
    function test_protocolFees_accrueInsteadOfPush() public {
        _open(subject);
        uint256 price = market.getBuyPrice(subject, 4);
        _buy(alice, subject, 4);
        uint256 sellPrice = market.getSellPrice(subject, 1);
        _sell(alice, subject, 1);
        vm.assertEq(feeDestination.balance, 0, "nothing pushed");
        vm.assertEq(market.accruedProtocolFees(), _protocolFeeOf(price) + _protocolFeeOf(sellPrice), "accrued");
        vm.assertEq(
            address(market).balance,
            market.getPrice(0, 4) + market.accruedProtocolFees() + market.withdrawable(subject),
            "balance == reserve + accrued + withdrawable"
        );
        market.flushProtocolFees();
        vm.assertEq(feeDestination.balance, _protocolFeeOf(price) + _protocolFeeOf(sellPrice), "flushed");
    }

    /// @notice A refused flush loses nothing: the fees stay accrued until a flush succeeds.
    function test_protocolFees_notLostWhenFlushFails() public {
        ToggleDestination dest = new ToggleDestination();
        vm.prank(owner);
        market.setFeeDestination(address(dest));
        _open(subject);
        _buy(alice, subject, 3);
        uint256 accrued = market.accruedProtocolFees();
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.WithdrawalFailed.selector, address(dest), accrued));
        market.flushProtocolFees();
        vm.assertEq(market.accruedProtocolFees(), accrued, "still accrued");
        dest.setRefuse(false);
        market.flushProtocolFees();
        vm.assertEq(address(dest).balance, accrued, "paid on the next flush");
    }

    /// @notice Accrued fees go to the destination in force when they are flushed.
    function test_protocolFees_flushPaysCurrentDestination() public {
        _open(subject);
        _buy(alice, subject, 3);
        uint256 accrued = market.accruedProtocolFees();
        vm.prank(owner);
        market.setFeeDestination(carol);
        uint256 before = carol.balance;
        market.flushProtocolFees();
        vm.assertEq(carol.balance - before, accrued, "new destination paid");
        vm.assertEq(feeDestination.balance, 0, "old destination not");
    }

    function test_protocolFees_flushRevertsWhenNothingAccrued() public {
        vm.expectRevert(IKeyMarket.NothingToWithdraw.selector);
        market.flushProtocolFees();
        _open(subject); // the first key is free: no fee
        vm.expectRevert(IKeyMarket.NothingToWithdraw.selector);
        market.flushProtocolFees();
    }

    /// @notice Fees flushed to the market itself would be stuck; to address(0), burnt.
    function test_feeDestination_cannotStrandFeesOnMarketOrZero() public {
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.InvalidFeeDestination.selector, address(market)));
        market.setFeeDestination(address(market));
        vm.expectRevert(IKeyMarket.ZeroAddress.selector);
        market.setFeeDestination(address(0));
        vm.stopPrank();
    }

    /// @notice The 160-bit accrual reverts rather than silently truncate (and lose) protocol fees.
    function test_protocolFees_accrualNeverTruncates() public {
        _open(subject);
        _buy(alice, subject, 3);
        uint256 pf = _protocolFeeOf(market.getBuyPrice(subject, 2));
        uint256 word = uint256(vm.load(address(market), bytes32(FEE_STATE_SLOT)));
        uint256 nearFull = type(uint112).max - pf + 1; // one wei short of room for the next fee
        word = (word & ((uint256(1) << 144) - 1)) | (nearFull << 144);
        vm.store(address(market), bytes32(FEE_STATE_SLOT), bytes32(word));
        vm.assertEq(market.accruedProtocolFees(), nearFull, "stored");
        uint256 cost = market.getBuyPriceAfterFee(subject, 2);
        vm.prank(alice);
        vm.expectRevert(IKeyMarket.ProtocolFeesOverflow.selector);
        market.buyShares{value: cost}(subject, 2);
        // One wei less accrued and the fee fits exactly.
        vm.store(address(market), bytes32(FEE_STATE_SLOT), bytes32(word - (uint256(1) << 144)));
        _buy(alice, subject, 2);
        vm.assertEq(market.accruedProtocolFees(), type(uint112).max, "full, not wrapped");
    }

    /*//////////////////////////////////////////////////////////////
                      3. FEE FRONT-RUNNING
    //////////////////////////////////////////////////////////////*/

    /// @notice A sell has no bound on its fees: an owner raising them in front of it used to take
    /// the seller's proceeds. Now the seller receives what was quoted.
    function test_feeIncrease_cannotFrontRunPendingSell() public {
        _open(subject);
        _buy(alice, subject, 10);
        uint256 quoted = market.getSellPriceAfterFee(subject, 5);
        vm.startPrank(owner);
        market.setProtocolFeePercent(0.1 ether);
        market.setSubjectFeePercent(0.1 ether);
        vm.stopPrank();
        uint256 before = alice.balance;
        vm.prank(alice);
        market.sellShares(subject, 5);
        vm.assertEq(alice.balance - before, quoted, "proceeds as quoted");
    }

    /// @notice A plain `buyShares` sent with slack: the raise cannot eat the slack.
    function test_feeIncrease_cannotFrontRunPendingBuy() public {
        _open(subject);
        uint256 quoted = market.getBuyPriceAfterFee(subject, 5);
        vm.prank(owner);
        market.setProtocolFeePercent(0.1 ether);
        uint256 before = alice.balance;
        vm.prank(alice);
        market.buyShares{value: quoted * 2}(subject, 5);
        vm.assertEq(before - alice.balance, quoted, "paid as quoted");
    }

    function test_feeIncrease_appliesOnlyAfterDelay() public {
        _open(subject);
        uint256 t0 = block.timestamp;
        vm.expectEmit(address(market));
        emit IKeyMarket.FeeIncreaseScheduled(true, PROTOCOL_FEE, 0.08 ether, t0 + 24 hours);
        vm.prank(owner);
        market.setProtocolFeePercent(0.08 ether);
        vm.assertEq(market.protocolFeePercent(), PROTOCOL_FEE, "not yet");
        (uint256 pct, uint256 at) = market.pendingProtocolFeeIncrease();
        vm.assertEq(pct, 0.08 ether, "pending percent");
        vm.assertEq(at, t0 + 24 hours, "pending time");
        vm.assertEq(market.FEE_INCREASE_DELAY(), 24 hours, "delay");

        vm.expectRevert(IKeyMarket.NoFeeIncreaseDue.selector);
        market.applyFeeIncrease();
        vm.warp(t0 + 24 hours - 1);
        vm.expectRevert(IKeyMarket.NoFeeIncreaseDue.selector);
        market.applyFeeIncrease();
        // Trades before the time still pay the old fee.
        uint256 price = market.getBuyPrice(subject, 2);
        vm.expectEmit(address(market));
        emit IKeyMarket.Trade(alice, subject, true, 2, price, _protocolFeeOf(price), price * SUBJECT_FEE / 1 ether, 3);
        _buy(alice, subject, 2);

        vm.warp(t0 + 24 hours);
        vm.expectEmit(address(market));
        emit IKeyMarket.ProtocolFeePercentUpdated(PROTOCOL_FEE, 0.08 ether);
        vm.prank(carol); // anyone
        market.applyFeeIncrease();
        vm.assertEq(market.protocolFeePercent(), 0.08 ether, "applied");
        (pct, at) = market.pendingProtocolFeeIncrease();
        vm.assertEq(pct + at, 0, "cleared");
        vm.expectRevert(IKeyMarket.NoFeeIncreaseDue.selector);
        market.applyFeeIncrease();
    }

    function test_feeIncrease_subjectFeeWaitsToo_andBothApplyTogether() public {
        vm.startPrank(owner);
        market.setSubjectFeePercent(0.07 ether);
        market.setProtocolFeePercent(0.06 ether);
        vm.stopPrank();
        vm.assertEq(market.subjectFeePercent(), SUBJECT_FEE, "not yet");
        (uint256 pct, uint256 at) = market.pendingSubjectFeeIncrease();
        vm.assertEq(pct, 0.07 ether, "pending");
        vm.assertEq(at, block.timestamp + 24 hours, "time");
        vm.warp(block.timestamp + 2 days);
        vm.expectEmit(address(market));
        emit IKeyMarket.ProtocolFeePercentUpdated(PROTOCOL_FEE, 0.06 ether);
        vm.expectEmit(address(market));
        emit IKeyMarket.SubjectFeePercentUpdated(SUBJECT_FEE, 0.07 ether);
        market.applyFeeIncrease();
        vm.assertEq(market.protocolFeePercent(), 0.06 ether, "protocol");
        vm.assertEq(market.subjectFeePercent(), 0.07 ether, "subject");
    }

    function test_feeDecrease_appliesAtOnce_andCancelsPendingIncrease() public {
        vm.startPrank(owner);
        market.setProtocolFeePercent(0.1 ether);
        vm.expectEmit(address(market));
        emit IKeyMarket.ProtocolFeePercentUpdated(PROTOCOL_FEE, 0.01 ether);
        market.setProtocolFeePercent(0.01 ether);
        vm.stopPrank();
        vm.assertEq(market.protocolFeePercent(), 0.01 ether, "decreased at once");
        (uint256 pct, uint256 at) = market.pendingProtocolFeeIncrease();
        vm.assertEq(pct + at, 0, "increase cancelled");
        vm.warp(block.timestamp + 2 days);
        vm.expectRevert(IKeyMarket.NoFeeIncreaseDue.selector);
        market.applyFeeIncrease();
    }

    function test_feeIncrease_equalValueCancels_otherFeeUntouched() public {
        vm.startPrank(owner);
        market.setProtocolFeePercent(0.1 ether);
        market.setSubjectFeePercent(0.1 ether);
        market.setProtocolFeePercent(PROTOCOL_FEE); // equal to the current one: cancels
        vm.stopPrank();
        (uint256 pct,) = market.pendingProtocolFeeIncrease();
        vm.assertEq(pct, 0, "protocol increase cancelled");
        (pct,) = market.pendingSubjectFeeIncrease();
        vm.assertEq(pct, 0.1 ether, "subject increase still pending");
        vm.warp(block.timestamp + 1 days);
        market.applyFeeIncrease();
        vm.assertEq(market.protocolFeePercent(), PROTOCOL_FEE, "protocol unchanged");
        vm.assertEq(market.subjectFeePercent(), 0.1 ether, "subject raised");
    }

    /// @notice Re-scheduling replaces the pending increase and restarts the delay, so an owner
    /// cannot announce a small raise and swap in a large one at the last moment.
    function test_feeIncrease_cannotSwapPendingValueWithoutNewDelay() public {
        uint256 t0 = block.timestamp;
        vm.prank(owner);
        market.setProtocolFeePercent(0.06 ether);
        vm.warp(t0 + 23 hours);
        vm.prank(owner);
        market.setProtocolFeePercent(0.1 ether);
        vm.warp(t0 + 24 hours);
        vm.expectRevert(IKeyMarket.NoFeeIncreaseDue.selector);
        market.applyFeeIncrease();
        vm.warp(t0 + 47 hours);
        market.applyFeeIncrease();
        vm.assertEq(market.protocolFeePercent(), 0.1 ether, "applied after its own delay");
    }

    function test_feeIncrease_onlyOwnerSchedules() public {
        vm.prank(alice);
        vm.expectRevert();
        market.setProtocolFeePercent(0.1 ether);
    }

    function test_constructor_setsFeesImmediately() public {
        KeyMarket m = new KeyMarket(owner, feeDestination, 0.1 ether, 0.1 ether, 0);
        vm.assertEq(m.protocolFeePercent(), 0.1 ether, "protocol");
        vm.assertEq(m.subjectFeePercent(), 0.1 ether, "subject");
        (uint256 pct, uint256 at) = m.pendingProtocolFeeIncrease();
        vm.assertEq(pct + at, 0, "nothing pending");
    }

    /*//////////////////////////////////////////////////////////////
                       4. PHANTOM SUBJECTS
    //////////////////////////////////////////////////////////////*/

    /// @notice A first buy of zero keys used to emit a `Trade` with supply 0: a subject in the
    /// logs that does not exist on chain.
    function test_firstBuy_zeroAmountCreatesNoPhantomSubject() public {
        vm.recordLogs();
        vm.prank(subject);
        vm.expectRevert(IKeyMarket.ZeroAmount.selector);
        market.buyShares(subject, 0);
        vm.prank(subject);
        vm.expectRevert(IKeyMarket.ZeroAmount.selector);
        market.buySharesBounded(subject, 0, 0, address(0), block.timestamp);
        vm.prank(subject);
        vm.expectRevert(IKeyMarket.ZeroAmount.selector);
        market.buySharesBounded(subject, 0, 0, bob, block.timestamp);
        vm.prank(subject);
        vm.expectRevert(IKeyMarket.ZeroAmount.selector);
        market.buyFirstShares(1, 0);
        vm.assertEq(vm.getRecordedLogs().length, 0, "no event at all");
        vm.assertEq(market.referrerOf(subject), address(0), "no referrer bound either");
    }

    /// @notice friend.tech allows zero-amount buys on existing subjects; so does KeyMarket.
    function test_zeroAmountBuy_onExistingSubjectStillAllowed() public {
        _open(subject);
        vm.expectEmit(address(market));
        emit IKeyMarket.Trade(subject, subject, true, 0, 0, 0, 0, 1);
        vm.prank(subject);
        market.buyShares(subject, 0);
    }

    /*//////////////////////////////////////////////////////////////
                      5. RENOUNCED OWNERSHIP
    //////////////////////////////////////////////////////////////*/

    /// @notice Renouncing would freeze the fee settings forever.
    function test_renounceOwnership_disabled() public {
        vm.prank(owner);
        vm.expectRevert(IKeyMarket.RenounceOwnershipDisabled.selector);
        market.renounceOwnership();
        vm.assertEq(market.owner(), owner, "owner kept");
        vm.prank(alice);
        vm.expectRevert(IKeyMarket.RenounceOwnershipDisabled.selector);
        market.renounceOwnership();
        // Fees can still be lowered.
        vm.prank(owner);
        market.setProtocolFeePercent(0);
        vm.assertEq(market.protocolFeePercent(), 0, "still administrable");
    }

    /*//////////////////////////////////////////////////////////////
                     6. SUBJECT-AWARE QUOTES
    //////////////////////////////////////////////////////////////*/

    /// @notice `getPrice` is friend.tech's standard curve for every subject; `quoteBuy` prices on
    /// the subject's own curve, so a steep subject's buyer is not under-quoted 10×.
    function test_quoteBuy_usesSubjectCurve() public {
        vm.prank(subject);
        market.buyFirstShares(1, 1);
        (uint256 price, uint256 pf, uint256 sf, uint256 total) = market.quoteBuy(subject, 3);
        vm.assertEq(price, _referencePrice(1, 3, 1600), "steep price");
        vm.assertEq(price, 10 * market.getPrice(1, 3), "10x friend.tech's getPrice");
        vm.assertEq(pf, price * PROTOCOL_FEE / 1 ether, "protocol fee");
        vm.assertEq(sf, price * SUBJECT_FEE / 1 ether, "subject fee");
        vm.assertEq(total, price + pf + sf, "total");
        vm.assertEq(total, market.getBuyPriceAfterFee(subject, 3), "matches getBuyPriceAfterFee");

        vm.expectEmit(address(market));
        emit IKeyMarket.Trade(alice, subject, true, 3, price, pf, sf, 4);
        uint256 before = alice.balance;
        vm.prank(alice);
        market.buyShares{value: total}(subject, 3);
        vm.assertEq(before - alice.balance, total, "the quote is what the trade costs");
    }

    function test_quoteSell_usesSubjectCurve() public {
        vm.prank(subject);
        market.buyFirstShares(1, 1);
        _buy(alice, subject, 6);
        (uint256 price, uint256 pf, uint256 sf, uint256 proceeds) = market.quoteSell(subject, 4);
        vm.assertEq(price, _referencePrice(3, 4, 1600), "steep price");
        vm.assertEq(proceeds, price - pf - sf, "proceeds");
        vm.expectEmit(address(market));
        emit IKeyMarket.Trade(alice, subject, false, 4, price, pf, sf, 3);
        uint256 before = alice.balance;
        vm.prank(alice);
        market.sellShares(subject, 4);
        vm.assertEq(alice.balance - before, proceeds, "the quote is what the trade pays");
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.InsufficientSupply.selector, 3, 4));
        market.quoteSell(subject, 4);
    }

    /// @notice Third pass: a due increase counts from its `effectiveAt` in every trade and quote,
    /// whether or not anyone applied it — so nobody (the owner, a subject, anyone) chooses the
    /// moment it starts by applying it in front of a large sell. (It used to wait, with no
    /// expiry, for `applyFeeIncrease`: quotes showed the old fee, and whoever applied it in front
    /// of a plain `sellShares` took 10% of its price.)
    function test_feeIncrease_dueCountsFromItsTimeAppliedOrNot() public {
        _open(subject);
        _buy(alice, subject, 40);
        vm.prank(owner);
        market.setProtocolFeePercent(0.1 ether);
        (, uint256 effectiveAt) = market.pendingProtocolFeeIncrease();
        vm.warp(effectiveAt - 1);
        (uint256 price, uint256 pf,,) = market.quoteSell(subject, 30);
        vm.assertEq(pf, price * PROTOCOL_FEE / 1 ether, "not yet");
        vm.warp(effectiveAt);
        (price, pf,,) = market.quoteSell(subject, 30);
        vm.assertEq(pf, price * 0.1 ether / 1 ether, "in force at its time, not applied");
        vm.assertEq(market.protocolFeePercent(), 0.1 ether, "the fee in force");
        uint256 quoted = market.getSellPriceAfterFee(subject, 30);
        // Applying it changes no price: whoever applies it in front of the sell takes nothing.
        vm.prank(bob);
        market.applyFeeIncrease();
        vm.assertEq(market.getSellPriceAfterFee(subject, 30), quoted, "applying moves nothing");
        uint256 before = alice.balance;
        vm.prank(alice);
        market.sellShares(subject, 30);
        vm.assertEq(alice.balance - before, quoted, "the seller receives what was quoted");
    }

    /// @notice A trade after `effectiveAt` pays the scheduled fee although nobody applied it: the
    /// protocol accrues the new fee, and a plain buy sent with the old quote pays the new one.
    function test_feeIncrease_tradeAfterItsTimePaysTheScheduledFee() public {
        _open(subject);
        vm.startPrank(owner);
        market.setProtocolFeePercent(0.08 ether);
        market.setSubjectFeePercent(0.07 ether);
        vm.stopPrank();
        vm.warp(block.timestamp + market.FEE_INCREASE_DELAY());
        uint256 price = market.getBuyPrice(subject, 3);
        uint256 accruedBefore = market.accruedProtocolFees();
        uint256 subjectBefore = market.withdrawable(subject);
        uint256 cost = _buy(alice, subject, 3);
        vm.assertEq(cost, price + price * 0.08 ether / 1 ether + price * 0.07 ether / 1 ether, "the new fees");
        vm.assertEq(market.accruedProtocolFees() - accruedBefore, price * 0.08 ether / 1 ether, "protocol");
        vm.assertEq(market.withdrawable(subject) - subjectBefore, price * 0.07 ether / 1 ether, "subject");
    }

    /// @notice A new schedule (or a decrease) while an increase is due: the due one was in force,
    /// so it is written down first — "current" in the new `FeeIncreaseScheduled` is the fee
    /// trades were paying.
    function test_feeIncrease_newScheduleWritesDownADueOne() public {
        vm.prank(owner);
        market.setProtocolFeePercent(0.07 ether);
        vm.warp(block.timestamp + market.FEE_INCREASE_DELAY());
        vm.expectEmit(address(market));
        emit IKeyMarket.ProtocolFeePercentUpdated(PROTOCOL_FEE, 0.07 ether);
        vm.expectEmit(address(market));
        emit IKeyMarket.FeeIncreaseScheduled(true, 0.07 ether, 0.09 ether, block.timestamp + 24 hours);
        vm.prank(owner);
        market.setProtocolFeePercent(0.09 ether);
        vm.assertEq(market.protocolFeePercent(), 0.07 ether, "the due one stays in force");
    }

    /// @notice A subject's unwithdrawn fees that would overflow their bits revert with their own
    /// error (it used to be `SupplyOverflow`, which named the wrong thing).
    function test_subjectFees_overflowHasItsOwnError() public {
        _open(subject);
        bytes32 slot = keccak256(abi.encode(subject, uint256(8))); // _subjects[subject]
        uint256 word = uint256(vm.load(address(market), slot));
        uint256 full = (uint256(1) << 120) - 1;
        vm.store(address(market), slot, bytes32((word & ((uint256(1) << 136) - 1)) | (full << 136)));
        uint256 cost = market.getBuyPriceAfterFee(subject, 1);
        vm.prank(alice);
        vm.expectRevert(IKeyMarket.SubjectFeesOverflow.selector);
        market.buyShares{value: cost}(subject, 1);
    }

    function test_quoteBuy_usesFeesInForceNotPending() public {
        _open(subject);
        vm.prank(owner);
        market.setProtocolFeePercent(0.1 ether);
        (uint256 price, uint256 pf,,) = market.quoteBuy(subject, 2);
        vm.assertEq(pf, price * PROTOCOL_FEE / 1 ether, "the fee in force");
    }

    function _protocolFeeOf(uint256 price) internal pure returns (uint256) {
        return price * PROTOCOL_FEE / 1 ether;
    }
}
