// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "./utils/Test.sol";
import {KeyMarket} from "../src/KeyMarket.sol";

/// @notice KeyMarket's gas for friend.tech's six trading cases, against friend.tech's own figures,
/// plus KeyMarket's other paths. Measured with solc 0.8.37, optimizer 200 runs, EVM cancun, each
/// call its own transaction (`isolate = true`, so figures include the 21,000 intrinsic gas and
/// calldata), 5% + 5% fees, fee destination and subject already funded accounts. Figures are
/// written to `snapshots/KeyMarket.json` and `snapshots/KeyMarketVsFriendtechPermille.json` and
/// checked in CI (`FORGE_SNAPSHOT_CHECK=true`).
contract KeyMarketGasTest is Test {
    /// @dev FriendtechSharesV1's gas for the six cases, measured under the same conditions
    /// (solc 0.8.37, optimizer 200, cancun, each call its own transaction, 5% + 5% fees, subject
    /// 0xCAFE, funded fee destination and subject). These are facts about the deployed friend.tech
    /// contract and do not change with KeyMarket.
    uint256 internal constant FRIENDTECH_FIRST_KEY = 80_024;
    uint256 internal constant FRIENDTECH_BUY1_NEW_HOLDER = 80_155;
    uint256 internal constant FRIENDTECH_BUY1_EXISTING_HOLDER = 63_055;
    uint256 internal constant FRIENDTECH_BUY5_NEW_HOLDER = 80_155;
    uint256 internal constant FRIENDTECH_SELL1_KEEP_SOME = 70_219;
    uint256 internal constant FRIENDTECH_SELL_LAST_KEY = 65_419;

    address internal feeDestination;
    address internal subject;
    address internal trader;
    address internal referrer;
    address internal keeper;

    function setUp() public {
        feeDestination = makeFunded("feeDestination", 1 ether);
        // A subject address with two non-zero bytes, as in the friend.tech figures: calldata
        // costs depend on it.
        subject = address(0xCAFE);
        vm.deal(subject, 100 ether);
        trader = makeFunded("trader", 100 ether);
        referrer = makeFunded("referrer", 1 ether);
        keeper = makeFunded("keeper", 1 ether);
    }

    function _friendtech(uint256 which) internal pure returns (uint256) {
        return [
            FRIENDTECH_FIRST_KEY,
            FRIENDTECH_BUY1_NEW_HOLDER,
            FRIENDTECH_BUY1_EXISTING_HOLDER,
            FRIENDTECH_BUY5_NEW_HOLDER,
            FRIENDTECH_SELL1_KEEP_SOME,
            FRIENDTECH_SELL_LAST_KEY
        ][which];
    }

    function _keyMarket() internal returns (KeyMarket) {
        return new KeyMarket(address(this), feeDestination, 0.05 ether, 0.05 ether, 2_000);
    }

    function _buy(KeyMarket m, address who, uint256 amount) internal {
        uint256 cost = m.getBuyPriceAfterFee(subject, amount);
        vm.prank(who);
        m.buyShares{value: cost}(subject, amount);
    }

    function _referredBuy(KeyMarket m, address who, uint256 amount) internal {
        uint256 cost = m.getBuyPriceAfterFee(subject, amount);
        vm.prank(who);
        m.buySharesBounded{value: cost}(subject, amount, cost, referrer, block.timestamp);
    }

    /// @dev Runs one case's preparation, then the measured call (the last call); returns its gas.
    function _measure(KeyMarket m, uint256 which) internal returns (uint256) {
        _buy(m, subject, 1); // the subject's first key (case 0 measures this)
        if (which == 1) {
            _buy(m, trader, 1); // a new holder buys one key
        } else if (which == 2) {
            _buy(m, trader, 1);
            _buy(m, trader, 1); // an existing holder buys one more
        } else if (which == 3) {
            _buy(m, trader, 5); // a new holder buys five keys
        } else if (which == 4) {
            _buy(m, trader, 2);
            vm.prank(trader);
            m.sellShares(subject, 1); // sells one and keeps one
        } else if (which == 5) {
            _buy(m, trader, 1);
            vm.prank(trader);
            m.sellShares(subject, 1); // sells the holder's last key
        } else if (which == 6) {
            uint256 cost = m.getBuyPriceAfterFee(subject, 1);
            vm.prank(trader);
            m.buySharesBounded{value: cost}(subject, 1, cost, address(0), block.timestamp); // bounded, new holder
        } else if (which == 7) {
            _buy(m, trader, 2);
            uint256 proceeds = m.getSellPriceAfterFee(subject, 1);
            vm.prank(trader);
            m.sellSharesBounded(subject, 1, proceeds, block.timestamp); // bounded, keeps one
        } else if (which == 8) {
            _referredBuy(m, trader, 1); // first referred buy: binds the referrer, first credit
        } else if (which == 9) {
            _referredBuy(m, trader, 1);
            _referredBuy(m, trader, 1); // a later referred buy: bound referrer, credit topped up
        } else if (which == 10) {
            _buy(m, trader, 2);
            vm.prank(subject);
            m.withdraw(); // the subject withdraws its fees
        } else if (which == 11) {
            _buy(m, trader, 2);
            vm.prank(keeper);
            m.flushProtocolFees(); // anyone sends the accrued protocol fees to the destination
        } else if (which == 12) {
            _referredBuy(m, trader, 2);
            vm.prank(referrer);
            m.withdraw(); // the referrer withdraws its credit
        }
        return vm.lastCallGas().gasTotalUsed;
    }

    string[13] internal NAMES = [
        "firstKey",
        "buy1_newHolder",
        "buy1_existingHolder",
        "buy5_newHolder",
        "sell1_keepSome",
        "sell_lastKey",
        "buyBounded1_newHolder",
        "sellBounded1_keepSome",
        "buyReferred1_bindsReferrer",
        "buyReferred1_boundReferrer",
        "withdraw_subjectFees",
        "flushProtocolFees",
        "withdraw_referralCredit"
    ];

    function _snapshot(uint256 which) internal returns (uint256 gas) {
        _measure(_keyMarket(), which);
        gas = vm.snapshotGasLastCall("KeyMarket", NAMES[which]);
    }

    function test_gas_keyMarket_firstKey() public {
        _snapshot(0);
    }

    function test_gas_keyMarket_buy1_newHolder() public {
        _snapshot(1);
    }

    function test_gas_keyMarket_buy1_existingHolder() public {
        _snapshot(2);
    }

    function test_gas_keyMarket_buy5_newHolder() public {
        _snapshot(3);
    }

    function test_gas_keyMarket_sell1_keepSome() public {
        _snapshot(4);
    }

    function test_gas_keyMarket_sell_lastKey() public {
        _snapshot(5);
    }

    function test_gas_keyMarket_buyBounded1_newHolder() public {
        _snapshot(6);
    }

    function test_gas_keyMarket_sellBounded1_keepSome() public {
        _snapshot(7);
    }

    function test_gas_keyMarket_buyReferred1_bindsReferrer() public {
        _snapshot(8);
    }

    function test_gas_keyMarket_buyReferred1_boundReferrer() public {
        _snapshot(9);
    }

    function test_gas_keyMarket_withdraw_subjectFees() public {
        _snapshot(10);
    }

    function test_gas_keyMarket_flushProtocolFees() public {
        _snapshot(11);
    }

    function test_gas_keyMarket_withdraw_referralCredit() public {
        _snapshot(12);
    }

    /// @notice The bar: each of friend.tech's six cases costs at most 80% of friend.tech's figure.
    function test_gas_atMost80PercentOfFriendtech() public {
        for (uint256 i = 0; i < 6; i++) {
            uint256 ours = _measure(_keyMarket(), i);
            uint256 theirs = _friendtech(i);
            vm.snapshotValue("KeyMarketVsFriendtechPermille", NAMES[i], ours * 1000 / theirs);
            vm.assertLe(ours * 100, theirs * 80, NAMES[i]);
        }
    }
}
