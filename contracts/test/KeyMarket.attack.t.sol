// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {KeyMarketFixture} from "./utils/KeyMarketFixture.sol";
import {IKeyMarket} from "../src/interfaces/IKeyMarket.sol";
import {KeyMarket} from "../src/KeyMarket.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @notice A seller whose receive hook re-enters the market, as in the Stars Arena exploit.
contract ReentrantTrader {
    IKeyMarket internal immutable market;
    address internal immutable subject;
    bytes4 public reentryError;
    uint256 public reentries;

    constructor(IKeyMarket market_, address subject_) {
        market = market_;
        subject = subject_;
    }

    function buy(uint256 amount) external payable {
        market.buyShares{value: msg.value}(subject, amount);
    }

    function sell(uint256 amount) external {
        market.sellShares(subject, amount);
    }

    receive() external payable {
        reentries++;
        try market.sellShares(subject, 1) {}
        catch (bytes memory reason) {
            reentryError = bytes4(reason);
        }
    }
}

/// @notice A recipient that refuses all ETH.
contract Refuser {
    function withdrawFrom(IKeyMarket market, address to) external returns (uint256) {
        return market.withdrawTo(to);
    }

    function withdrawSelf(IKeyMarket market) external returns (uint256) {
        return market.withdraw();
    }

    function buyFirst(IKeyMarket market) external {
        market.buyShares(address(this), 1);
    }

    receive() external payable {
        revert("no ETH");
    }
}

/// @notice A recipient that burns all the gas it is given.
contract GasGuzzler {
    receive() external payable {
        while (true) {}
    }
}

/// @notice Attacks friend.tech and its clones suffered, replayed against KeyMarket.
contract KeyMarketAttackTest is KeyMarketFixture {
    function test_reentrancy_starsArenaStyleSellerCannotReenter() public {
        _open(subject);
        ReentrantTrader attacker = new ReentrantTrader(market, subject);
        vm.deal(address(attacker), 10 ether);
        uint256 cost = market.getBuyPriceAfterFee(subject, 5);
        attacker.buy{value: cost}(5);
        uint256 proceeds = market.getSellPriceAfterFee(subject, 2);
        uint256 before = address(attacker).balance;
        attacker.sell(2);

        vm.assertEq(attacker.reentries(), 1, "the hook ran");
        vm.assertEq(
            attacker.reentryError(), ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector, "guard stopped it"
        );
        vm.assertEq(address(attacker).balance - before, proceeds, "paid exactly once");
        vm.assertEq(market.sharesBalance(subject, address(attacker)), 3, "sold exactly two");
        _assertSolvent();
    }

    function test_reentrancy_viewsAreConsistentDuringCallback() public {
        // State is written before the push: during the hook the supply already reflects the sale,
        // so a re-priced sell (the Stars Arena trick) would see post-trade prices even unguarded.
        _open(subject);
        ReentrantTrader attacker = new ReentrantTrader(market, subject);
        vm.deal(address(attacker), 10 ether);
        attacker.buy{value: market.getBuyPriceAfterFee(subject, 3)}(3);
        attacker.sell(1);
        vm.assertEq(market.sharesSupply(subject), 3, "supply");
        _assertSolvent();
    }

    function test_revertingSubject_cannotBlockSells() public {
        Refuser bad = new Refuser();
        bad.buyFirst(market);
        address s = address(bad);
        _buy(alice, s, 4);
        _buy(bob, s, 2);
        uint256 proceeds = _sell(alice, s, 4);
        vm.assertGt(proceeds, 0, "alice sold");
        uint256 fees = market.withdrawable(s);
        vm.assertGt(fees, 0, "fees wait for the subject");

        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.WithdrawalFailed.selector, s, fees));
        bad.withdrawSelf(market);
        address payable vault = payable(makeFunded("vault", 0));
        bad.withdrawFrom(market, vault);
        vm.assertEq(vault.balance, fees, "withdrawable to another address");
        _assertSolvent();
    }

    function test_revertingFeeDestination_cannotBlockTrading() public {
        Refuser bad = new Refuser();
        vm.prank(owner);
        market.setFeeDestination(address(bad));
        _open(subject);
        uint256 price = market.getBuyPrice(subject, 3);
        uint256 pf = price * PROTOCOL_FEE / 1 ether;
        _buy(alice, subject, 3);
        _sell(alice, subject, 1);
        uint256 accrued = market.accruedProtocolFees();
        vm.assertGt(accrued, pf, "fees accrued on buy and sell");
        _assertSolvent();
        // The refusing destination fails only its own flush; the fees stay accrued.
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.WithdrawalFailed.selector, address(bad), accrued));
        market.flushProtocolFees();
        vm.assertEq(market.accruedProtocolFees(), accrued, "still accrued");
        address payable treasury = payable(makeFunded("treasury", 0));
        vm.prank(owner);
        market.setFeeDestination(treasury);
        market.flushProtocolFees();
        vm.assertEq(treasury.balance, accrued, "flushed to the new destination");
        _assertSolvent();
    }

    function test_gasGuzzlingFeeDestination_cannotTaxTrades() public {
        GasGuzzler guzzler = new GasGuzzler();
        vm.prank(owner);
        market.setFeeDestination(address(guzzler));
        _open(subject);
        _buy(alice, subject, 2);
        vm.assertLt(vm.lastCallGas().gasTotalUsed, 100_000, "the destination is never called by a trade");
        vm.assertGt(market.accruedProtocolFees(), 0, "accrued");
        vm.expectRevert();
        market.flushProtocolFees{gas: 1_000_000}();
        vm.assertGt(market.accruedProtocolFees(), 0, "still accrued after the failed flush");
        _assertSolvent();
    }

    function test_sandwich_stoppedBySlippageBound() public {
        _open(subject);
        _buy(bob, subject, 5);
        // The victim quotes a price and sets it as the bound.
        uint256 quoted = market.getBuyPriceAfterFee(subject, 3);
        // The attacker front-runs with a large buy...
        _buy(alice, subject, 20);
        // ...and the victim's bounded buy reverts instead of paying the inflated price.
        uint256 inflated = market.getBuyPriceAfterFee(subject, 3);
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.MaxCostExceeded.selector, inflated, quoted));
        market.buySharesBounded{value: inflated}(subject, 3, quoted, address(0), block.timestamp);
        // The attacker's back-run sell now loses the fees it paid: no profit.
        uint256 before = alice.balance;
        _sell(alice, subject, 20);
        vm.assertLt(alice.balance - before, market.getBuyPrice(subject, 20) * 12 / 10, "sanity");
    }

    function test_ownerFeeChange_aboveCapReverts_andFrontRunIncreaseWaits() public {
        _open(subject);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IKeyMarket.FeeTooHigh.selector, 0.5 ether, 0.1 ether));
        market.setProtocolFeePercent(0.5 ether);

        uint256 quoted = market.getBuyPriceAfterFee(subject, 2);
        vm.prank(owner);
        market.setProtocolFeePercent(0.1 ether); // within the cap, front-running the victim
        // The increase is only scheduled: the victim's bounded buy goes through at the quote.
        vm.prank(alice);
        market.buySharesBounded{value: quoted}(subject, 2, quoted, address(0), block.timestamp);
        vm.assertEq(market.sharesBalance(subject, alice), 2, "bought at the quoted cost");
    }

    /// @dev The contract's ETH covers the curve reserve of the outstanding keys plus the accrued
    /// protocol fees. Only `subject`, and at most the Refuser, have keys in these tests; the exact
    /// equality over many subjects lives in the invariant suite.
    function _assertSolvent() internal view {
        vm.assertGe(
            address(market).balance,
            market.getPriceOnCurve(0, 0, market.sharesSupply(subject)) + market.accruedProtocolFees(),
            "reserve + accrued protocol fees"
        );
    }
}
