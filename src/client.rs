//! HTTP client for the CLI (`keys`, `verify`) and tests: talks to a
//! Veritrail server and turns its JSON errors into readable messages.

use std::time::Duration;

use serde_json::Value;

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
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
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
        let url = self.url(path);
        let bytes = self.get_bytes(path).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Malformed {
            url,
            why: e.to_string(),
        })
    }

    /// POST JSON to a path, returning JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path);
        let resp = self.send(self.http.post(&url).json(body), &url).await?;
        resp.json().await.map_err(|e| ClientError::Malformed {
            url,
            why: e.to_string(),
        })
    }

    /// POST with an empty body, returning the response to read as a stream
    /// (`Response::chunk`), for large answers such as backups. No overall
    /// timeout applies, only the connect timeout.
    pub async fn post_stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let url = self.url(path);
        let req = self.http.post(&url).timeout(Duration::from_secs(24 * 3600));
        self.send(req, &url).await
    }

    /// DELETE a path, returning JSON.
    pub async fn delete_json(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        let resp = self.send(self.http.delete(&url), &url).await?;
        resp.json().await.map_err(|e| ClientError::Malformed {
            url,
            why: e.to_string(),
        })
    }
}
