//! API keys: creation, authentication, revocation.
//!
//! A key is the token `vt_<id>_<secret>`: a 64-bit public id and a 256-bit
//! random secret, both hex. Only SHA-256(secret) is stored; the token is
//! shown once, when the key is created. Authentication looks the record up
//! by id and compares the secret's hash in constant time, so neither the
//! lookup nor the comparison leaks anything about the secret.
//!
//! Verified keys are kept in memory for [`KEY_CACHE_TTL`], so a request
//! costs no store read (on the remote backend, a PostgreSQL round trip):
//! the cached record is the stored one, and the presented secret is still
//! hashed and compared in constant time on every request. Only keys that
//! verified are cached (at most [`MAX_CACHED_KEYS`]), so unknown ids cannot
//! fill it. Invariant: a key revoked through this process is refused by it
//! at once (revocation drops the entry, and a read that raced with it is
//! not cached); a key revoked through another frontend of the same store
//! is refused here within [`KEY_CACHE_TTL`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ratelimit::{RateLimit, RateLimiter};
use crate::sequencer::Clock;
use crate::store::{RecordSpace, Store, StoreError};

/// The app id under which the log records its own audit events (reads by
/// auditors, erasures, retention runs). No writer key may use it.
pub const INTERNAL_APP: &str = "veritrail";

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages keys (and, later, retention, holds and erasure).
    Admin,
    /// Appends events for its own app.
    Writer,
    /// Reads, searches and exports events.
    Auditor,
}

impl Role {
    /// Parses `admin`, `writer` or `auditor`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "writer" => Some(Role::Writer),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }
}

/// A stored API key (without its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public key id (16 hex digits).
    pub id: String,
    /// Human name, unique only by convention.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// For writers: the app id its events are recorded under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 revocation time, once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Hex SHA-256 of the secret.
    #[serde(rename = "secret_sha256")]
    secret_hash: String,
}

/// Why a request was not authenticated or not authorised.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing API key: send 'Authorization: Bearer <key>'")]
    Missing,
    /// The token is malformed, unknown, wrong or revoked.
    #[error("invalid or revoked API key")]
    Invalid,
    /// The key is valid but its role may not do this.
    #[error("this API key (role {have:?}) may not do this; it needs role {need:?}")]
    Forbidden {
        /// The key's role.
        have: Role,
        /// The role required.
        need: Role,
    },
    /// The key exceeded its rate limit.
    #[error("too many requests for this API key; retry in {retry_after_s} s")]
    RateLimited {
        /// Seconds until the key may send again.
        retry_after_s: u32,
    },
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a key could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyAdminError {
    /// A field is invalid.
    #[error("{0}")]
    Invalid(String),
    /// No key has that id.
    #[error("no API key with id {0}")]
    NotFound(String),
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long a verified key is trusted from memory before it is read from
/// the store again: the longest a revocation made through another frontend
/// takes to reach this one.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Verified keys kept in memory at most (the cache is emptied when full).
pub const MAX_CACHED_KEYS: usize = 4096;

/// Verified key records by id, with when each was read.
#[derive(Default)]
struct KeyCache {
    entries: HashMap<String, (ApiKeyRecord, Instant)>,
    /// Bumped by every revocation: a record read before one is not cached.
    generation: u64,
}

/// The key registry over the store.
#[derive(Clone)]
pub struct ApiKeys {
    store: Arc<dyn Store>,
    cache: Arc<Mutex<KeyCache>>,
    cache_ttl: Duration,
    last_failure_log_ms: Arc<AtomicI64>,
    limiter: Arc<RateLimiter>,
    clock: Clock,
}

/// Meta record: the keys made while the log could not append, waiting
/// for their creation to be recorded ([`ApiKeys::store_unrecorded`]).
const UNRECORDED_RECORD: &[u8] = b"unrecorded_api_keys";
/// Keys that may wait to be recorded at once.
pub const MAX_UNRECORDED_KEYS: usize = 16;

fn encode(value: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| StoreError::Backend(format!("no randomness available: {e}")))?;
    Ok(hex::encode(buf))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl ApiKeys {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn Store>) -> ApiKeys {
        ApiKeys {
            store,
            cache: Arc::default(),
            cache_ttl: KEY_CACHE_TTL,
            last_failure_log_ms: Arc::new(AtomicI64::new(0)),
            limiter: Arc::new(RateLimiter::new(RateLimit::default())),
            clock: Clock::system(),
        }
    }

    /// Reads creation and revocation times, and paces failure logs, by
    /// `clock` (the log's clock) instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> ApiKeys {
        self.clock = clock;
        self
    }

    /// Trusts a verified key from memory for `ttl` instead of
    /// [`KEY_CACHE_TTL`] (zero: every request reads the store).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> ApiKeys {
        self.cache_ttl = ttl;
        self
    }

    /// Applies `limit` to every key's requests.
    pub fn with_rate_limit(mut self, limit: RateLimit) -> ApiKeys {
        self.limiter = Arc::new(RateLimiter::new(limit));
        self
    }

    /// Creates a key and returns its record and the token (shown only now).
    /// Writers get an app id: `app`, or else their name.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        app: Option<&str>,
    ) -> Result<(ApiKeyRecord, String), KeyAdminError> {
        let (record, token) = self.new_key(name, role, app)?;
        self.store(&record)?;
        Ok((record, token))
    }

    /// A new key's record and token, checked but not stored yet: a caller
    /// that must record the creation first (the admin API, in the log)
    /// knows the id before the key can be used, then [`ApiKeys::store`]s it.
    pub fn new_key(
        &self,
        name: &str,
        role: Role,
        app: Option<&str>,
    ) -> Result<(ApiKeyRecord, String), KeyAdminError> {
        if !valid_name(name) {
            return Err(KeyAdminError::Invalid(
                "name: 1 to 64 characters of letters, digits, '.', '_' or '-'".into(),
            ));
        }
        let app = match (role, app) {
            (Role::Writer, app) => {
                let app = app.unwrap_or(name).to_string();
                crate::event::validate_app_id(&app)
                    .map_err(|e| KeyAdminError::Invalid(format!("app: {e}")))?;
                if app == INTERNAL_APP {
                    return Err(KeyAdminError::Invalid(format!(
                        "app: {INTERNAL_APP:?} is reserved for the log's own audit events"
                    )));
                }
                Some(app)
            }
            (_, Some(_)) => {
                return Err(KeyAdminError::Invalid(
                    "app: only writer keys have an app".into(),
                ));
            }
            (_, None) => None,
        };
        let id = random_hex(8)?;
        let secret = random_hex(32)?;
        let record = ApiKeyRecord {
            id: id.clone(),
            name: name.to_string(),
            role,
            app,
            created_at: self.clock.now_rfc3339(),
            revoked_at: None,
            secret_hash: sha256_hex(secret.as_bytes()),
        };
        Ok((record, format!("vt_{id}_{secret}")))
    }

    /// Stores a key made by [`ApiKeys::new_key`]; it authenticates from now.
    pub fn store(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        self.put(record)
    }

    /// Keeps a key made by [`ApiKeys::new_key`] while the log cannot append
    /// (a restore, with no server running): its record waits aside, and it
    /// authenticates only once the log has recorded its creation and
    /// [`ApiKeys::store_recorded`] moved it in (the server does both before
    /// it takes a request).
    pub fn store_unrecorded(&self, record: &ApiKeyRecord) -> Result<(), KeyAdminError> {
        let mut waiting = self.unrecorded()?;
        if waiting.len() >= MAX_UNRECORDED_KEYS {
            return Err(KeyAdminError::Invalid(format!(
                "{MAX_UNRECORDED_KEYS} keys already wait for the log to record them; start the log first"
            )));
        }
        waiting.push(record.clone());
        self.store
            .put_record(RecordSpace::Meta, UNRECORDED_RECORD, &encode(&waiting)?)?;
        Ok(())
    }

    /// The keys made by [`ApiKeys::store_unrecorded`] that the log has not
    /// recorded yet (at most [`MAX_UNRECORDED_KEYS`]).
    pub fn unrecorded(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        match self.store.record(RecordSpace::Meta, UNRECORDED_RECORD)? {
            None => Ok(Vec::new()),
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("keys waiting to be recorded: {e}"))),
        }
    }

    /// Makes a waiting key usable, in one write with its removal from the
    /// waiting list; call it once its creation is durable in the log.
    pub fn store_recorded(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let rest: Vec<ApiKeyRecord> = self
            .unrecorded()?
            .into_iter()
            .filter(|r| r.id != record.id)
            .collect();
        let mut batch = crate::store::RecordBatch::default();
        batch.put.push((
            RecordSpace::ApiKey,
            record.id.as_bytes().to_vec(),
            encode(record)?,
        ));
        if rest.is_empty() {
            batch
                .delete
                .push((RecordSpace::Meta, UNRECORDED_RECORD.to_vec()));
        } else {
            batch.put.push((
                RecordSpace::Meta,
                UNRECORDED_RECORD.to_vec(),
                encode(&rest)?,
            ));
        }
        self.store.commit_records(&batch)
    }

    fn put(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        self.store
            .put_record(RecordSpace::ApiKey, record.id.as_bytes(), &encode(record)?)
    }

    /// The key with this id, revoked or not.
    pub fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        match self.store.record(RecordSpace::ApiKey, id.as_bytes())? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("API key record {id}: {e}"))),
        }
    }

    /// Every key, revoked ones included.
    pub fn list(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.store
            .records(RecordSpace::ApiKey)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("API key record: {e}")))
            })
            .collect()
    }

    /// Revokes a key; revoking twice keeps the first revocation time.
    pub fn revoke(&self, id: &str) -> Result<ApiKeyRecord, KeyAdminError> {
        let mut record = self
            .get(id)?
            .ok_or_else(|| KeyAdminError::NotFound(id.to_string()))?;
        if record.revoked_at.is_none() {
            record.revoked_at = Some(self.clock.now_rfc3339());
            // Dropped before and after the write: a request in between
            // reads the store, and one whose read raced with the write
            // finds the generation moved and caches nothing.
            self.forget(id);
            let written = self.put(&record);
            self.forget(id);
            written?;
        }
        Ok(record)
    }

    /// Authenticates an `Authorization` header value and checks the role.
    /// Admin keys may do everything an auditor may.
    pub fn authorize(&self, header: Option<&str>, need: Role) -> Result<ApiKeyRecord, AuthError> {
        let result = self.authenticate(header).and_then(|rec| {
            let allowed = rec.role == need || (rec.role == Role::Admin && need == Role::Auditor);
            if allowed {
                let throttled = self.limiter.check(&rec.id).err();
                match throttled {
                    None => Ok(rec),
                    Some(t) => Err(AuthError::RateLimited {
                        retry_after_s: u32::try_from(t.retry_after.as_secs())
                            .unwrap_or(u32::MAX)
                            .max(1),
                    }),
                }
            } else {
                Err(AuthError::Forbidden {
                    have: rec.role,
                    need,
                })
            }
        });
        if let Err(e) = &result {
            self.count_failure(e);
        }
        result
    }

    fn authenticate(&self, header: Option<&str>) -> Result<ApiKeyRecord, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(AuthError::Missing)?
            .trim();
        let mut parts = token.splitn(3, '_');
        let (Some("vt"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Invalid);
        };
        if id.len() != 16 || secret.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthError::Invalid);
        }
        let (record, read) = match self.cached(id) {
            Some(record) => (record, None),
            None => {
                let generation = self.lock_cache().generation;
                let record = self.get(id)?.ok_or(AuthError::Invalid)?;
                (record, Some(generation))
            }
        };
        let presented = sha256_hex(secret.as_bytes());
        if !bool::from(presented.as_bytes().ct_eq(record.secret_hash.as_bytes()))
            || record.revoked_at.is_some()
        {
            return Err(AuthError::Invalid);
        }
        if let Some(generation) = read {
            self.remember(&record, generation);
        }
        Ok(record)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached record of key `id`, if it was verified within the TTL.
    fn cached(&self, id: &str) -> Option<ApiKeyRecord> {
        let cache = self.lock_cache();
        let (record, at) = cache.entries.get(id)?;
        (at.elapsed() < self.cache_ttl).then(|| record.clone())
    }

    /// Caches a verified `record` read at cache `generation`, unless a
    /// revocation came since.
    fn remember(&self, record: &ApiKeyRecord, generation: u64) {
        let mut cache = self.lock_cache();
        if cache.generation != generation {
            return;
        }
        if cache.entries.len() >= MAX_CACHED_KEYS {
            cache.entries.clear();
        }
        cache
            .entries
            .insert(record.id.clone(), (record.clone(), Instant::now()));
    }

    fn forget(&self, id: &str) {
        let mut cache = self.lock_cache();
        cache.generation += 1;
        cache.entries.remove(id);
    }

    /// Failed authentication is counted and logged (at most once a second),
    /// never appended to the tree: otherwise anyone could flood the log.
    fn count_failure(&self, e: &AuthError) {
        let reason = match e {
            AuthError::Missing => "missing",
            AuthError::Invalid => "invalid",
            AuthError::Forbidden { .. } => "forbidden",
            AuthError::RateLimited { .. } => "rate_limited",
            AuthError::Store(_) => "store",
        };
        metrics::counter!("veritrail_auth_failures_total", "reason" => reason).increment(1);
        let now = self.clock.now_ms();
        let last = self.last_failure_log_ms.load(Ordering::Relaxed);
        if now - last >= 1000
            && self
                .last_failure_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(reason, "API request refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn keys() -> ApiKeys {
        ApiKeys::new(Arc::new(MemoryStore::new()))
    }

    /// A key made while the log cannot append works only once stored as
    /// recorded; a failed write of that step leaves it waiting, unusable,
    /// and the next attempt completes it.
    #[test]
    fn an_unrecorded_key_works_only_once_stored_as_recorded() {
        use crate::store::memory::WriteFault;
        let store = Arc::new(MemoryStore::new());
        let k = ApiKeys::new(store.clone());
        let (rec, token) = k.new_key("admin-restored", Role::Admin, None).unwrap();
        k.store_unrecorded(&rec).unwrap();
        let header = format!("Bearer {token}");
        assert!(k.authorize(Some(&header), Role::Admin).is_err());
        assert_eq!(k.unrecorded().unwrap(), vec![rec.clone()]);
        assert!(k.list().unwrap().is_empty());
        for fault in [WriteFault::BeforePersisting, WriteFault::AfterPersisting] {
            store.inject(fault);
            assert!(k.store_recorded(&rec).is_err());
            store.inject(WriteFault::None);
            let usable = k.authorize(Some(&header), Role::Admin).is_ok();
            let waiting = !k.unrecorded().unwrap().is_empty();
            // One write: the key moved in, or it still waits.
            assert!(usable != waiting, "{fault:?}");
        }
        k.store_recorded(&rec).unwrap();
        assert_eq!(k.authorize(Some(&header), Role::Admin).unwrap().id, rec.id);
        assert!(k.unrecorded().unwrap().is_empty());
    }

    #[test]
    fn a_created_key_authenticates_with_its_role_only() {
        let k = keys();
        let (rec, token) = k.create("billing", Role::Writer, None).unwrap();
        assert_eq!(rec.app.as_deref(), Some("billing"));
        let header = format!("Bearer {token}");
        assert_eq!(k.authorize(Some(&header), Role::Writer).unwrap().id, rec.id);
        assert!(matches!(
            k.authorize(Some(&header), Role::Auditor),
            Err(AuthError::Forbidden { .. })
        ));
        assert!(matches!(
            k.authorize(Some(&header), Role::Admin),
            Err(AuthError::Forbidden { .. })
        ));
    }

    #[test]
    fn wrong_malformed_and_revoked_keys_are_refused() {
        let k = keys();
        let (rec, token) = k.create("ops", Role::Admin, None).unwrap();
        let mut wrong = token.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        for bad in [
            None,
            Some("".to_string()),
            Some(token.clone()),
            Some(format!("Bearer {wrong}")),
            Some("Bearer vt_x_y".into()),
        ] {
            assert!(
                k.authorize(bad.as_deref(), Role::Admin).is_err(),
                "{bad:?} was accepted"
            );
        }
        let header = format!("Bearer {token}");
        assert!(
            k.authorize(Some(&header), Role::Auditor).is_ok(),
            "admins may read"
        );
        k.revoke(&rec.id).unwrap();
        assert!(matches!(
            k.authorize(Some(&header), Role::Admin),
            Err(AuthError::Invalid)
        ));
        assert!(k.list().unwrap()[0].revoked_at.is_some());
    }

    /// Another frontend's revocation reaches this one through the store:
    /// at once when nothing is cached, else once the cached entry is older
    /// than the TTL (shown with a zero TTL over the same cache).
    #[test]
    fn a_revocation_elsewhere_is_seen_once_the_cache_ttl_passes() {
        let store = Arc::new(MemoryStore::new());
        let here = ApiKeys::new(store.clone());
        let elsewhere = ApiKeys::new(store.clone());
        let (rec, token) = here.create("ops", Role::Admin, None).unwrap();
        let header = format!("Bearer {token}");
        assert!(here.authorize(Some(&header), Role::Admin).is_ok());
        elsewhere.revoke(&rec.id).unwrap();
        assert!(
            here.authorize(Some(&header), Role::Admin).is_ok(),
            "within the TTL the verified key is served from memory"
        );
        let expired = here.clone().with_cache_ttl(Duration::ZERO);
        assert!(matches!(
            expired.authorize(Some(&header), Role::Admin),
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            ApiKeys::new(store).authorize(Some(&header), Role::Admin),
            Err(AuthError::Invalid)
        ));
    }

    #[test]
    fn only_a_hash_of_the_secret_is_stored() {
        let store = Arc::new(MemoryStore::new());
        let k = ApiKeys::new(store.clone());
        let (_, token) = k.create("w", Role::Writer, Some("app-1")).unwrap();
        let secret = token.rsplit('_').next().unwrap();
        for (_, v) in store.records(RecordSpace::ApiKey).unwrap() {
            assert!(!String::from_utf8_lossy(&v).contains(secret));
        }
    }

    #[test]
    fn invalid_names_and_apps_are_rejected() {
        let k = keys();
        assert!(k.create("", Role::Writer, None).is_err());
        assert!(k.create("has space", Role::Writer, None).is_err());
        assert!(k.create("aud", Role::Auditor, Some("app")).is_err());
        assert!(k.create("w", Role::Writer, Some(INTERNAL_APP)).is_err());
        assert!(k.create(INTERNAL_APP, Role::Writer, None).is_err());
        assert!(matches!(
            k.revoke("0000000000000000"),
            Err(KeyAdminError::NotFound(_))
        ));
    }
}
