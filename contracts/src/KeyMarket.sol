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
/// - protocol fees (minus any referral share) accrue in the fee slot every trade already reads,
///   and anyone sends them to the current fee destination with `flushProtocolFees`, forwarding
///   all gas. A push per trade had to bound the destination's gas (or it could make trading
///   expensive), so a destination needing more gas than the bound, such as a multisig wallet,
///   only ever received credits it might be unable to withdraw: fees stranded. Accruing also
///   removes a cold ETH transfer from every trade (see docs/gas.md);
/// - subject fees accrue in the subject's storage slot and are withdrawn by the subject
///   (`withdraw`/`withdrawTo`), so no subject can block trading in its keys;
/// - referral fees are credited to the referrer, withdrawn like subject fees;
/// - sale proceeds and refunds are pushed to the caller and credited if the caller cannot receive.
/// All state is written before any external call, and every trading and payment entry point
/// holds a transient reentrancy guard.
///
/// Second safety pass (issue #15):
/// - referrals are capped at `MAX_REFERRAL_SHARE_BPS` of the protocol fee, can name neither the
///   buyer, nor the subject, nor the market, and are bound to the trader at their first referred
///   buy (see `buySharesBounded`), so a trader or a subject cannot claw back protocol fees by
///   naming a referrer of their own per trade;
/// - protocol fees accrue and are flushed (above);
/// - fee increases wait `FEE_INCREASE_DELAY` (decreases apply at once), so an owner cannot raise a
///   fee in front of pending trades;
/// - a subject's first buy must move at least one key, so no `Trade` event announces a subject
///   with zero supply;
/// - ownership cannot be renounced;
/// - `quoteBuy`/`quoteSell` quote on the subject's curve, while `getPrice` stays friend.tech's
///   standard-curve formula.
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

    /// @notice The cap on the referrer's share of the protocol fee: 25% (2,500 bps), so the
    /// protocol always keeps at least 75% of its fee. An uncapped share let any trader route the
    /// whole protocol fee back to an address of their own by naming it as referrer.
    uint256 public constant MAX_REFERRAL_SHARE_BPS = 2_500;

    /// @notice How long a fee increase waits between being scheduled and taking effect. Traders
    /// see the `FeeIncreaseScheduled` event a day ahead, so an owner cannot raise a fee in front of
    /// trades already sent (a sell has no bound on the fee it pays; a buy's bound would merely
    /// make it revert). Decreases only ever help traders and apply at once.
    uint256 public constant FEE_INCREASE_DELAY = 24 hours;

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

    /// @dev The one fee slot read and written by every trade (one SLOAD and one SSTORE), packed
    /// by hand: bits 0..47 protocol fee units | 48..95 subject fee units | 96..143 the time the
    /// earliest scheduled increase is due (0: none) | 144..255 accrued protocol fees in wei (not
    /// yet flushed; 112 bits hold 5 × 10^15 ETH). Units are `FEE_UNIT`s of 1e18 = 100%. A trade
    /// reads the scheduled increases only once one is due, so a trade costs the same as before
    /// until then.
    uint256 internal _feeState;

    uint256 internal constant _SUBJECT_UNITS_SHIFT = 48;
    uint256 internal constant _DUE_SHIFT = 96;
    uint256 internal constant _ACCRUED_SHIFT = 144;
    uint256 internal constant _MASK48 = type(uint48).max;

    /// @dev The protocol fee destination, in a slot of its own: read only by flushes and admin,
    /// never by a trade.
    address internal _feeDestination;

    /// @dev The referrer's share of the protocol fee, in basis points; read only by referred buys.
    uint256 internal _referralShareBps;

    /// @dev A fee increase waiting for its time; `effectiveAt == 0` means none. Read by a trade
    /// only once one is due (the fee slot says when).
    struct PendingFeeIncrease {
        uint48 units;
        uint48 effectiveAt;
    }

    /// @dev [0] the protocol fee, [1] the subject fee.
    PendingFeeIncrease[2] internal _pendingIncreases;

    /// @dev Each trader's referrer, bound at their first referred buy.
    mapping(address trader => address referrer) internal _referrers;

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
    /// @param referralShareBps The referrer's share of the protocol fee, in basis points, at most
    /// `MAX_REFERRAL_SHARE_BPS`.
    /// @dev The initial fees apply at once: no trade can have been sent against other fees.
    constructor(
        address owner_,
        address feeDestination,
        uint256 protocolFeePercent_,
        uint256 subjectFeePercent_,
        uint256 referralShareBps
    ) Ownable(owner_) {
        _setFeeDestination(feeDestination);
        _writeFeeUnits(true, _toFeeUnits(protocolFeePercent_));
        _writeFeeUnits(false, _toFeeUnits(subjectFeePercent_));
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
        // The buyer, the subject (who already earns the subject fee) and the market (whose credit
        // nobody could withdraw) are never referrers: such a referrer is ignored — no referral
        // paid, nothing bound — rather than failing the buy, so that a front end's default
        // referrer (its own address, on its own keys too) never fails its users' trades.
        if (referrer == msg.sender || referrer == subject || referrer == address(this)) referrer = address(0);
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
        (uint256 price, uint256 protocolFee, uint256 subjectFee, uint256 feeState, uint256 newSupply) =
            _recordBuy(subject, amount);
        uint256 cost = price + protocolFee + subjectFee;
        // The bound first: a bounded buy usually sends exactly its bound, so a price that moved past
        // it is reported as such rather than as a short payment.
        if (cost > maxCost) revert MaxCostExceeded(cost, maxCost);
        if (msg.value < cost) revert InsufficientPayment(cost, msg.value);
        // A buy naming no referrer reads no referral storage.
        if (referrer == address(0)) {
            _accrueProtocolFee(feeState, protocolFee);
            emit Trade(msg.sender, subject, true, amount, price, protocolFee, subjectFee, newSupply);
        } else {
            (uint256 referralFee, address paid, bool bound) = _payReferral(referrer, subject, protocolFee);
            unchecked {
                _accrueProtocolFee(feeState, protocolFee - referralFee); // at most 25% of it
            }
            // The trade first, then what it caused: a consumer reading the logs in order meets the
            // trade before its referral.
            emit Trade(msg.sender, subject, true, amount, price, protocolFee, subjectFee, newSupply);
            if (bound) emit ReferrerBound(msg.sender, paid);
            if (referralFee != 0) emit ReferralFeePaid(paid, msg.sender, subject, referralFee);
        }

        // Interactions, after every state change.
        unchecked {
            uint256 refund = msg.value - cost; // msg.value >= cost checked above
            if (refund != 0) _pushOrCredit(msg.sender, refund);
        }
    }

    /// @dev Checks and records a buy by `msg.sender`; the subject's fee stays in its slot until
    /// withdrawn. Returns the fee slot as read, for the caller to accrue the protocol fee into.
    /// The caller checks the payment (a revert there undoes this).
    function _recordBuy(address subject, uint256 amount)
        internal
        returns (uint256 price, uint256 protocolFee, uint256 subjectFee, uint256 feeState, uint256 newSupply)
    {
        uint256 word = _subjects[subject];
        uint256 supply = _supplyOf(word);
        if (supply == 0) {
            if (subject != msg.sender) revert OnlySubjectCanBuyFirstKey();
            // A first buy of zero keys would emit a `Trade` for a subject that still has no key (a
            // phantom subject for indexers) without creating it; friend.tech reverts there too.
            if (amount == 0) revert ZeroAmount();
        }
        newSupply = supply + amount;
        if (newSupply > _MASK64) revert SupplyOverflow();
        uint8 curve = _curveOf(word);
        price = _price(curve, supply, amount);
        feeState = _feeState;
        (protocolFee, subjectFee) = _feesOf(_inForce(feeState), price);

        uint256 selfBalance = _selfBalanceOf(word);
        if (subject == msg.sender) {
            selfBalance += amount; // <= newSupply, so it fits in 64 bits
        } else {
            unchecked {
                _balances[subject][msg.sender] += amount; // <= newSupply < 2^64
            }
        }
        _subjects[subject] = _pack(newSupply, selfBalance, curve, _pendingFeesOf(word) + subjectFee);
        if (supply == 0) emit SubjectCreated(subject, curve);
    }

    function _sell(address subject, uint256 amount, uint256 minProceeds) internal {
        (uint256 price, uint256 protocolFee, uint256 subjectFee, uint256 feeState, uint256 newSupply) =
            _recordSell(subject, amount);
        uint256 proceeds;
        unchecked {
            // Each fee is at most 10% of the price, so this cannot underflow.
            proceeds = price - protocolFee - subjectFee;
        }
        if (proceeds < minProceeds) revert MinProceedsNotMet(proceeds, minProceeds);
        _accrueProtocolFee(feeState, protocolFee);
        emit Trade(msg.sender, subject, false, amount, price, protocolFee, subjectFee, newSupply);

        // Interactions, after every state change.
        if (proceeds != 0) _pushOrCredit(msg.sender, proceeds);
    }

    /// @dev Checks and records a sell by `msg.sender` (friend.tech's order of checks: last key, then balance).
    function _recordSell(address subject, uint256 amount)
        internal
        returns (uint256 price, uint256 protocolFee, uint256 subjectFee, uint256 feeState, uint256 newSupply)
    {
        uint256 word = _subjects[subject];
        uint256 supply = _supplyOf(word);
        if (supply <= amount) revert CannotSellLastKey(supply, amount);
        unchecked {
            newSupply = supply - amount;
        }
        uint8 curve = _curveOf(word);
        price = _price(curve, newSupply, amount);
        feeState = _feeState;
        (protocolFee, subjectFee) = _feesOf(_inForce(feeState), price);

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

    /// @dev A referred buy (`referrer` nonzero, already checked to be neither the buyer, nor the
    /// subject, nor the market): binds `referrer` to the buyer if none is bound yet — unless it is
    /// the protocol fee destination, which is ignored (the protocol would pay itself a referral,
    /// credited where a destination without a way to call the market could never withdraw it) —
    /// then credits the BOUND referrer its share of `protocolFee`, unless the bound referrer is
    /// this buy's subject (who would otherwise take both the subject fee and a cut of the protocol
    /// fee on its own keys). Binding for good stops a trader from naming a fresh address of their
    /// own on every trade; not reverting when another referrer is named keeps a UI's default
    /// referrer from ever failing a trade. Returns the referral fee credited (at most 25% of
    /// `protocolFee`), to whom, and whether this buy bound it; the caller emits the events after
    /// the `Trade`.
    function _payReferral(address referrer, address subject, uint256 protocolFee)
        internal
        returns (uint256 referralFee, address paid, bool bound)
    {
        paid = _referrers[msg.sender];
        if (paid == address(0)) {
            // Read only here, at binding: a buy by an already bound trader never reads it. (A
            // bound referrer that later becomes the destination keeps earning: a known limit.)
            if (referrer == _feeDestination) return (0, address(0), false);
            paid = referrer;
            bound = true;
            _referrers[msg.sender] = referrer;
        } else if (paid == subject) {
            return (0, paid, false);
        }
        // At most 25% of the fee (`MAX_REFERRAL_SHARE_BPS`).
        referralFee = protocolFee * _referralShareBps / 10_000;
        if (referralFee != 0) _credits[paid] += referralFee;
    }

    /// @dev Adds `amount` to the accrued protocol fees in `feeState` (the fee slot as read by this
    /// trade) and writes the slot back: the trade's only SSTORE of it. Reverts rather than
    /// truncate if the total would not fit its 112 bits.
    function _accrueProtocolFee(uint256 feeState, uint256 amount) internal {
        if (amount == 0) return;
        uint256 accrued = (feeState >> _ACCRUED_SHIFT) + amount;
        if (accrued > type(uint112).max) revert ProtocolFeesOverflow();
        _feeState = (feeState & ((uint256(1) << _ACCRUED_SHIFT) - 1)) | (accrued << _ACCRUED_SHIFT);
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

    /// @inheritdoc IKeyMarket
    /// @dev Permissionless, so the fees reach the destination even if nobody there can call the
    /// market; all gas is forwarded, so a destination with a costly receive hook (a multisig
    /// wallet) is paid; the fees go to the destination set when the flush runs.
    function flushProtocolFees() external nonReentrant returns (uint256 amount) {
        uint256 feeState = _feeState;
        amount = feeState >> _ACCRUED_SHIFT;
        if (amount == 0) revert NothingToWithdraw();
        _feeState = feeState & ((uint256(1) << _ACCRUED_SHIFT) - 1);
        address destination = _feeDestination;
        emit ProtocolFeesFlushed(destination, amount);
        if (!_trySend(destination, amount, gasleft())) revert WithdrawalFailed(destination, amount);
    }

    /// @dev Sends `amount` to `to` with all gas; if the transfer fails, credits it as a withdrawable
    /// balance.
    function _pushOrCredit(address to, uint256 amount) internal {
        if (!_trySend(to, amount, gasleft())) {
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
    function getBuyPriceAfterFee(address subject, uint256 amount) external view returns (uint256 total) {
        (,,, total) = quoteBuy(subject, amount);
    }

    /// @inheritdoc IKeyMarket
    function getSellPriceAfterFee(address subject, uint256 amount) external view returns (uint256 proceeds) {
        (,,, proceeds) = quoteSell(subject, amount);
    }

    /// @inheritdoc IKeyMarket
    /// @dev `getPrice(supply, amount)` is friend.tech's standard curve for every subject; this
    /// prices on the subject's own curve (10× for a steep subject) and adds the fees in force.
    function quoteBuy(address subject, uint256 amount)
        public
        view
        returns (uint256 price, uint256 protocolFee, uint256 subjectFee, uint256 total)
    {
        price = getBuyPrice(subject, amount);
        (protocolFee, subjectFee) = _feesOf(_inForce(_feeState), price);
        total = price + protocolFee + subjectFee;
    }

    /// @inheritdoc IKeyMarket
    function quoteSell(address subject, uint256 amount)
        public
        view
        returns (uint256 price, uint256 protocolFee, uint256 subjectFee, uint256 proceeds)
    {
        price = getSellPrice(subject, amount);
        (protocolFee, subjectFee) = _feesOf(_inForce(_feeState), price);
        proceeds = price - protocolFee - subjectFee;
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

    /// @dev friend.tech's fee arithmetic, `price * percent / 1 ether` rounded down, from the fee
    /// slot `feeState` (one SLOAD by the caller).
    function _feesOf(uint256 feeState, uint256 price) internal pure returns (uint256 protocolFee, uint256 subjectFee) {
        uint256 protocolUnits = feeState & _MASK48;
        uint256 subjectUnits = (feeState >> _SUBJECT_UNITS_SHIFT) & _MASK48;
        // Checked: a view may price an absurd amount whose fee product would overflow.
        protocolFee = price * (protocolUnits * FEE_UNIT) / 1 ether;
        subjectFee = price * (subjectUnits * FEE_UNIT) / 1 ether;
    }

    /// @dev The fee slot with the fees in force now: a scheduled increase counts from its
    /// `effectiveAt`, whether or not `applyFeeIncrease` has written it down. Reads the scheduled
    /// increases only when the slot says one is due (a comparison otherwise).
    function _inForce(uint256 feeState) internal view returns (uint256) {
        uint256 due = (feeState >> _DUE_SHIFT) & _MASK48;
        if (due == 0 || due > block.timestamp) return feeState;
        for (uint256 i = 0; i < 2; i++) {
            PendingFeeIncrease memory p = _pendingIncreases[i];
            if (p.effectiveAt != 0 && p.effectiveAt <= block.timestamp) {
                uint256 shift = i == 0 ? 0 : _SUBJECT_UNITS_SHIFT;
                feeState = (feeState & ~(_MASK48 << shift)) | (uint256(p.units) << shift);
            }
        }
        return feeState;
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

    /// @inheritdoc IKeyMarket
    function referrerOf(address trader) external view returns (address) {
        return _referrers[trader];
    }

    /// @inheritdoc IKeyMarket
    function accruedProtocolFees() external view returns (uint256) {
        return _feeState >> _ACCRUED_SHIFT;
    }

    /// @inheritdoc IKeyMarket
    function pendingProtocolFeeIncrease() external view returns (uint256 percent, uint256 effectiveAt) {
        return _pendingIncrease(true);
    }

    /// @inheritdoc IKeyMarket
    function pendingSubjectFeeIncrease() external view returns (uint256 percent, uint256 effectiveAt) {
        return _pendingIncrease(false);
    }

    function _pendingIncrease(bool protocol) internal view returns (uint256 percent, uint256 effectiveAt) {
        PendingFeeIncrease storage p = _pendingIncreases[protocol ? 0 : 1];
        return (uint256(p.units) * FEE_UNIT, p.effectiveAt);
    }

    /// @notice The protocol fee destination.
    function protocolFeeDestination() external view returns (address) {
        return _feeDestination;
    }

    /// @notice The protocol fee percent in force, 1e18 = 100%: a scheduled increase counts from
    /// its `effectiveAt`, applied or not.
    function protocolFeePercent() external view returns (uint256) {
        return (_inForce(_feeState) & _MASK48) * FEE_UNIT;
    }

    /// @notice The subject fee percent in force, 1e18 = 100% (as `protocolFeePercent`).
    function subjectFeePercent() external view returns (uint256) {
        return ((_inForce(_feeState) >> _SUBJECT_UNITS_SHIFT) & _MASK48) * FEE_UNIT;
    }

    /// @notice The referrer's share of the protocol fee, in basis points.
    function referralFeeShare() external view returns (uint256) {
        return _referralShareBps;
    }

    /*//////////////////////////////////////////////////////////////
                                  ADMIN
    //////////////////////////////////////////////////////////////*/

    /// @notice Sets the protocol fee destination. Fees already accrued go to whichever
    /// destination is set when they are flushed.
    /// @param destination The new destination; neither the zero address (fees sent there would be
    /// burnt) nor the market itself (a flush would send the fees back to the market, where no
    /// account could withdraw them).
    function setFeeDestination(address destination) external onlyOwner {
        _setFeeDestination(destination);
    }

    /// @notice Sets the protocol fee percent (1e18 = 100%), at most `MAX_FEE_PERCENT`. A decrease
    /// or the current value applies at once and cancels any scheduled increase; an increase is
    /// scheduled for `FEE_INCREASE_DELAY` from now (replacing any scheduled one, a due one first
    /// written down as in force) and counts from then in every trade and quote, so traders see it
    /// coming and nobody can choose the moment it starts.
    /// @param percent The new percent.
    function setProtocolFeePercent(uint256 percent) external onlyOwner {
        _setFeePercent(true, percent);
    }

    /// @notice Sets the subject fee percent (1e18 = 100%), at most `MAX_FEE_PERCENT`, with the same
    /// rules as `setProtocolFeePercent`: decreases at once, increases after `FEE_INCREASE_DELAY`.
    /// @param percent The new percent.
    function setSubjectFeePercent(uint256 percent) external onlyOwner {
        _setFeePercent(false, percent);
    }

    /// @inheritdoc IKeyMarket
    /// @dev Permissionless and without effect on any trade: a due increase is already in force
    /// from its `effectiveAt` (see `_inForce`); this only writes it down (and emits the
    /// `*FeePercentUpdated` event).
    function applyFeeIncrease() external nonReentrant {
        if (!_writeDownDue()) revert NoFeeIncreaseDue();
    }

    /// @dev Writes the due scheduled increases into the fee slot as the fees in force; whether
    /// there was one.
    function _writeDownDue() internal returns (bool applied) {
        for (uint256 i = 0; i < 2; i++) {
            PendingFeeIncrease memory p = _pendingIncreases[i];
            if (p.effectiveAt != 0 && p.effectiveAt <= block.timestamp) {
                delete _pendingIncreases[i];
                _writeFeeUnits(i == 0, p.units);
                applied = true;
            }
        }
        if (applied) _writeNextDue();
    }

    /// @dev Records in the fee slot when the earliest scheduled increase is due (0: none).
    function _writeNextDue() internal {
        uint256 a = _pendingIncreases[0].effectiveAt;
        uint256 b = _pendingIncreases[1].effectiveAt;
        uint256 next = a == 0 ? b : (b == 0 || a < b ? a : b);
        _feeState = (_feeState & ~(_MASK48 << _DUE_SHIFT)) | (next << _DUE_SHIFT);
    }

    /// @notice Sets the referrer's share of the protocol fee, in basis points, at most
    /// `MAX_REFERRAL_SHARE_BPS`.
    /// @param bps The new share.
    function setReferralFeeShare(uint256 bps) external onlyOwner {
        _setReferralFeeShare(bps);
    }

    /// @notice Disabled: always reverts with `RenounceOwnershipDisabled`. Without an owner, fees
    /// could never be lowered again, the destination never moved (say, off a compromised wallet)
    /// and the referral share never changed: the settings would be frozen forever. Ownership can
    /// still be transferred in two steps.
    function renounceOwnership() public pure override {
        revert RenounceOwnershipDisabled();
    }

    function _setFeeDestination(address destination) internal {
        if (destination == address(0)) revert ZeroAddress();
        if (destination == address(this)) revert InvalidFeeDestination(destination);
        emit FeeDestinationUpdated(_feeDestination, destination);
        _feeDestination = destination;
    }

    /// @dev Applies a decrease (or the current value) at once, cancelling a scheduled increase of
    /// the same fee; schedules an increase. Both events let an indexer track the pending state:
    /// every `*FeePercentUpdated` of a fee clears its scheduled increase.
    function _setFeePercent(bool protocol, uint256 percent) internal {
        uint48 units = _toFeeUnits(percent);
        // A due increase is in force already: written down first, so that "current" is the fee
        // trades pay now.
        _writeDownDue();
        uint256 current = (_feeState >> (protocol ? 0 : _SUBJECT_UNITS_SHIFT)) & _MASK48;
        PendingFeeIncrease storage pending = _pendingIncreases[protocol ? 0 : 1];
        if (units > current) {
            uint256 effectiveAt = block.timestamp + FEE_INCREASE_DELAY;
            pending.units = units;
            pending.effectiveAt = uint48(effectiveAt); // fits for ~8.9 million years
            emit FeeIncreaseScheduled(protocol, current * FEE_UNIT, percent, effectiveAt);
        } else {
            if (pending.effectiveAt != 0) delete _pendingIncreases[protocol ? 0 : 1];
            _writeFeeUnits(protocol, units);
        }
        _writeNextDue();
    }

    /// @dev Writes a fee percent into the fee slot, keeping the other fee and the accrued fees.
    function _writeFeeUnits(bool protocol, uint256 units) internal {
        uint256 shift = protocol ? 0 : _SUBJECT_UNITS_SHIFT;
        uint256 feeState = _feeState;
        uint256 previous = (feeState >> shift) & _MASK48;
        _feeState = (feeState & ~(_MASK48 << shift)) | (units << shift);
        if (protocol) emit ProtocolFeePercentUpdated(previous * FEE_UNIT, units * FEE_UNIT);
        else emit SubjectFeePercentUpdated(previous * FEE_UNIT, units * FEE_UNIT);
    }

    function _setReferralFeeShare(uint256 bps) internal {
        if (bps > MAX_REFERRAL_SHARE_BPS) revert ReferralShareTooHigh(bps);
        emit ReferralFeeShareUpdated(_referralShareBps, bps);
        _referralShareBps = bps;
    }

    function _toFeeUnits(uint256 percent) internal pure returns (uint48) {
        if (percent > MAX_FEE_PERCENT) revert FeeTooHigh(percent, MAX_FEE_PERCENT);
        if (percent % FEE_UNIT != 0) revert FeeNotMultipleOfUnit(percent);
        return uint48(percent / FEE_UNIT); // at most 1e11 < 2^48
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
    /// here (`SubjectFeesOverflow`), because a silent truncation would lose a subject's money.
    function _pack(uint256 supply, uint256 selfBalance, uint8 curve, uint256 pendingFees)
        internal
        pure
        returns (uint256)
    {
        if (pendingFees >= uint256(1) << (256 - _FEES_SHIFT)) revert SubjectFeesOverflow();
        return supply | (selfBalance << _SELF_SHIFT) | (uint256(curve) << _CURVE_SHIFT) | (pendingFees << _FEES_SHIFT);
    }
}
