//! The object side of the PostgreSQL backend: an S3-compatible bucket that
//! holds the log's write-once objects at their C2SP tlog-tiles paths under
//! a prefix (`tile/<L>/<N>`, `tile/entries/<N>`, their `.p/<W>` partial
//! versions and `checkpoint`), so a static file server over the bucket
//! serves the log.
//!
//! Invariant: a write-once object is written with a create-only request; it
//! counts as written only when the bucket holds exactly the bytes meant. A
//! successful PUT means it does (S3's read-after-write consistency); when
//! the server answers that an object is already there, it is read back and
//! compared (an identical object is a success, a different one an error).
//! A server that ignores `If-None-Match: *` overwrites instead of
//! answering so, which leaves the bytes meant too: the fencing never rests
//! on the bucket. Only `checkpoint` is ever replaced: it is a copy of the
//! checkpoint in PostgreSQL, which is the one that counts.

use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, RetryConfig,
};

use super::super::StoreError;

/// Where the bucket is and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct BucketConfig {
    /// The bucket name.
    pub bucket: String,
    /// The prefix of every object (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// The S3 endpoint URL (`http://127.0.0.1:9000`), or `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when unset).
    pub region: Option<String>,
    /// Access key id and secret, when not taken from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for BucketConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketConfig")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl BucketConfig {
    /// Parses `s3://bucket/prefix` (the prefix may be empty).
    pub fn from_url(url: &str) -> Result<BucketConfig, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{url:?} is not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{url:?} names no bucket"));
        }
        Ok(BucketConfig {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            region: None,
            credentials: None,
        })
    }
}

/// The time one request to the bucket may take, retries included: well
/// under the sequencer lease, so a leader that lost the lease stops
/// writing before another takes over.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The bucket, with the log's prefix.
pub(super) struct Bucket {
    store: AmazonS3,
    prefix: String,
}

fn backend(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("object store: couldn't {what} {path}: {e}"))
}

/// What a create-only write found.
pub(super) enum Created {
    /// The object now holds the bytes meant.
    Written,
    /// Another object is there.
    Different,
}

impl Bucket {
    /// Connects (lazily: the first request opens the connection). The
    /// credentials come from the environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, ...).
    pub(super) fn open(config: &BucketConfig) -> Result<Bucket, StoreError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(config.region.as_deref().unwrap_or("us-east-1"))
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: REQUEST_TIMEOUT,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(Duration::from_secs(2)),
            );
        if let Some((key, secret)) = &config.credentials {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| StoreError::Backend(format!("object store configuration: {e}")))?;
        Ok(Bucket {
            store,
            prefix: config.prefix.clone(),
        })
    }

    fn path(&self, name: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(name)
        } else {
            Path::from(format!("{}/{name}", self.prefix))
        }
    }

    /// Reads an object; `None` when there is none.
    pub(super) async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(name);
        match self.store.get(&path).await {
            Ok(got) => Ok(Some(
                got.bytes()
                    .await
                    .map_err(|e| backend("read", &path, e))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend("read", &path, e)),
        }
    }

    /// Writes a write-once object with a create-only request: `Written`
    /// when the bucket holds `data` (the PUT succeeded, or the object there
    /// reads back identical), `Different` when it holds something else.
    pub(super) async fn create(&self, name: &str, data: &[u8]) -> Result<Created, StoreError> {
        let path = self.path(name);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(data.to_vec()), opts)
            .await
        {
            Ok(_) => return Ok(Created::Written),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => {}
            Err(e) => return Err(backend("write", &path, e)),
        }
        match self.get(name).await? {
            Some(found) if found == data => Ok(Created::Written),
            Some(_) => Ok(Created::Different),
            None => Err(backend("confirm", &path, "the object written is not there")),
        }
    }

    /// Replaces an object whole (for `checkpoint`, and for a leftover of a
    /// batch that was never committed, see `PgStore::commit`).
    pub(super) async fn replace(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let path = self.path(name);
        self.store
            .put(&path, PutPayload::from(data.to_vec()))
            .await
            .map_err(|e| backend("write", &path, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_parse() {
        let c = BucketConfig::from_url("s3://logs/audit/prod/").unwrap();
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str()),
            ("logs", "audit/prod")
        );
        let c = BucketConfig::from_url("s3://logs").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("logs", ""));
        assert!(BucketConfig::from_url("http://logs/x").is_err());
        assert!(BucketConfig::from_url("s3:///x").is_err());
    }
}
