//! HTTP client for the CLI and the log followers: talks to a Veritrail
//! server and turns its JSON errors into readable messages.
//!
//! The admin and auditor calls are typed with the handlers' own request and
//! answer types (`crate::api`), so the client cannot send or expect a shape
//! the server does not have. Every value placed in a URL path goes through
//! [`path_segment`]: it stays one segment, whatever it contains.
//! Submitting events, with retries and receipt verification, is in
//! [`submit`].

mod submit;

pub use submit::{
    Receipt, ReceiptVerifier, Retry, SubmitError, Submitted, VerifiedCheckpoint, Wait, prove_batch,
};

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{
    CreateKey, CreatedKey, ErasureRequest, ErasureResult, HoldEntry, HoldList, HoldRequest,
    KeyList, KeyRecord, PolicyList, PolicyRequest, Removed, RetentionRun, SearchParams,
};
use crate::retention::Policy;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or the transfer failed.
    #[error("couldn't reach {url}: {source}")]
    Transport {
        /// The URL called.
        url: String,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's error message.
        message: String,
    },
    /// The answer could not be understood.
    #[error("{url}: unexpected answer: {why}")]
    Malformed {
        /// The URL called.
        url: String,
        /// What was wrong.
        why: String,
    },
    /// A value cannot be sent as it was given.
    #[error("{0}")]
    Invalid(String),
}

/// `s` percent-encoded as one URL path segment (RFC 3986 §3.3): everything
/// but the unreserved characters is encoded, so a `/`, `?` or `#` in an id
/// cannot reach another route. `.` and `..` are refused: URLs resolve them
/// as dot segments (RFC 3986 §5.2.4) even when encoded, and no id is empty.
pub fn path_segment(s: &str) -> Result<String, ClientError> {
    if s.is_empty() || s == "." || s == ".." {
        return Err(ClientError::Invalid(format!(
            "{s:?} is not an id: give the id the server listed"
        )));
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// A client for one server.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`), with an optional API key.
    pub fn new(base: &str, token: Option<String>) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Transport {
                url: base.to_string(),
                source: e,
            })?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// Like [`Client::new`], but also trusting the CA certificates in
    /// `ca_pem` (PEM, one or more), e.g. a private CA or a self-signed
    /// server certificate.
    pub fn with_ca(
        base: &str,
        token: Option<String>,
        ca_pem: &[u8],
    ) -> Result<Client, ClientError> {
        let transport = |source| ClientError::Transport {
            url: base.to_string(),
            source,
        };
        let certs = reqwest::Certificate::from_pem_bundle(ca_pem).map_err(transport)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tls_certs_merge(certs)
            .build()
            .map_err(transport)?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| ClientError::Transport {
            url: url.to_string(),
            source: e,
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let message = error_message(&resp.text().await.unwrap_or_default());
        Err(ClientError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    /// GET a path, returning the body bytes.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = self.url(path);
        let resp = self.send(self.http.get(&url), &url).await?;
        let bytes = resp.bytes().await.map_err(|e| ClientError::Transport {
            url: url.clone(),
            source: e,
        })?;
        Ok(bytes.to_vec())
    }

    /// GET a path, returning JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        self.get(path).await
    }

    /// GET a path, parsing the JSON answer as `T`.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let bytes = self.get_bytes(path).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Malformed {
            url,
            why: e.to_string(),
        })
    }

    /// POST `body` as JSON to a path, parsing the JSON answer as `T`.
    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.send(self.http.post(&url).json(body), &url).await?;
        parse(resp, url).await
    }

    /// POST with an empty body, returning the response to read as a stream
    /// (`Response::chunk`), for large answers such as backups. No overall
    /// timeout applies, only the connect timeout.
    async fn post_stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let url = self.url(path);
        let req = self.http.post(&url).timeout(Duration::from_secs(24 * 3600));
        self.send(req, &url).await
    }

    /// DELETE a path, parsing the JSON answer as `T`.
    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.send(self.http.delete(&url), &url).await?;
        parse(resp, url).await
    }

    /// `POST /v1/admin/keys`: creates a key; the answer holds its token.
    pub async fn create_key(&self, req: &CreateKey) -> Result<CreatedKey, ClientError> {
        self.post("/v1/admin/keys", req).await
    }

    /// `GET /v1/admin/keys`: every key, without secrets.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, ClientError> {
        let list: KeyList = self.get("/v1/admin/keys").await?;
        Ok(list.keys)
    }

    /// `DELETE /v1/admin/keys/<id>`: revokes a key.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyRecord, ClientError> {
        let path = format!("/v1/admin/keys/{}", path_segment(id)?);
        self.delete(&path).await
    }

    /// `POST /v1/admin/backup`: the snapshot stream (read it with
    /// `Response::chunk`; `crate::backup` checks it frame by frame).
    pub async fn backup(&self) -> Result<reqwest::Response, ClientError> {
        self.post_stream("/v1/admin/backup").await
    }

    /// `POST /v1/erasure`.
    pub async fn erase(&self, req: &ErasureRequest) -> Result<ErasureResult, ClientError> {
        self.post("/v1/erasure", req).await
    }

    /// `POST /v1/admin/holds`: places a legal hold.
    pub async fn create_hold(&self, req: &HoldRequest) -> Result<HoldEntry, ClientError> {
        self.post("/v1/admin/holds", req).await
    }

    /// `GET /v1/admin/holds`.
    pub async fn list_holds(&self) -> Result<Vec<HoldEntry>, ClientError> {
        let list: HoldList = self.get("/v1/admin/holds").await?;
        Ok(list.holds)
    }

    /// `DELETE /v1/admin/holds/<id>`: releases a hold.
    pub async fn release_hold(&self, id: &str) -> Result<Removed, ClientError> {
        let path = format!("/v1/admin/holds/{}", path_segment(id)?);
        self.delete(&path).await
    }

    /// `POST /v1/admin/retention`: adds a retention policy.
    pub async fn create_policy(&self, req: &PolicyRequest) -> Result<Policy, ClientError> {
        self.post("/v1/admin/retention", req).await
    }

    /// `GET /v1/admin/retention`.
    pub async fn list_policies(&self) -> Result<Vec<Policy>, ClientError> {
        let list: PolicyList = self.get("/v1/admin/retention").await?;
        Ok(list.policies)
    }

    /// `DELETE /v1/admin/retention/<id>`: removes a retention policy.
    pub async fn remove_policy(&self, id: &str) -> Result<Removed, ClientError> {
        let path = format!("/v1/admin/retention/{}", path_segment(id)?);
        self.delete(&path).await
    }

    /// `POST /v1/admin/retention/run`: runs retention now.
    pub async fn run_retention(&self) -> Result<RetentionRun, ClientError> {
        self.post("/v1/admin/retention/run", &serde_json::Map::new())
            .await
    }

    /// `GET /v1/export`: the NDJSON evidence bundle of the events `query`
    /// selects.
    pub async fn export(&self, query: &SearchParams) -> Result<Vec<u8>, ClientError> {
        let query = serde_urlencoded::to_string(query)
            .map_err(|e| ClientError::Invalid(format!("the export query: {e}")))?;
        if query.is_empty() {
            self.get_bytes("/v1/export").await
        } else {
            self.get_bytes(&format!("/v1/export?{query}")).await
        }
    }
}

/// The message of the API's JSON error body `{"error": {"message": ...}}`,
/// or the body itself when it is not one.
fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.to_string())
}

/// The JSON answer of `url` as `T`.
async fn parse<T: DeserializeOwned>(
    resp: reqwest::Response,
    url: String,
) -> Result<T, ClientError> {
    resp.json().await.map_err(|e| ClientError::Malformed {
        url,
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn a_path_segment_stays_one_segment() {
        assert_eq!(path_segment("0123abcdef").unwrap(), "0123abcdef");
        assert_eq!(path_segment("a-b_c.d~e").unwrap(), "a-b_c.d~e");
        assert_eq!(
            path_segment("../holds/x?y#z").unwrap(),
            "..%2Fholds%2Fx%3Fy%23z"
        );
        assert_eq!(path_segment("é %").unwrap(), "%C3%A9%20%25");
        for dots in ["", ".", ".."] {
            assert!(path_segment(dots).is_err(), "{dots:?}");
        }
    }
}
