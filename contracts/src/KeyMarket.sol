// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IKeyMarket} from "./interfaces/IKeyMarket.sol";

/// @title KeyMarket
/// @notice friend.tech's key market with its failures fixed. Prices and fees equal
/// FriendtechSharesV1's to the wei for the same fee settings; the trading ABI and the `Trade`
/// event are identical.
/// @dev Payments:
/// - the protocol fee is pushed to the fee destination with a bounded gas stipend; if that
///   transfer fails, it is credited to the destination instead, so no destination can block trading;
/// - subject fees accrue in the subject's storage slot and are withdrawn by the subject
///   (`withdraw`/`withdrawTo`), so no subject can block trading in its keys;
/// - sale proceeds and refunds are pushed to the caller and credited if the caller cannot receive.
/// All state is written before any external call, and every entry point holds a transient
/// reentrancy guard.
contract KeyMarket is IKeyMarket, Ownable2Step, ReentrancyGuardTransient {
    /*//////////////////////////////////////////////////////////////
                                CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice The cap on each of the protocol and subject fee percents: 10% (1e18 = 100%).
    uint256 public constant MAX_FEE_PERCENT = 0.1 ether;

    /// @notice Fee percents are stored in units of 1e6 (1e-12), so they must be multiples of it.
    uint256 public constant FEE_UNIT = 1e6;

    /// @notice Curve id of friend.tech's standard curve: price(s) = s² / 16000 ether.
    uint8 public constant CURVE_STANDARD = 0;

    /// @notice Curve id of the steep curve (friend.tech v2 clubs style): price(s) = s² / 1600 ether.
    uint8 public constant CURVE_STEEP = 1;

    /// @dev Gas forwarded with a protocol-fee push: enough for a smart-wallet receive hook, too
    /// little for a recipient to make trades expensive.
    uint256 internal constant PUSH_GAS = 30_000;

    /*//////////////////////////////////////////////////////////////
                                 STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev One slot per subject holds everything a trade in its keys reads and writes, packed by
    /// hand so that a trade costs exactly one SLOAD and one SSTORE of it:
    /// bits 0..63 supply | 64..127 the subject's own balance | 128..135 curve | 136..255 pending
    /// subject fees (earned, not yet withdrawn).
    uint256 internal constant _SELF_SHIFT = 64;
    uint256 internal constant _CURVE_SHIFT = 128;
    uint256 internal constant _FEES_SHIFT = 136;
    uint256 internal constant _MASK64 = type(uint64).max;

    /// @dev One slot read by every trade.
    struct FeeConfig {
        address destination;
        uint48 protocolFeeUnits;
        uint48 subjectFeeUnits;
    }

    FeeConfig internal _fees;

    /// @dev The referrer's share of the protocol fee, in basis points.
    uint256 internal _referralShareBps;

    mapping(address subject => uint256 packed) internal _subjects;

    /// @dev Balances of holders other than the subject itself.
    mapping(address subject => mapping(address holder => uint256)) internal _balances;

    /// @dev Withdrawable ETH other than subject fees: referral fees and deferred payments.
    mapping(address account => uint256) internal _credits;

    /*//////////////////////////////////////////////////////////////
                               CONSTRUCTOR
    //////////////////////////////////////////////////////////////*/

    /// @param owner_ The owner (fee settings); ownership moves in two steps.
    /// @param feeDestination The protocol fee destination.
    /// @param protocolFeePercent_ The protocol fee, 1e18 = 100%, at most 10%.
    /// @param subjectFeePercent_ The subject fee, 1e18 = 100%, at most 10%.
    /// @param referralShareBps The referrer's share of the protocol fee, in basis points.
    constructor(
        address owner_,
        address feeDestination,
        uint256 protocolFeePercent_,
        uint256 subjectFeePercent_,
        uint256 referralShareBps
    ) Ownable(owner_) {
        _setFeeDestination(feeDestination);
        _setProtocolFeePercent(protocolFeePercent_);
        _setSubjectFeePercent(subjectFeePercent_);
        _setReferralFeeShare(referralShareBps);
    }

    /*//////////////////////////////////////////////////////////////
                                 TRADING
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IKeyMarket
    function buyShares(address subject, uint256 amount) external payable nonReentrant {
        _buy(subject, amount, type(uint256).max, address(0));
    }

    /// @inheritdoc IKeyMarket
    function sellShares(address subject, uint256 amount) external nonReentrant {
        _sell(subject, amount, 0);
    }

    /// @inheritdoc IKeyMarket
    function buySharesBounded(address subject, uint256 amount, uint256 maxCost, address referrer, uint256 deadline)
        external
        payable
        nonReentrant
    {
        _checkDeadline(deadline);
        if (referrer == msg.sender) revert SelfReferral();
        _buy(subject, amount, maxCost, referrer);
    }

    /// @inheritdoc IKeyMarket
    function sellSharesBounded(address subject, uint256 amount, uint256 minProceeds, uint256 deadline)
        external
        nonReentrant
    {
        _checkDeadline(deadline);
        _sell(subject, amount, minProceeds);
    }

    /// @inheritdoc IKeyMarket
    function buyFirstShares(uint8 curve, uint256 amount) external payable nonReentrant {
        if (curve > CURVE_STEEP) revert InvalidCurve(curve);
        if (amount == 0) revert ZeroAmount();
        uint256 word = _subjects[msg.sender];
        if (_supplyOf(word) != 0) revert SubjectAlreadyExists();
        _subjects[msg.sender] = (word & ~(uint256(0xff) << _CURVE_SHIFT)) | (uint256(curve) << _CURVE_SHIFT);
        _buy(msg.sender, amount, type(uint256).max, address(0));
    }

    function _buy(address subject, uint256 amount, uint256 maxCost, address referrer) internal {
        (uint256 price, uint256 protocolFee, uint256 subjectFee, address destination, uint256 newSupply) =
            _recordBuy(subject, amount);
        uint256 cost = price + protocolFee + subjectFee;
        if (msg.value < cost) revert InsufficientPayment(cost, msg.value);
        if (cost > maxCost) revert MaxCostExceeded(cost, maxCost);
        uint256 toDestination = referrer == address(0) ? protocolFee : _creditReferral(referrer, subject, protocolFee);
        emit Trade(msg.sender, subject, true, amount, price, protocolFee, subjectFee, newSupply);

        // Interactions, after every state change.
        if (toDestination != 0) _pushOrCredit(destination, toDestination, PUSH_GAS);
        unchecked {
            uint256 refund = msg.value - cost; // msg.value >= cost checked above
            if (refund != 0) _pushOrCredit(msg.sender, refund, gasleft());
        }
    }

    /// @dev Checks and records a buy by `msg.sender`; the subject's fee stays in its slot until
    /// withdrawn. The caller checks the payment (a revert there undoes this).
    function _recordBuy(address subject, uint256 amount)
        internal
        returns (uint256 price, uint256 protocolFee, uint256 subjectFee, address destination, uint256 newSupply)
    {
        uint256 word = _subjects[subject];
        uint256 supply = _supplyOf(word);
        if (supply == 0 && subject != msg.sender) revert OnlySubjectCanBuyFirstKey();
        newSupply = supply + amount;
        if (newSupply > _MASK64) revert SupplyOverflow();
        uint8 curve = _curveOf(word);
        price = _price(curve, supply, amount);
        (protocolFee, subjectFee, destination) = _feesOf(price);

        uint256 selfBalance = _selfBalanceOf(word);
        if (subject == msg.sender) {
            selfBalance += amount; // <= newSupply, so it fits in 64 bits
        } else {
            unchecked {
                _balances[subject][msg.sender] += amount; // <= newSupply < 2^64
            }
        }
        _subjects[subject] = _pack(newSupply, selfBalance, curve, _pendingFeesOf(word) + subjectFee);
        if (supply == 0 && amount != 0) emit SubjectCreated(subject, curve);
    }

    function _sell(address subject, uint256 amount, uint256 minProceeds) internal {
        (uint256 price, uint256 protocolFee, uint256 subjectFee, address destination, uint256 newSupply) =
            _recordSell(subject, amount);
        uint256 proceeds;
        unchecked {
            // Each fee is at most 10% of the price, so this cannot underflow.
            proceeds = price - protocolFee - subjectFee;
        }
        if (proceeds < minProceeds) revert MinProceedsNotMet(proceeds, minProceeds);
        emit Trade(msg.sender, subject, false, amount, price, protocolFee, subjectFee, newSupply);

        // Interactions, after every state change.
        if (protocolFee != 0) _pushOrCredit(destination, protocolFee, PUSH_GAS);
        if (proceeds != 0) _pushOrCredit(msg.sender, proceeds, gasleft());
    }

    /// @dev Checks and records a sell by `msg.sender` (friend.tech's order of checks: last key, then balance).
    function _recordSell(address subject, uint256 amount)
        internal
        returns (uint256 price, uint256 protocolFee, uint256 subjectFee, address destination, uint256 newSupply)
    {
        uint256 word = _subjects[subject];
        uint256 supply = _supplyOf(word);
        if (supply <= amount) revert CannotSellLastKey(supply, amount);
        unchecked {
            newSupply = supply - amount;
        }
        uint8 curve = _curveOf(word);
        price = _price(curve, newSupply, amount);
        (protocolFee, subjectFee, destination) = _feesOf(price);

        uint256 selfBalance = _selfBalanceOf(word);
        if (subject == msg.sender) {
            if (selfBalance < amount) revert InsufficientKeys(selfBalance, amount);
            unchecked {
                selfBalance -= amount;
            }
        } else {
            uint256 balance = _balances[subject][msg.sender];
            if (balance < amount) revert InsufficientKeys(balance, amount);
            unchecked {
                _balances[subject][msg.sender] = balance - amount;
            }
        }
        _subjects[subject] = _pack(newSupply, selfBalance, curve, _pendingFeesOf(word) + subjectFee);
    }

    /// @dev Credits the referrer's share of `protocolFee`; returns what is left for the destination.
    function _creditReferral(address referrer, address subject, uint256 protocolFee) internal returns (uint256) {
        uint256 referralFee = protocolFee * _referralShareBps / 10_000;
        if (referralFee == 0) return protocolFee;
        _credits[referrer] += referralFee;
        emit ReferralFeePaid(referrer, msg.sender, subject, referralFee);
        return protocolFee - referralFee;
    }

    function _checkDeadline(uint256 deadline) internal view {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline, block.timestamp);
    }

    /*//////////////////////////////////////////////////////////////
                                PAYMENTS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IKeyMarket
    function withdraw() external nonReentrant returns (uint256 amount) {
        return _withdraw(msg.sender);
    }

    /// @inheritdoc IKeyMarket
    function withdrawTo(address to) external nonReentrant returns (uint256 amount) {
        if (to == address(0)) revert ZeroAddress();
        return _withdraw(to);
    }

    function _withdraw(address to) internal returns (uint256 amount) {
        uint256 word = _subjects[msg.sender];
        amount = _credits[msg.sender] + _pendingFeesOf(word);
        if (amount == 0) revert NothingToWithdraw();
        _credits[msg.sender] = 0;
        _subjects[msg.sender] = word & ((uint256(1) << _FEES_SHIFT) - 1);
        emit Withdrawal(msg.sender, to, amount);
        if (!_trySend(to, amount, gasleft())) revert WithdrawalFailed(to, amount);
    }

    /// @dev Sends `amount` to `to`; if the transfer fails, credits it as a withdrawable balance.
    function _pushOrCredit(address to, uint256 amount, uint256 gasLimit) internal {
        if (!_trySend(to, amount, gasLimit)) {
            _credits[to] += amount;
            emit PaymentDeferred(to, amount);
        }
    }

    /// @dev A plain ETH transfer that copies no return data (no return-bomb griefing).
    function _trySend(address to, uint256 amount, uint256 gasLimit) internal returns (bool ok) {
        assembly ("memory-safe") {
            ok := call(gasLimit, to, amount, 0, 0, 0, 0)
        }
    }

    /*//////////////////////////////////////////////////////////////
                                 PRICES
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IKeyMarket
    function getPrice(uint256 supply, uint256 amount) public pure returns (uint256) {
        return _price(CURVE_STANDARD, supply, amount);
    }

    /// @inheritdoc IKeyMarket
    function getPriceOnCurve(uint8 curve, uint256 supply, uint256 amount) external pure returns (uint256) {
        if (curve > CURVE_STEEP) revert InvalidCurve(curve);
        return _price(curve, supply, amount);
    }

    /// @inheritdoc IKeyMarket
    function getBuyPrice(address subject, uint256 amount) public view returns (uint256) {
        uint256 word = _subjects[subject];
        return _price(_curveOf(word), _supplyOf(word), amount);
    }

    /// @inheritdoc IKeyMarket
    function getSellPrice(address subject, uint256 amount) public view returns (uint256) {
        uint256 word = _subjects[subject];
        uint256 supply = _supplyOf(word);
        if (supply < amount) revert InsufficientSupply(supply, amount);
        return _price(_curveOf(word), supply - amount, amount);
    }

    /// @inheritdoc IKeyMarket
    function getBuyPriceAfterFee(address subject, uint256 amount) external view returns (uint256) {
        uint256 price = getBuyPrice(subject, amount);
        (uint256 protocolFee, uint256 subjectFee,) = _feesOf(price);
        return price + protocolFee + subjectFee;
    }

    /// @inheritdoc IKeyMarket
    function getSellPriceAfterFee(address subject, uint256 amount) external view returns (uint256) {
        uint256 price = getSellPrice(subject, amount);
        (uint256 protocolFee, uint256 subjectFee,) = _feesOf(price);
        return price - protocolFee - subjectFee;
    }

    /// @dev Σ_{i=supply}^{supply+amount-1} i² × 1 ether / divisor, in friend.tech's closed form
    /// (differences of Σ i² = n(n+1)(2n+1)/6), so the result equals friend.tech's to the wei.
    /// Unlike friend.tech, (supply 0, amount 0) prices at 0 instead of underflowing, and supplies
    /// past 2^64 - 1 revert with `SupplyOverflow` instead of a panic.
    function _price(uint8 curve, uint256 supply, uint256 amount) internal pure returns (uint256) {
        if (amount > _MASK64 || supply > _MASK64 - amount) revert SupplyOverflow();
        unchecked {
            // end < 2^64, so n(n+1)(2n+1) < 2^193 and the product with 1 ether < 2^253.
            uint256 end = supply + amount;
            if (end == 0) return 0;
            uint256 sum2 = _sumOfSquares(end - 1);
            uint256 sum1 = supply == 0 ? 0 : _sumOfSquares(supply - 1);
            return (sum2 - sum1) * 1 ether / (curve == CURVE_STEEP ? 1600 : 16000);
        }
    }

    /// @dev Σ_{i=1}^{n} i², for n < 2^64 (callers guarantee it).
    function _sumOfSquares(uint256 n) internal pure returns (uint256) {
        unchecked {
            return n * (n + 1) * (2 * n + 1) / 6;
        }
    }

    /// @dev friend.tech's fee arithmetic, `price * percent / 1 ether` rounded down, from one SLOAD.
    function _feesOf(uint256 price)
        internal
        view
        returns (uint256 protocolFee, uint256 subjectFee, address destination)
    {
        FeeConfig storage fees = _fees;
        (uint256 protocolUnits, uint256 subjectUnits) = (fees.protocolFeeUnits, fees.subjectFeeUnits);
        destination = fees.destination;
        // Checked: a view may price an absurd amount whose fee product would overflow.
        protocolFee = price * (protocolUnits * FEE_UNIT) / 1 ether;
        subjectFee = price * (subjectUnits * FEE_UNIT) / 1 ether;
    }

    /*//////////////////////////////////////////////////////////////
                                  VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IKeyMarket
    function sharesSupply(address subject) external view returns (uint256) {
        return _supplyOf(_subjects[subject]);
    }

    /// @inheritdoc IKeyMarket
    function sharesBalance(address subject, address holder) external view returns (uint256) {
        if (subject == holder) return _selfBalanceOf(_subjects[subject]);
        return _balances[subject][holder];
    }

    /// @inheritdoc IKeyMarket
    function subjectCurve(address subject) external view returns (uint8) {
        return _curveOf(_subjects[subject]);
    }

    /// @inheritdoc IKeyMarket
    function withdrawable(address account) external view returns (uint256) {
        return _credits[account] + _pendingFeesOf(_subjects[account]);
    }

    /// @notice The protocol fee destination.
    function protocolFeeDestination() external view returns (address) {
        return _fees.destination;
    }

    /// @notice The protocol fee percent, 1e18 = 100%.
    function protocolFeePercent() external view returns (uint256) {
        return uint256(_fees.protocolFeeUnits) * FEE_UNIT;
    }

    /// @notice The subject fee percent, 1e18 = 100%.
    function subjectFeePercent() external view returns (uint256) {
        return uint256(_fees.subjectFeeUnits) * FEE_UNIT;
    }

    /// @notice The referrer's share of the protocol fee, in basis points.
    function referralFeeShare() external view returns (uint256) {
        return _referralShareBps;
    }

    /*//////////////////////////////////////////////////////////////
                                  ADMIN
    //////////////////////////////////////////////////////////////*/

    /// @notice Sets the protocol fee destination.
    /// @param destination The new destination; not the zero address.
    function setFeeDestination(address destination) external onlyOwner {
        _setFeeDestination(destination);
    }

    /// @notice Sets the protocol fee percent (1e18 = 100%), at most `MAX_FEE_PERCENT`.
    /// @param percent The new percent.
    function setProtocolFeePercent(uint256 percent) external onlyOwner {
        _setProtocolFeePercent(percent);
    }

    /// @notice Sets the subject fee percent (1e18 = 100%), at most `MAX_FEE_PERCENT`.
    /// @param percent The new percent.
    function setSubjectFeePercent(uint256 percent) external onlyOwner {
        _setSubjectFeePercent(percent);
    }

    /// @notice Sets the referrer's share of the protocol fee, in basis points (at most 10,000).
    /// @param bps The new share.
    function setReferralFeeShare(uint256 bps) external onlyOwner {
        _setReferralFeeShare(bps);
    }

    function _setFeeDestination(address destination) internal {
        if (destination == address(0)) revert ZeroAddress();
        emit FeeDestinationUpdated(_fees.destination, destination);
        _fees.destination = destination;
    }

    function _setProtocolFeePercent(uint256 percent) internal {
        uint48 units = _toFeeUnits(percent);
        emit ProtocolFeePercentUpdated(uint256(_fees.protocolFeeUnits) * FEE_UNIT, percent);
        _fees.protocolFeeUnits = units;
    }

    function _setSubjectFeePercent(uint256 percent) internal {
        uint48 units = _toFeeUnits(percent);
        emit SubjectFeePercentUpdated(uint256(_fees.subjectFeeUnits) * FEE_UNIT, percent);
        _fees.subjectFeeUnits = units;
    }

    function _setReferralFeeShare(uint256 bps) internal {
        if (bps > 10_000) revert ReferralShareTooHigh(bps);
        emit ReferralFeeShareUpdated(_referralShareBps, bps);
        _referralShareBps = bps;
    }

    function _toFeeUnits(uint256 percent) internal pure returns (uint48) {
        if (percent > MAX_FEE_PERCENT) revert FeeTooHigh(percent, MAX_FEE_PERCENT);
        if (percent % FEE_UNIT != 0) revert FeeNotMultipleOfUnit(percent);
        return uint48(percent / FEE_UNIT);
    }

    /*//////////////////////////////////////////////////////////////
                              SUBJECT SLOT
    //////////////////////////////////////////////////////////////*/

    function _supplyOf(uint256 word) internal pure returns (uint256) {
        return word & _MASK64;
    }

    function _selfBalanceOf(uint256 word) internal pure returns (uint256) {
        return (word >> _SELF_SHIFT) & _MASK64;
    }

    function _curveOf(uint256 word) internal pure returns (uint8) {
        return uint8(word >> _CURVE_SHIFT);
    }

    function _pendingFeesOf(uint256 word) internal pure returns (uint256) {
        return word >> _FEES_SHIFT;
    }

    /// @dev `supply` and `selfBalance` are < 2^64 by the callers' checks; pending fees are checked
    /// here, because a silent truncation would lose a subject's money.
    function _pack(uint256 supply, uint256 selfBalance, uint8 curve, uint256 pendingFees)
        internal
        pure
        returns (uint256)
    {
        if (pendingFees >= uint256(1) << (256 - _FEES_SHIFT)) revert SupplyOverflow();
        return supply | (selfBalance << _SELF_SHIFT) | (uint256(curve) << _CURVE_SHIFT) | (pendingFees << _FEES_SHIFT);
    }
}
