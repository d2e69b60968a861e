// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Test} from "../utils/Test.sol";
import {KeyMarket} from "../../src/KeyMarket.sol";
import {Handler} from "./Handler.sol";

/// @notice A fee destination that refuses ETH, so deferred payments are exercised too.
contract RefusingDestination {
    receive() external payable {
        revert();
    }
}

/// @notice Invariants of KeyMarket under random trading by many traders over many subjects.
contract KeyMarketInvariantTest is Test {
    KeyMarket internal market;
    Handler internal handler;
    address[] internal actors;
    address[] internal subjects;
    address internal destination;

    function setUp() public {
        for (uint256 i = 0; i < 6; i++) {
            actors.push(vm.addr(1000 + i));
        }
        for (uint256 i = 0; i < 4; i++) {
            subjects.push(vm.addr(2000 + i));
        }
        // Half the runs' setups would be the same; a refusing destination covers deferred pushes.
        destination = address(new RefusingDestination());
        market = new KeyMarket(address(this), destination, 0.05 ether, 0.05 ether, 2_500);
        handler = new Handler(market, actors, subjects);
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// @notice The contract's ETH equals the curve reserve of all outstanding keys plus every
    /// withdrawable balance, to the wei.
    function invariant_balanceEqualsReservePlusWithdrawable() public view {
        uint256 owed;
        uint256 reserve;
        for (uint256 i = 0; i < subjects.length; i++) {
            address s = subjects[i];
            reserve += market.getPriceOnCurve(market.subjectCurve(s), 0, market.sharesSupply(s));
            owed += market.withdrawable(s);
        }
        for (uint256 i = 0; i < actors.length; i++) {
            owed += market.withdrawable(actors[i]);
        }
        owed += market.withdrawable(destination);
        vm.assertEq(address(market).balance, reserve + owed, "balance == reserve + withdrawable");
    }

    /// @notice Each subject's supply equals the sum of its holders' balances.
    function invariant_supplyEqualsSumOfBalances() public view {
        for (uint256 i = 0; i < subjects.length; i++) {
            address s = subjects[i];
            uint256 sum = market.sharesBalance(s, s);
            for (uint256 j = 0; j < actors.length; j++) {
                sum += market.sharesBalance(s, actors[j]);
            }
            vm.assertEq(market.sharesSupply(s), sum, "supply == sum of balances");
        }
    }

    /// @notice A buy followed by a sell of the same keys never returns more than was paid.
    function invariant_roundTripNeverProfits() public view {
        vm.assertEq(handler.ghostRoundTripProfit(), 0, "no round-trip profit");
    }
}
