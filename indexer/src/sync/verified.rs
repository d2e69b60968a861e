//! A fetched batch against the curve before it is stored: a break is the provider's fault until
//! the same range says the same [`BREAKS_BELIEVED_AFTER`] times; then a second provider may
//! answer it, else the chain itself is believed and the break stored, marked unverified.

use alloy::providers::Provider;
use tracing::warn;

use super::{BREAKS_BELIEVED_AFTER, Sync};
use crate::{
    Error, Result,
    store::Batch,
    verify::{Created, Supplies},
};

impl<P: Provider> Sync<'_, P> {
    /// The supplies `batch` leaves, checked against the curve (near the head also against the
    /// market's `sharesSupply`); `Err(CurveBreak)` asks for the range again. A second provider's
    /// answer, when it keeps the curve, replaces `batch` and `created`.
    pub(super) async fn verified(
        &mut self,
        batch: &mut Batch,
        created: &mut Vec<Created>,
    ) -> Result<Supplies> {
        let (config, address) = (self.config, self.spec.address);
        if batch.from != self.check_next {
            self.check
                .reset(self.store.subject_states(self.market.id).await?);
        }
        self.check
            .learn_curves(
                self.provider.root(),
                address,
                created,
                &batch.trades,
                &self.retry,
            )
            .await?;
        let near_head = batch.to + config.window >= batch.head;
        let checked = match self.check.check(&batch.trades, created) {
            Ok(supplies) if near_head => match self
                .check
                .confirm_at(
                    self.provider.root(),
                    address,
                    batch.to,
                    &supplies,
                    &self.retry,
                    false,
                )
                .await?
            {
                None => Ok(supplies),
                Some(brk) => Err(brk),
            },
            other => other,
        };
        let brk = match checked {
            Ok(supplies) => {
                // The place of the last break passed (the provider stopped lying); batches
                // before it (after a rollback) say nothing about it.
                if self
                    .last_break
                    .as_ref()
                    .is_some_and(|(b, _)| (batch.from..=batch.to).contains(&(b.block as u64)))
                {
                    self.last_break = None;
                }
                return Ok(supplies);
            }
            Err(brk) => brk,
        };
        let seen = match &self.last_break {
            Some((b, n)) if *b == brk => n + 1,
            _ => 1,
        };
        self.last_break = Some((brk.clone(), seen));
        let counts = &config.fetch.counts;
        if seen < BREAKS_BELIEVED_AFTER {
            counts
                .curve_breaks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Error::CurveBreak {
                why: brk.to_string(),
                repair_from: brk.against_stored.then_some(brk.subject),
            });
        }
        // A second provider, when there is one, may say otherwise.
        let corrected = match &self.second {
            Some(second) => {
                second
                    .ask(&mut self.check, self.market.chain_id, batch, config.window)
                    .await?
            }
            None => None,
        };
        if let Some(((b, c), supplies)) = corrected {
            counts
                .second_provider_corrections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            warn!(target: "indexer::verify", market = %address, subject = %brk.subject, block = brk.block, what = %brk.what, times = seen, "the provider keeps answering trades that break the curve, the second provider's answer keeps it: storing the second provider's");
            self.last_break = None;
            *batch = b;
            *created = c;
            return Ok(supplies);
        }
        // The chain itself says so: stored, not hidden.
        counts
            .curve_unverified
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.report.unverified += 1;
        tracing::error!(target: "indexer::verify", market = %address, subject = %brk.subject, block = brk.block, what = %brk.what, times = seen, "the chain's own trades break the curve: stored as they are; this subject and market are unverified from this block");
        batch.unverified.push(crate::store::Unverified {
            subject: brk.subject,
            block: brk.block,
            reason: brk.what.clone(),
        });
        let mut last: foldhash::HashMap<alloy::primitives::Address, i64> = Default::default();
        for t in &batch.trades {
            last.insert(t.subject, t.supply);
        }
        Ok(last.into_iter().collect())
    }
}
