// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "./utils/Test.sol";
import {KeyMarket} from "../src/KeyMarket.sol";
import {FriendtechSharesV1} from "./reference/FriendtechSharesV1.sol";

/// @notice The trading ABI both contracts share.
interface ITrading {
    function buyShares(address subject, uint256 amount) external payable;
    function sellShares(address subject, uint256 amount) external;
    function getBuyPriceAfterFee(address subject, uint256 amount) external view returns (uint256);
}

/// @notice Gas of the six friend.tech trading cases, on KeyMarket and on FriendtechSharesV1,
/// measured the same way: solc 0.8.37, optimizer 200 runs, EVM cancun, each call its own
/// transaction (`isolate = true`, so figures include the 21,000 intrinsic gas), 5% + 5% fees,
/// fee destination and subject already funded accounts. Figures are written to
/// `snapshots/KeyMarketGas.json` and checked in CI (`FORGE_SNAPSHOT_CHECK=true`).
contract KeyMarketGasTest is Test {
    address internal feeDestination;
    address internal subject;
    address internal trader;

    function setUp() public {
        feeDestination = makeFunded("feeDestination", 1 ether);
        // A subject address with two non-zero bytes: calldata costs depend on it, and this one
        // reproduces the friend.tech figures quoted in issue #2 exactly.
        subject = address(0xCAFE);
        vm.deal(subject, 100 ether);
        trader = makeFunded("trader", 100 ether);
    }

    function _keyMarket() internal returns (ITrading) {
        return ITrading(address(new KeyMarket(address(this), feeDestination, 0.05 ether, 0.05 ether, 2_000)));
    }

    function _friendtech() internal returns (ITrading) {
        FriendtechSharesV1 ft = new FriendtechSharesV1();
        ft.setFeeDestination(feeDestination);
        ft.setProtocolFeePercent(0.05 ether);
        ft.setSubjectFeePercent(0.05 ether);
        return ITrading(address(ft));
    }

    function _buy(ITrading m, address who, uint256 amount) internal {
        uint256 cost = m.getBuyPriceAfterFee(subject, amount);
        vm.prank(who);
        m.buyShares{value: cost}(subject, amount);
    }

    /// @dev Runs one case's preparation, then the measured call; returns the measured call's gas.
    function _measure(ITrading m, uint256 which) internal returns (uint256) {
        if (which == 0) {
            _buy(m, subject, 1); // the subject's first key
        } else if (which == 1) {
            _buy(m, subject, 1);
            _buy(m, trader, 1); // a new holder buys one key
        } else if (which == 2) {
            _buy(m, subject, 1);
            _buy(m, trader, 1);
            _buy(m, trader, 1); // an existing holder buys one more
        } else if (which == 3) {
            _buy(m, subject, 1);
            _buy(m, trader, 5); // a new holder buys five keys
        } else if (which == 4) {
            _buy(m, subject, 1);
            _buy(m, trader, 2);
            vm.prank(trader);
            m.sellShares(subject, 1); // sells one and keeps one
        } else {
            _buy(m, subject, 1);
            _buy(m, trader, 1);
            vm.prank(trader);
            m.sellShares(subject, 1); // sells the holder's last key
        }
        return vm.lastCallGas().gasTotalUsed;
    }

    string[6] internal NAMES =
        ["firstKey", "buy1_newHolder", "buy1_existingHolder", "buy5_newHolder", "sell1_keepSome", "sell_lastKey"];

    function _snapshot(string memory group, ITrading m, uint256 which) internal returns (uint256 gas) {
        _measure(m, which);
        gas = vm.snapshotGasLastCall(group, NAMES[which]);
    }

    function test_gas_keyMarket_firstKey() public {
        _snapshot("KeyMarket", _keyMarket(), 0);
    }

    function test_gas_keyMarket_buy1_newHolder() public {
        _snapshot("KeyMarket", _keyMarket(), 1);
    }

    function test_gas_keyMarket_buy1_existingHolder() public {
        _snapshot("KeyMarket", _keyMarket(), 2);
    }

    function test_gas_keyMarket_buy5_newHolder() public {
        _snapshot("KeyMarket", _keyMarket(), 3);
    }

    function test_gas_keyMarket_sell1_keepSome() public {
        _snapshot("KeyMarket", _keyMarket(), 4);
    }

    function test_gas_keyMarket_sell_lastKey() public {
        _snapshot("KeyMarket", _keyMarket(), 5);
    }

    function test_gas_friendtech_firstKey() public {
        _snapshot("FriendtechSharesV1", _friendtech(), 0);
    }

    function test_gas_friendtech_buy1_newHolder() public {
        _snapshot("FriendtechSharesV1", _friendtech(), 1);
    }

    function test_gas_friendtech_buy1_existingHolder() public {
        _snapshot("FriendtechSharesV1", _friendtech(), 2);
    }

    function test_gas_friendtech_buy5_newHolder() public {
        _snapshot("FriendtechSharesV1", _friendtech(), 3);
    }

    function test_gas_friendtech_sell1_keepSome() public {
        _snapshot("FriendtechSharesV1", _friendtech(), 4);
    }

    function test_gas_friendtech_sell_lastKey() public {
        _snapshot("FriendtechSharesV1", _friendtech(), 5);
    }

    /// @notice Issue #2's bar: each case costs at most 85% of friend.tech's, both measured in this run.
    function test_gas_atMost85PercentOfFriendtech() public {
        for (uint256 i = 0; i < 6; i++) {
            uint256 ours = _measure(_keyMarket(), i);
            uint256 theirs = _measure(_friendtech(), i);
            vm.snapshotValue("KeyMarketVsFriendtechPermille", NAMES[i], ours * 1000 / theirs);
            vm.assertLe(ours * 100, theirs * 85, NAMES[i]);
        }
    }
}
