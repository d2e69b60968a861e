// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title IKeyMarket
/// @notice A friend.tech-compatible key market: every subject's keys are priced on a bonding
/// curve, traders buy and sell them, and every trade pays a protocol fee and a subject fee.
/// @dev The trading surface (`buyShares`, `sellShares`, the price views, `sharesSupply`,
/// `sharesBalance`) and the `Trade` event are identical to FriendtechSharesV1, so existing
/// friend.tech decoders and bots work unchanged. Everything else is what friend.tech lacked:
/// slippage bounds, deadlines, refunds, pull payments, capped fees, fee increases announced a day
/// ahead, capped and bound referrals, and a choice of curve per subject.
interface IKeyMarket {
    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    /// @notice Thrown when someone other than the subject tries to buy a subject's first key.
    error OnlySubjectCanBuyFirstKey();

    /// @notice Thrown when a sell would take a subject's supply to zero (the last key can never be sold).
    /// @param supply The subject's current supply.
    /// @param amount The number of keys the seller tried to sell.
    error CannotSellLastKey(uint256 supply, uint256 amount);

    /// @notice Thrown when a seller holds fewer keys than they try to sell.
    /// @param balance The seller's balance of the subject's keys.
    /// @param amount The number of keys the seller tried to sell.
    error InsufficientKeys(uint256 balance, uint256 amount);

    /// @notice Thrown when a buy sends less ETH than the price plus fees.
    /// @param required The price plus all fees.
    /// @param sent The ETH sent with the call.
    error InsufficientPayment(uint256 required, uint256 sent);

    /// @notice Thrown when a bounded buy would cost more than the buyer's limit.
    /// @param cost The price plus all fees.
    /// @param maxCost The buyer's limit.
    error MaxCostExceeded(uint256 cost, uint256 maxCost);

    /// @notice Thrown when a bounded sell would pay out less than the seller's limit.
    /// @param proceeds The price minus all fees.
    /// @param minProceeds The seller's limit.
    error MinProceedsNotMet(uint256 proceeds, uint256 minProceeds);

    /// @notice Thrown when a bounded trade is included after its deadline.
    /// @param deadline The last timestamp at which the trade was valid.
    /// @param timestamp The timestamp of the block that tried to include it.
    error DeadlineExpired(uint256 deadline, uint256 timestamp);

    /// @notice Thrown when a subject's supply would exceed the largest supported supply (2^64 - 1).
    error SupplyOverflow();

    /// @notice Thrown when a view asks for the sell price of more keys than exist.
    /// @param supply The subject's current supply.
    /// @param amount The number of keys asked about.
    error InsufficientSupply(uint256 supply, uint256 amount);

    /// @notice Thrown when an owner sets a fee percent above the cap.
    /// @param percent The requested fee, with 1e18 meaning 100%.
    /// @param max The cap, with 1e18 meaning 100%.
    error FeeTooHigh(uint256 percent, uint256 max);

    /// @notice Thrown when a fee percent is not a whole multiple of the stored unit (1e6, i.e. 1e-12).
    /// @param percent The requested fee, with 1e18 meaning 100%.
    error FeeNotMultipleOfUnit(uint256 percent);

    /// @notice Thrown when the referral share of the protocol fee is above `MAX_REFERRAL_SHARE_BPS` (2,500 bps).
    /// @param bps The requested share in basis points.
    error ReferralShareTooHigh(uint256 bps);

    /// @notice Thrown when the zero address is given where an account is required.
    error ZeroAddress();

    /// @notice Thrown when the owner sets the market itself as the protocol fee destination.
    /// @param destination The address refused.
    error InvalidFeeDestination(address destination);

    /// @notice Thrown when `applyFeeIncrease` finds no scheduled fee increase whose time has come.
    error NoFeeIncreaseDue();

    /// @notice Thrown when the accrued protocol fees would no longer fit their 112 bits (5 × 10^15
    /// ETH; they are never truncated).
    error ProtocolFeesOverflow();

    /// @notice A subject's unwithdrawn fees would no longer fit their 120 bits in its slot
    /// (withdraw them first); a truncation would lose the subject's money.
    error SubjectFeesOverflow();

    /// @notice Thrown by `renounceOwnership`, which is disabled: without an owner the fee settings
    /// would be frozen forever.
    error RenounceOwnershipDisabled();

    /// @notice Thrown when an unknown curve id is chosen.
    /// @param curve The curve id given.
    error InvalidCurve(uint8 curve);

    /// @notice Thrown when a subject tries to choose a curve after its first key was bought.
    error SubjectAlreadyExists();

    /// @notice Thrown when a trade that must move keys is asked to move none.
    error ZeroAmount();

    /// @notice Thrown when an account with no withdrawable balance tries to withdraw, or protocol
    /// fees are flushed while none have accrued.
    error NothingToWithdraw();

    /// @notice Thrown when a withdrawal's or a flush's ETH transfer fails (the balance stays
    /// withdrawable, the protocol fees stay accrued).
    /// @param to The recipient that refused the ETH.
    /// @param amount The amount that could not be sent.
    error WithdrawalFailed(address to, uint256 amount);

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Emitted on every buy and sell; identical to friend.tech's event (no field indexed).
    /// @param trader The buyer or seller.
    /// @param subject The subject whose keys were traded.
    /// @param isBuy True for a buy, false for a sell.
    /// @param shareAmount The number of keys traded.
    /// @param ethAmount The price of the keys before fees, in wei.
    /// @param protocolEthAmount The protocol fee, in wei (including any referral share of it).
    /// @param subjectEthAmount The subject fee, in wei.
    /// @param supply The subject's supply after the trade.
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

    /// @notice Emitted when a subject's first key is bought and its curve fixed for good.
    /// @param subject The subject.
    /// @param curve The curve id (0 = standard, friend.tech's s²/16000; 1 = steep, s²/1600).
    event SubjectCreated(address indexed subject, uint8 curve);

    /// @notice Emitted when a referred buy credits the buyer's bound referrer part of the protocol fee.
    /// @param referrer The referrer credited: the one bound to the trader (see `ReferrerBound`),
    /// which may differ from the referrer named in the call.
    /// @param trader The buyer.
    /// @param subject The subject whose keys were bought.
    /// @param amount The referrer's share of the protocol fee, in wei.
    event ReferralFeePaid(address indexed referrer, address indexed trader, address indexed subject, uint256 amount);

    /// @notice Emitted when a trader's first referred buy binds their referrer for good.
    /// @param trader The buyer.
    /// @param referrer The referrer every later referred buy of the trader credits.
    event ReferrerBound(address indexed trader, address indexed referrer);

    /// @notice Emitted when the accrued protocol fees are sent to the fee destination.
    /// @param destination The fee destination at the time of the flush.
    /// @param amount The amount sent, in wei.
    event ProtocolFeesFlushed(address indexed destination, uint256 amount);

    /// @notice Emitted when the owner raises a fee percent: the increase is in force from
    /// `effectiveAt` (block time) in every trade and quote, whether or not `applyFeeIncrease`
    /// writes it down. A later `ProtocolFeePercentUpdated` (for `protocol`) or
    /// `SubjectFeePercentUpdated` (otherwise) clears it: either the increase was written down, or
    /// a decrease, an equal value or a new schedule replaced it (a new schedule first writes down
    /// a due one).
    /// @param protocol True for the protocol fee, false for the subject fee.
    /// @param current The percent in force (1e18 = 100%).
    /// @param pending The scheduled percent.
    /// @param effectiveAt The time from which it is in force.
    event FeeIncreaseScheduled(bool protocol, uint256 current, uint256 pending, uint256 effectiveAt);

    /// @notice Emitted when an ETH transfer to a recipient failed and became a withdrawable balance.
    /// @param recipient The account that can now withdraw the amount.
    /// @param amount The amount credited, in wei.
    event PaymentDeferred(address indexed recipient, uint256 amount);

    /// @notice Emitted when an account withdraws its balance.
    /// @param account The account whose balance was paid out.
    /// @param to The address that received the ETH.
    /// @param amount The amount paid, in wei.
    event Withdrawal(address indexed account, address indexed to, uint256 amount);

    /// @notice Emitted when the protocol fee destination changes.
    /// @param previous The old destination.
    /// @param current The new destination.
    event FeeDestinationUpdated(address previous, address current);

    /// @notice Emitted when the protocol fee percent changes (1e18 = 100%), or is set to its current
    /// value (which cancels a scheduled increase).
    /// @param previous The old percent.
    /// @param current The new percent.
    event ProtocolFeePercentUpdated(uint256 previous, uint256 current);

    /// @notice Emitted when the subject fee percent changes (1e18 = 100%), or is set to its current
    /// value (which cancels a scheduled increase).
    /// @param previous The old percent.
    /// @param current The new percent.
    event SubjectFeePercentUpdated(uint256 previous, uint256 current);

    /// @notice Emitted when the referrer's share of the protocol fee changes (basis points).
    /// @param previous The old share.
    /// @param current The new share.
    event ReferralFeeShareUpdated(uint256 previous, uint256 current);

    /*//////////////////////////////////////////////////////////////
                         FRIEND.TECH TRADING SURFACE
    //////////////////////////////////////////////////////////////*/

    /// @notice Buys `amount` keys of `subject` at the current price plus fees; excess ETH is refunded.
    /// @param subject The subject whose keys to buy.
    /// @param amount The number of keys.
    function buyShares(address subject, uint256 amount) external payable;

    /// @notice Sells `amount` keys of `subject`; the proceeds (price minus fees) go to the seller.
    /// @param subject The subject whose keys to sell.
    /// @param amount The number of keys.
    function sellShares(address subject, uint256 amount) external;

    /// @notice The price of `amount` keys starting at `supply` on friend.tech's standard curve,
    /// whatever any subject's curve: friend.tech's formula, kept identical for its clients. To quote
    /// a trade in a given subject's keys use `quoteBuy`/`quoteSell` (or `getBuyPrice`/`getSellPrice`),
    /// which price on that subject's curve.
    /// @param supply The supply before the trade.
    /// @param amount The number of keys.
    /// @return The price in wei, before fees.
    function getPrice(uint256 supply, uint256 amount) external pure returns (uint256);

    /// @notice The price before fees of buying `amount` keys of `subject` now.
    /// @param subject The subject.
    /// @param amount The number of keys.
    /// @return The price in wei.
    function getBuyPrice(address subject, uint256 amount) external view returns (uint256);

    /// @notice The price before fees of selling `amount` keys of `subject` now.
    /// @param subject The subject.
    /// @param amount The number of keys.
    /// @return The price in wei.
    function getSellPrice(address subject, uint256 amount) external view returns (uint256);

    /// @notice What buying `amount` keys of `subject` costs now, fees included.
    /// @param subject The subject.
    /// @param amount The number of keys.
    /// @return The total cost in wei.
    function getBuyPriceAfterFee(address subject, uint256 amount) external view returns (uint256);

    /// @notice What selling `amount` keys of `subject` pays now, fees deducted.
    /// @param subject The subject.
    /// @param amount The number of keys.
    /// @return The proceeds in wei.
    function getSellPriceAfterFee(address subject, uint256 amount) external view returns (uint256);

    /// @notice The number of keys of `subject` in existence.
    /// @param subject The subject.
    /// @return The supply.
    function sharesSupply(address subject) external view returns (uint256);

    /// @notice The number of keys of `subject` held by `holder`.
    /// @param subject The subject.
    /// @param holder The holder.
    /// @return The balance.
    function sharesBalance(address subject, address holder) external view returns (uint256);

    /*//////////////////////////////////////////////////////////////
                            KEYMARKET ADDITIONS
    //////////////////////////////////////////////////////////////*/

    /// @notice Buys keys with a cost limit, an optional referrer and a deadline; excess ETH is refunded.
    /// @dev A referral never fails a buy: a referrer that is the buyer, the subject or the market
    /// is ignored (no referral paid, nothing bound), and so is the protocol fee destination at
    /// binding. The buyer's first referred buy binds that referrer for good (`ReferrerBound`);
    /// every later buy naming a valid referrer credits the bound referrer whoever is named, and
    /// none when the bound referrer is the subject of that buy; naming none, or only an ignored
    /// one, pays no referral (as before the third pass, naming address(0) paid none). A buy naming address(0) pays no referral. The
    /// `ReferrerBound` and `ReferralFeePaid` events follow the buy's `Trade`. An address that can
    /// never call `withdraw` (a contract without the call) can still be named: its credit would
    /// stay in the market — a front end should name an address that can withdraw.
    /// Fees: the trade pays the fees its quote showed, unless a scheduled increase becomes due in
    /// between (visible in `pendingProtocolFeeIncrease` / `pendingSubjectFeeIncrease`).
    /// @param subject The subject whose keys to buy.
    /// @param amount The number of keys.
    /// @param maxCost The most the buyer will pay, fees included, in wei.
    /// @param referrer A referrer (see above), credited part of the protocol fee; address(0) for none.
    /// @param deadline The last block timestamp at which the buy may execute.
    function buySharesBounded(address subject, uint256 amount, uint256 maxCost, address referrer, uint256 deadline)
        external
        payable;

    /// @notice Sells keys with a minimum on the proceeds and a deadline.
    /// @param subject The subject whose keys to sell.
    /// @param amount The number of keys.
    /// @param minProceeds The least the seller will accept, fees deducted, in wei.
    /// @param deadline The last block timestamp at which the sell may execute.
    function sellSharesBounded(address subject, uint256 amount, uint256 minProceeds, uint256 deadline) external;

    /// @notice The caller, as a new subject, chooses its curve and buys its first keys.
    /// @param curve 0 = standard (s²/16000, friend.tech), 1 = steep (s²/1600).
    /// @param amount The number of keys (at least one; the first is free).
    function buyFirstShares(uint8 curve, uint256 amount) external payable;

    /// @notice The price of `amount` keys starting at `supply` on the given curve.
    /// @param curve The curve id.
    /// @param supply The supply before the trade.
    /// @param amount The number of keys.
    /// @return The price in wei, before fees.
    function getPriceOnCurve(uint8 curve, uint256 supply, uint256 amount) external pure returns (uint256);

    /// @notice Quotes buying `amount` keys of `subject` now: on the subject's curve, with the fee
    /// percents in force (a scheduled increase is not in force until applied).
    /// @param subject The subject.
    /// @param amount The number of keys.
    /// @return price The price before fees, in wei.
    /// @return protocolFee The protocol fee (any referral share comes out of it), in wei.
    /// @return subjectFee The subject fee, in wei.
    /// @return total What the buy costs: price plus both fees, in wei.
    function quoteBuy(address subject, uint256 amount)
        external
        view
        returns (uint256 price, uint256 protocolFee, uint256 subjectFee, uint256 total);

    /// @notice Quotes selling `amount` keys of `subject` now: on the subject's curve, with the fee
    /// percents in force. Reverts with `InsufficientSupply` above the supply.
    /// @param subject The subject.
    /// @param amount The number of keys.
    /// @return price The price before fees, in wei.
    /// @return protocolFee The protocol fee, in wei.
    /// @return subjectFee The subject fee, in wei.
    /// @return proceeds What the seller receives: price minus both fees, in wei.
    function quoteSell(address subject, uint256 amount)
        external
        view
        returns (uint256 price, uint256 protocolFee, uint256 subjectFee, uint256 proceeds);

    /// @notice The curve id a subject's keys are priced on.
    /// @param subject The subject.
    /// @return The curve id.
    function subjectCurve(address subject) external view returns (uint8);

    /// @notice The ETH `account` can withdraw: subject fees, referral fees and deferred payments.
    /// @param account The account.
    /// @return The balance in wei.
    function withdrawable(address account) external view returns (uint256);

    /// @notice Pays the caller's whole withdrawable balance to the caller.
    /// @return amount The amount paid.
    function withdraw() external returns (uint256 amount);

    /// @notice Pays the caller's whole withdrawable balance to `to`.
    /// @param to The recipient.
    /// @return amount The amount paid.
    function withdrawTo(address to) external returns (uint256 amount);

    /// @notice The referrer bound to `trader` by their first referred buy; address(0) if none.
    /// @param trader The trader.
    /// @return The bound referrer.
    function referrerOf(address trader) external view returns (address);

    /// @notice The protocol fees accrued and not yet flushed, in wei.
    /// @return The amount.
    function accruedProtocolFees() external view returns (uint256);

    /// @notice Sends all accrued protocol fees to the current fee destination, forwarding all
    /// gas. Anyone may call it. Reverts with `NothingToWithdraw` if none accrued and with
    /// `WithdrawalFailed` if the destination refuses them (they stay accrued).
    /// @return amount The amount sent.
    function flushProtocolFees() external returns (uint256 amount);

    /// @notice Writes down every scheduled fee increase whose time has come (already in force in
    /// every trade and quote from its `effectiveAt`); anyone may call it, and it changes no
    /// trade's price. Reverts with `NoFeeIncreaseDue` if there is none.
    function applyFeeIncrease() external;

    /// @notice The scheduled protocol fee increase, if any.
    /// @return percent The scheduled percent (1e18 = 100%); 0 if none.
    /// @return effectiveAt The time from which it is in force (it may have passed: a due increase
    /// is in force until written down, then this returns zeros); 0 if none.
    function pendingProtocolFeeIncrease() external view returns (uint256 percent, uint256 effectiveAt);

    /// @notice The scheduled subject fee increase, if any.
    /// @return percent The scheduled percent (1e18 = 100%); 0 if none.
    /// @return effectiveAt The earliest timestamp at which it can be applied; 0 if none.
    function pendingSubjectFeeIncrease() external view returns (uint256 percent, uint256 effectiveAt);
}
