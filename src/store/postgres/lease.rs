//! The sequencer lease in the coordination row: which frontend sequences,
//! until when, with which fencing token, and where it takes writes.
//!
//! Every time here is the database's (`clock_timestamp()`: the time the
//! statement runs, not when its transaction began, since a statement may
//! wait for the coordination row's lock), never a frontend's: two
//! frontends with skewed clocks still agree on whether a lease expired.
//! Acquiring increments the token, so a leader that lost its lease (and
//! every commit it still has in flight) is fenced out by
//! [`PgStore::fence`]: the commit transaction locks the same row and finds
//! another token.
//!
//! Invariant: at any moment at most one frontend holds an unexpired lease
//! under the current token, and the token only grows.

use std::time::Duration;

use super::{Inner, PgStore, READ_TIMEOUT, StoreError, pg};

/// Who holds the lease, as the coordination row says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's name (unique per frontend process).
    pub holder: String,
    /// Where it takes writes (its advertised base URL).
    pub address: String,
    /// The fencing token of its lease.
    pub token: i64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Takes the lease for `holder` (advertising `address`) for `ttl` when
    /// it is free, expired or already `holder`'s: one statement, so two
    /// frontends never both succeed. Returns the new fencing token, or
    /// `None` when another frontend holds an unexpired lease.
    pub fn acquire_lease(
        &self,
        holder: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let (holder, address) = (holder.to_string(), address.to_string());
        self.run(READ_TIMEOUT, async move |s: std::sync::Arc<Inner>| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let row = c
                .query_opt(
                    "UPDATE vt_log SET lease_holder = $1, lease_address = $2,
                         lease_token = lease_token + 1,
                         lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond'
                     WHERE id = 1 AND (lease_expires_at IS NULL OR lease_expires_at < clock_timestamp()
                         OR lease_holder = $1)
                     RETURNING lease_token",
                    &[&holder, &address, &(millis(ttl) as f64)],
                )
                .await
                .map_err(pg)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// Extends `holder`'s lease under `token` by `ttl` from now, advertising
    /// `address`. `false` when the lease is no longer its own (taken over,
    /// or expired): the caller must stop sequencing.
    pub fn renew_lease(
        &self,
        holder: &str,
        address: &str,
        token: i64,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (holder, address) = (holder.to_string(), address.to_string());
        self.run(READ_TIMEOUT, async move |s: std::sync::Arc<Inner>| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let n = c
                .execute(
                    "UPDATE vt_log SET lease_expires_at = clock_timestamp() + $3 * interval '1 millisecond',
                         lease_address = $4
                     WHERE id = 1 AND lease_holder = $1 AND lease_token = $2
                         AND lease_expires_at >= clock_timestamp()",
                    &[&holder, &token, &(millis(ttl) as f64), &address],
                )
                .await
                .map_err(pg)?;
            Ok(n == 1)
        })
    }

    /// Gives the lease up at once (a clean shutdown), so another frontend
    /// need not wait for it to expire.
    pub fn release_lease(&self, holder: &str, token: i64) -> Result<(), StoreError> {
        let holder = holder.to_string();
        self.run(READ_TIMEOUT, async move |s: std::sync::Arc<Inner>| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            c.execute(
                "UPDATE vt_log SET lease_expires_at = clock_timestamp() - interval '1 millisecond'
                 WHERE id = 1 AND lease_holder = $1 AND lease_token = $2",
                &[&holder, &token],
            )
            .await
            .map_err(pg)?;
            Ok(())
        })
    }

    /// The current, unexpired lease holder, if any (its address may still
    /// be empty while it starts listening).
    pub fn lease_holder(&self) -> Result<Option<LeaseHolder>, StoreError> {
        self.run(READ_TIMEOUT, async |s: std::sync::Arc<Inner>| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let row = c
                .query_one(
                    "SELECT lease_holder, lease_address, lease_token,
                         lease_expires_at IS NOT NULL AND lease_expires_at >= clock_timestamp()
                     FROM vt_log WHERE id = 1",
                    &[],
                )
                .await
                .map_err(pg)?;
            let live: bool = row.get(3);
            Ok(match (live, row.get(0), row.get(1)) {
                (true, Some(holder), Some(address)) => Some(LeaseHolder {
                    holder,
                    address,
                    token: row.get(2),
                }),
                _ => None,
            })
        })
    }
}
