// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title FriendtechLayout
/// @notice A market with friend.tech's trading surface and behaviour, written here from its
/// published formula and ABI, so keymarket's tools (the trading CLI, the indexer) can be tested
/// against a friend.tech-shaped market on a local chain. Do not deploy it for real trading: it
/// keeps friend.tech's flaws on purpose — no slippage bound, no deadline, any ETH sent above the
/// cost is kept, fees are pushed to the fee destination and the subject on every trade.
contract FriendtechLayout {
    /// @notice Receives the protocol fee of every trade.
    address public protocolFeeDestination;
    /// @notice Protocol fee, 1e18 = 100%.
    uint256 public protocolFeePercent;
    /// @notice Subject fee, 1e18 = 100%.
    uint256 public subjectFeePercent;

    /// @notice Keys of a subject held by a holder.
    mapping(address subject => mapping(address holder => uint256)) public sharesBalance;
    /// @notice Keys of a subject in existence.
    mapping(address subject => uint256) public sharesSupply;

    /// @notice friend.tech's event, field for field; nothing indexed.
    event Trade(
        address trader,
        address subject,
        bool isBuy,
        uint256 shareAmount,
        uint256 ethAmount,
        uint256 protocolEthAmount,
        uint256 subjectEthAmount,
        uint256 supply
    );

    /// @param feeDestination Receives protocol fees.
    /// @param protocolPct Protocol fee, 1e18 = 100%.
    /// @param subjectPct Subject fee, 1e18 = 100%.
    constructor(address feeDestination, uint256 protocolPct, uint256 subjectPct) {
        protocolFeeDestination = feeDestination;
        protocolFeePercent = protocolPct;
        subjectFeePercent = subjectPct;
    }

    /// @notice Price of `amount` keys starting at `supply`: Σ s² / 16000 ether over the keys.
    function getPrice(uint256 supply, uint256 amount) public pure returns (uint256) {
        return (_squares(supply + amount) - _squares(supply)) * 1 ether / 16000;
    }

    /// @notice Price before fees of buying `amount` keys of `subject`.
    function getBuyPrice(address subject, uint256 amount) public view returns (uint256) {
        return getPrice(sharesSupply[subject], amount);
    }

    /// @notice Price before fees of selling `amount` keys of `subject`.
    function getSellPrice(address subject, uint256 amount) public view returns (uint256) {
        return getPrice(sharesSupply[subject] - amount, amount);
    }

    /// @notice What a buy costs, fees included.
    function getBuyPriceAfterFee(address subject, uint256 amount) external view returns (uint256) {
        uint256 price = getBuyPrice(subject, amount);
        return price + _fee(price, protocolFeePercent) + _fee(price, subjectFeePercent);
    }

    /// @notice What a sell pays out, fees deducted.
    function getSellPriceAfterFee(address subject, uint256 amount) external view returns (uint256) {
        uint256 price = getSellPrice(subject, amount);
        return price - _fee(price, protocolFeePercent) - _fee(price, subjectFeePercent);
    }

    /// @notice Buys `amount` keys of `subject`; the first key only by the subject. ETH sent above
    /// the cost is kept, as on friend.tech.
    function buyShares(address subject, uint256 amount) external payable {
        uint256 supply = sharesSupply[subject];
        require(supply > 0 || subject == msg.sender, "Only the shares' subject can buy the first share");
        uint256 price = getPrice(supply, amount);
        uint256 protocolFee = _fee(price, protocolFeePercent);
        uint256 subjectFee = _fee(price, subjectFeePercent);
        require(msg.value >= price + protocolFee + subjectFee, "Insufficient payment");
        sharesBalance[subject][msg.sender] += amount;
        sharesSupply[subject] = supply + amount;
        emit Trade(msg.sender, subject, true, amount, price, protocolFee, subjectFee, supply + amount);
        _push(protocolFeeDestination, protocolFee);
        _push(subject, subjectFee);
    }

    /// @notice Sells `amount` keys of `subject`; the last key can never be sold.
    function sellShares(address subject, uint256 amount) external payable {
        uint256 supply = sharesSupply[subject];
        require(supply > amount, "Cannot sell the last share");
        require(sharesBalance[subject][msg.sender] >= amount, "Insufficient shares");
        uint256 price = getPrice(supply - amount, amount);
        uint256 protocolFee = _fee(price, protocolFeePercent);
        uint256 subjectFee = _fee(price, subjectFeePercent);
        sharesBalance[subject][msg.sender] -= amount;
        sharesSupply[subject] = supply - amount;
        emit Trade(msg.sender, subject, false, amount, price, protocolFee, subjectFee, supply - amount);
        _push(msg.sender, price - protocolFee - subjectFee);
        _push(protocolFeeDestination, protocolFee);
        _push(subject, subjectFee);
    }

    /// Σ_{i=1}^{n-1} i², the keys below supply n (0 for n = 0).
    function _squares(uint256 n) private pure returns (uint256) {
        return n == 0 ? 0 : (n - 1) * n * (2 * (n - 1) + 1) / 6;
    }

    function _fee(uint256 price, uint256 pct) private pure returns (uint256) {
        return price * pct / 1 ether;
    }

    function _push(address to, uint256 value) private {
        (bool ok,) = to.call{value: value}("");
        require(ok, "Unable to send funds");
    }
}
