// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {KeyMarketFixture} from "./utils/KeyMarketFixture.sol";
import {IKeyMarket} from "../src/interfaces/IKeyMarket.sol";
import {KeyMarket} from "../src/KeyMarket.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @notice Unit tests: every rule and every error of KeyMarket.
contract KeyMarketTest is KeyMarketFixture {
    /*//////////////////////////////////////////////////////////////
                          FRIEND.TECH COMPATIBILITY
    //////////////////////////////////////////////////////////////*/

    function test_abi_selectorsMatchFriendtech() public pure {
        assert(IKeyMarket.buyShares.selector == bytes4(0x6945b123));
        assert(IKeyMarket.sellShares.selector == bytes4(0xb51d0534));
        assert(IKeyMarket.getPrice.selector == bytes4(0x5cf4ee91));
        assert(IKeyMarket.getBuyPriceAfterFee.selector == bytes4(0x0f026f6d));
        assert(IKeyMarket.getSellPriceAfterFee.selector == bytes4(0x2267a89c));
        assert(IKeyMarket.sharesSupply.selector == bytes4(0xf9931be0));
        assert(IKeyMarket.sharesBalance.selector == bytes4(0x020235ff));
        assert(IKeyMarket.getBuyPrice.selector == bytes4(keccak256("getBuyPrice(address,uint256)")));
        assert(IKeyMarket.getSellPrice.selector == bytes4(keccak256("getSellPrice(address,uint256)")));
    }

    function test_event_tradeTopicMatchesFriendtech() public pure {
        assert(IKeyMarket.Trade.selector == 0x2c76e7a47fd53e2854856ac3f0a5f3ee40d15cfaa82266357ea9779c486ab9c3);
    }

    function test_price_examplesFromFriendtech() public view {
        vm.assertEq(market.getPrice(10, 1), 0.00625 ether, "s=10");
        vm.assertEq(market.getPrice(100, 1), 0.625 ether, "s=100");
        vm.assertEq(market.getPrice(1000, 1), 62.5 ether, "s=1000");
        vm.assertEq(market.getPrice(0, 1), 0, "first key is free");
        vm.assertEq(market.getPrice(0, 0), 0, "nothing costs nothing");
        vm.assertEq(market.getPrice(5, 0), 0, "zero amount");
    }

    function test_firstKey_onlySubject() public {
        vm.prank(alice);
        vm.expectRevert(IKeyMarket.OnlySubjectCanBuyFirstKey.selector);
        market.buyShares(subject, 1);
    }

    function test_firstKey_isFreeAndCreatesSubject() public {
        vm.expectEmit(address(market));
        emit IKeyMarket.SubjectCreated(subject, 0);
        vm.expectEmit(address(market));
        emit IKeyMarket.Trade(subject, subject, true, 1, 0, 0, 0, 1);
        _open(subject);
        vm.assertEq(market.sharesSupply(subject), 1, "supply");
        vm.assertEq(market.sharesBalance(subject, subject), 1, "subject holds its key");
    }

    function test_buy_paysPricePlusFees() public {
        _open(subject);
        uint256 price = market.getBuyPrice(subject, 3);
        vm.assertEq(price, _referencePrice(1, 3, 16000), "price");
        uint256 pf = price * PROTOCOL_FEE / 1 ether;
        uint256 sf = price * SUBJECT_FEE / 1 ether;
        vm.assertEq(market.getBuyPriceAfterFee(subject, 3), price + pf + sf, "after fee");

        vm.expectEmit(address(market));
        emit IKeyMarket.Trade(alice, subject, true, 3, price, pf, sf, 4);
        uint256 before = alice.balance;
        _buy(alice, subject, 3);
        vm.assertEq(before - alice.balance, price + pf + sf, "alice paid");
        vm.assertEq(feeDestination.balance, 0, "protocol fee not pushed");
        vm.assertEq(market.accruedProtocolFees(), pf, "protocol fee accrued");
        vm.assertEq(market.withdrawable(subject), sf, "subject fee accrued");
        vm.assertEq(market.sharesBalance(subject, alice), 3, "balance");
        vm.assertEq(market.sharesSupply(subject), 4, "supply");
        vm.assertEq(address(market).balance, price + pf + sf, "contract holds reserve + both fees");
    }

    function test_buy_refundsExcess() public {
        _open(subject);
        uint256 cost = market.getBuyPriceAfterFee(subject, 2);
        uint256 before = alice.balance;
        vm.prank(alice);
        market.buyShares{value: cost + 1 ether}(subject, 2);
        vm.assertEq(before - alice.balance, cost, "only the cost is kept");
    }

    function test_buy_revertsWhen_insufficientPayment() public {
        _open(subject);
        uint256 cost = market.getBuyPriceAfterFee(subject, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.InsufficientPayment.selector, cost, cost - 1));
        market.buyShares{value: cost - 1}(subject, 1);
    }

    function test_buy_zeroAmountEmitsEmptyTrade() public {
        _open(subject);
        vm.expectEmit(address(market));
        emit IKeyMarket.Trade(alice, subject, true, 0, 0, 0, 0, 1);
        vm.prank(alice);
        market.buyShares(subject, 0);
    }

    function test_sell_paysPriceMinusFees() public {
        _open(subject);
        _buy(alice, subject, 5);
        uint256 price = market.getSellPrice(subject, 2);
        vm.assertEq(price, _referencePrice(4, 2, 16000), "sell price is the price of the last keys");
        uint256 pf = price * PROTOCOL_FEE / 1 ether;
        uint256 sf = price * SUBJECT_FEE / 1 ether;
        uint256 before = alice.balance;
        vm.expectEmit(address(market));
        emit IKeyMarket.Trade(alice, subject, false, 2, price, pf, sf, 4);
        _sell(alice, subject, 2);
        vm.assertEq(alice.balance - before, price - pf - sf, "proceeds");
        vm.assertEq(market.sharesBalance(subject, alice), 3, "balance");
    }

    function test_sell_revertsWhen_lastKey() public {
        _open(subject);
        vm.prank(subject);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.CannotSellLastKey.selector, 1, 1));
        market.sellShares(subject, 1);
    }

    function test_sell_revertsWhen_insufficientKeys() public {
        _open(subject);
        _buy(alice, subject, 2);
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.InsufficientKeys.selector, 0, 1));
        market.sellShares(subject, 1);
        vm.prank(subject);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.InsufficientKeys.selector, 1, 2));
        market.sellShares(subject, 2);
    }

    function test_sell_subjectSellsOwnKeys() public {
        _open(subject);
        _buy(subject, subject, 2);
        _buy(alice, subject, 1);
        _sell(subject, subject, 2);
        vm.assertEq(market.sharesBalance(subject, subject), 1, "subject keeps one");
        vm.assertEq(market.sharesSupply(subject), 2, "supply");
    }

    function test_sell_rejectsEth() public {
        _open(subject);
        _buy(alice, subject, 1);
        vm.prank(alice);
        (bool ok,) = address(market).call{value: 1}(abi.encodeCall(IKeyMarket.sellShares, (subject, 1)));
        vm.assertFalse(ok, "non-payable sell must reject ETH");
    }

    function test_receive_rejectsPlainEth() public {
        vm.prank(alice);
        (bool ok,) = address(market).call{value: 1 ether}("");
        vm.assertFalse(ok, "plain ETH must be rejected");
    }

    /*//////////////////////////////////////////////////////////////
                               BOUNDED TRADES
    //////////////////////////////////////////////////////////////*/

    function test_buyBounded_revertsWhen_costAboveMax() public {
        _open(subject);
        uint256 cost = market.getBuyPriceAfterFee(subject, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.MaxCostExceeded.selector, cost, cost - 1));
        market.buySharesBounded{value: cost}(subject, 1, cost - 1, address(0), block.timestamp);
    }

    /// A bounded buy sends its bound as payment; when the price moved past it the error says so
    /// (not "insufficient payment"), so a wallet or the CLI can tell the trader the price moved.
    function test_buyBounded_priceMovedPastBound_saysMaxCostExceeded() public {
        _open(subject);
        uint256 quoted = market.getBuyPriceAfterFee(subject, 1);
        _buy(bob, subject, 3);
        uint256 cost = market.getBuyPriceAfterFee(subject, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.MaxCostExceeded.selector, cost, quoted));
        market.buySharesBounded{value: quoted}(subject, 1, quoted, address(0), block.timestamp);
    }

    function test_buyBounded_revertsWhen_deadlinePassed() public {
        _open(subject);
        vm.warp(1000);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.DeadlineExpired.selector, 999, 1000));
        market.buySharesBounded{value: 1 ether}(subject, 1, 1 ether, address(0), 999);
    }

    function test_buyBounded_refundsAndCreditsReferrer() public {
        _open(subject);
        uint256 price = market.getBuyPrice(subject, 4);
        uint256 pf = price * PROTOCOL_FEE / 1 ether;
        uint256 sf = price * SUBJECT_FEE / 1 ether;
        uint256 referral = pf * REFERRAL_BPS / 10_000;
        uint256 before = alice.balance;
        vm.expectEmit(address(market));
        emit IKeyMarket.ReferralFeePaid(bob, alice, subject, referral);
        vm.prank(alice);
        market.buySharesBounded{value: 10 ether}(subject, 4, 10 ether, bob, block.timestamp);
        vm.assertEq(before - alice.balance, price + pf + sf, "excess refunded");
        vm.assertEq(market.withdrawable(bob), referral, "referrer credited");
        vm.assertEq(market.accruedProtocolFees(), pf - referral, "the protocol accrues the rest");
        uint256 bobBefore = bob.balance;
        vm.prank(bob);
        market.withdraw();
        vm.assertEq(bob.balance - bobBefore, referral, "referrer withdraws");
    }

    function test_buyBounded_selfReferralIsIgnored() public {
        _open(subject);
        vm.prank(alice);
        market.buySharesBounded{value: 1 ether}(subject, 1, 1 ether, alice, block.timestamp);
        vm.assertEq(market.referrerOf(alice), address(0), "not bound");
        vm.assertEq(market.withdrawable(alice), 0, "not paid");
    }

    function test_sellBounded_revertsWhen_proceedsBelowMin() public {
        _open(subject);
        _buy(alice, subject, 3);
        uint256 proceeds = market.getSellPriceAfterFee(subject, 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.MinProceedsNotMet.selector, proceeds, proceeds + 1));
        market.sellSharesBounded(subject, 1, proceeds + 1, block.timestamp);
        vm.prank(alice);
        market.sellSharesBounded(subject, 1, proceeds, block.timestamp);
    }

    function test_sellBounded_revertsWhen_deadlinePassed() public {
        _open(subject);
        _buy(alice, subject, 3);
        vm.warp(50);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.DeadlineExpired.selector, 49, 50));
        market.sellSharesBounded(subject, 1, 0, 49);
    }

    /*//////////////////////////////////////////////////////////////
                                  CURVES
    //////////////////////////////////////////////////////////////*/

    function test_steepCurve_isTenTimesStandard() public {
        vm.expectEmit(address(market));
        emit IKeyMarket.SubjectCreated(subject, 1);
        vm.prank(subject);
        market.buyFirstShares(1, 1);
        vm.assertEq(market.subjectCurve(subject), 1, "curve");
        vm.assertEq(market.getBuyPrice(subject, 3), 10 * market.getPrice(1, 3), "10x");
        vm.assertEq(market.getBuyPrice(subject, 3), _referencePrice(1, 3, 1600), "reference");
        _buy(alice, subject, 3);
        _sell(alice, subject, 3);
        vm.assertEq(market.sharesSupply(subject), 1, "back to one");
    }

    function test_buyFirstShares_revertsWhen_invalidCurve() public {
        vm.prank(subject);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.InvalidCurve.selector, 2));
        market.buyFirstShares(2, 1);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.InvalidCurve.selector, 7));
        market.getPriceOnCurve(7, 1, 1);
    }

    function test_buyFirstShares_revertsWhen_subjectExists() public {
        _open(subject);
        vm.prank(subject);
        vm.expectRevert(IKeyMarket.SubjectAlreadyExists.selector);
        market.buyFirstShares(1, 1);
    }

    function test_buyFirstShares_revertsWhen_zeroAmount() public {
        vm.prank(subject);
        vm.expectRevert(IKeyMarket.ZeroAmount.selector);
        market.buyFirstShares(0, 0);
    }

    function test_price_revertsWhen_supplyOverflows() public {
        vm.expectRevert(IKeyMarket.SupplyOverflow.selector);
        market.getPrice(type(uint64).max, 1);
    }

    function test_getSellPrice_revertsWhen_moreThanSupply() public {
        _open(subject);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.InsufficientSupply.selector, 1, 2));
        market.getSellPrice(subject, 2);
    }

    /*//////////////////////////////////////////////////////////////
                                WITHDRAWALS
    //////////////////////////////////////////////////////////////*/

    function test_withdraw_paysSubjectFees() public {
        _open(subject);
        _buy(alice, subject, 10);
        uint256 fees = market.withdrawable(subject);
        vm.assertGt(fees, 0, "fees accrued");
        uint256 before = subject.balance;
        vm.expectEmit(address(market));
        emit IKeyMarket.Withdrawal(subject, subject, fees);
        vm.prank(subject);
        market.withdraw();
        vm.assertEq(subject.balance - before, fees, "paid");
        vm.assertEq(market.withdrawable(subject), 0, "cleared");
        vm.assertEq(market.sharesSupply(subject), 11, "withdrawal leaves the supply alone");
        vm.assertEq(market.sharesBalance(subject, subject), 1, "and the subject's keys");
    }

    function test_withdraw_revertsWhen_nothing() public {
        vm.prank(alice);
        vm.expectRevert(IKeyMarket.NothingToWithdraw.selector);
        market.withdraw();
    }

    function test_withdrawTo_revertsWhen_zeroAddress() public {
        vm.prank(alice);
        vm.expectRevert(IKeyMarket.ZeroAddress.selector);
        market.withdrawTo(address(0));
    }

    /*//////////////////////////////////////////////////////////////
                                  ADMIN
    //////////////////////////////////////////////////////////////*/

    function test_fees_cappedAtTenPercent() public {
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.FeeTooHigh.selector, 0.1 ether + 1e6, 0.1 ether));
        market.setProtocolFeePercent(0.1 ether + 1e6);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.FeeTooHigh.selector, 1 ether, 0.1 ether));
        market.setSubjectFeePercent(1 ether);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.FeeNotMultipleOfUnit.selector, 5e16 + 1));
        market.setSubjectFeePercent(5e16 + 1);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.ReferralShareTooHigh.selector, 10_001));
        market.setReferralFeeShare(10_001);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.ReferralShareTooHigh.selector, 2_501));
        market.setReferralFeeShare(2_501);
        vm.expectRevert(IKeyMarket.ZeroAddress.selector);
        market.setFeeDestination(address(0));
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.InvalidFeeDestination.selector, address(market)));
        market.setFeeDestination(address(market));
        vm.stopPrank();
    }

    function test_constructor_revertsWhen_feeAboveCap() public {
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.FeeTooHigh.selector, 0.2 ether, 0.1 ether));
        new KeyMarket(owner, feeDestination, 0.2 ether, 0, 0);
    }

    function test_fees_changesEmitEvents() public {
        vm.startPrank(owner);
        // An increase is scheduled, then applied after the delay.
        vm.expectEmit(address(market));
        emit IKeyMarket.FeeIncreaseScheduled(true, PROTOCOL_FEE, 0.1 ether, block.timestamp + 24 hours);
        market.setProtocolFeePercent(0.1 ether);
        vm.warp(block.timestamp + 24 hours);
        vm.expectEmit(address(market));
        emit IKeyMarket.ProtocolFeePercentUpdated(PROTOCOL_FEE, 0.1 ether);
        market.applyFeeIncrease();
        // A decrease applies at once.
        vm.expectEmit(address(market));
        emit IKeyMarket.SubjectFeePercentUpdated(SUBJECT_FEE, 0);
        market.setSubjectFeePercent(0);
        vm.expectEmit(address(market));
        emit IKeyMarket.FeeDestinationUpdated(feeDestination, bob);
        market.setFeeDestination(bob);
        vm.expectEmit(address(market));
        emit IKeyMarket.ReferralFeeShareUpdated(REFERRAL_BPS, 2_500);
        market.setReferralFeeShare(2_500);
        vm.stopPrank();
        vm.assertEq(market.protocolFeePercent(), 0.1 ether, "protocol");
        vm.assertEq(market.subjectFeePercent(), 0, "subject");
        vm.assertEq(market.protocolFeeDestination(), bob, "destination");
        vm.assertEq(market.referralFeeShare(), 2_500, "referral");
    }

    function test_admin_onlyOwner() public {
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        market.setProtocolFeePercent(0);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        market.setSubjectFeePercent(0);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        market.setFeeDestination(alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        market.setReferralFeeShare(0);
        vm.stopPrank();
    }

    function test_ownership_twoStep() public {
        vm.prank(owner);
        market.transferOwnership(alice);
        vm.assertEq(market.owner(), owner, "not yet");
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, bob));
        market.acceptOwnership();
        vm.prank(alice);
        market.acceptOwnership();
        vm.assertEq(market.owner(), alice, "accepted");
    }
}
