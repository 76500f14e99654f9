//! Webhook delivery of alerts: a JSON POST signed with HMAC-SHA256, retried
//! with doubling waits, and appended to a dead-letter file when every
//! attempt failed.
//!
//! Invariant: an alert handed to [`Webhook::send`] is delivered, or is in
//! the dead-letter file, or its loss is logged and counted (queue full,
//! dead-letter file unwritable). The queue is bounded; delivery never
//! holds up a writer.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::{KeyInit as _, Mac as _};
use tokio::sync::{mpsc, watch};

use super::rules::WebhookConfig;

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "veritrail-signature";
/// Alerts waiting for delivery at most; beyond it they go to the dead-letter file.
pub const QUEUE: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The sending side; the worker task delivers.
pub struct Webhook {
    tx: mpsc::Sender<Vec<u8>>,
    stop: watch::Sender<bool>,
    worker: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    dead_letter: PathBuf,
}

impl Webhook {
    /// Starts the delivery task.
    pub fn start(config: WebhookConfig, dead_letter: PathBuf) -> Result<Webhook, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("couldn't build the webhook client: {e}"))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(deliver_all(
            client,
            config,
            dead_letter.clone(),
            rx,
            stopped,
        ));
        Ok(Webhook {
            tx,
            stop,
            worker: tokio::sync::Mutex::new(Some(worker)),
            dead_letter,
        })
    }

    /// Queues one alert (its JSON body) for delivery.
    pub fn send(&self, body: Vec<u8>) {
        if let Err(e) = self.tx.try_send(body) {
            let body = match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
            };
            tracing::error!("the webhook queue is full; the alert goes to the dead-letter file");
            dead_letter(&self.dead_letter, &body);
        }
    }

    /// Stops delivery: what is still queued or being retried goes to the
    /// dead-letter file.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(w) = self.worker.lock().await.take() {
            let _ = w.await;
        }
    }
}

async fn deliver_all(
    client: reqwest::Client,
    config: WebhookConfig,
    dead: PathBuf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let body = tokio::select! {
            b = rx.recv() => match b { Some(b) => b, None => return },
            _ = stopped.changed() => break,
        };
        if !deliver(&client, &config, &body, &mut stopped).await {
            dead_letter(&dead, &body);
        }
        if *stopped.borrow() {
            break;
        }
    }
    rx.close();
    while let Ok(body) = rx.try_recv() {
        dead_letter(&dead, &body);
    }
}

/// Tries up to `attempts` times; false when every attempt failed or the
/// service is stopping.
async fn deliver(
    client: &reqwest::Client,
    config: &WebhookConfig,
    body: &[u8],
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    let sig = signature(&config.secret, body);
    let mut wait = config.backoff;
    for attempt in 1..=config.attempts {
        let sent = client
            .post(&config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &sig)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("veritrail_alerts_webhook_total", "result" => "delivered")
                    .increment(1);
                return true;
            }
            Ok(r) => {
                tracing::warn!(attempt, status = %r.status(), "the alert webhook refused an alert")
            }
            Err(e) => tracing::warn!(attempt, error = %e, "couldn't post an alert to the webhook"),
        }
        metrics::counter!("veritrail_alerts_webhook_total", "result" => "failed_attempt")
            .increment(1);
        if attempt == config.attempts || *stopped.borrow() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => break,
        }
        wait = (wait * 2).min(MAX_BACKOFF);
    }
    false
}

/// Appends one alert as a line of the dead-letter file, synced.
fn dead_letter(path: &Path, body: &[u8]) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| {
            let mut line = body.to_vec();
            line.push(b'\n');
            f.write_all(&line)?;
            f.sync_data()
        });
    match written {
        Ok(()) => {
            metrics::counter!("veritrail_alerts_webhook_total", "result" => "dead_letter")
                .increment(1);
            tracing::warn!(file = %path.display(), "an undelivered alert was written to the dead-letter file");
        }
        Err(e) => {
            metrics::counter!("veritrail_alerts_webhook_total", "result" => "lost").increment(1);
            tracing::error!(file = %path.display(), error = %e, "couldn't write an undelivered alert to the dead-letter file; it stays in the log only");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: String, attempts: u32) -> WebhookConfig {
        WebhookConfig {
            url,
            secret: b"0123456789abcdef".to_vec(),
            attempts,
            backoff: Duration::from_millis(10),
            timeout: Duration::from_secs(2),
            dead_letter: None,
        }
    }

    /// A local receiver that answers `status` to every post and counts them.
    async fn receiver(status: u16) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        (url, hits)
    }

    #[tokio::test]
    async fn a_refusing_receiver_gets_every_attempt_then_the_dead_letter_file_the_alert() {
        let (url, hits) = receiver(500).await;
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead.jsonl");
        let w = Webhook::start(config(url, 3), dead.clone()).unwrap();
        w.send(b"{\"rule\":\"r\"}".to_vec());
        for _ in 0..200 {
            if dead.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            std::fs::read_to_string(&dead).unwrap(),
            "{\"rule\":\"r\"}\n"
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);
        w.shutdown().await;
    }

    #[tokio::test]
    async fn an_unwritable_dead_letter_file_loses_the_alert_without_stopping_delivery() {
        let (bad_url, _) = receiver(503).await;
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: every write fails.
        let dead = dir.path().join("dead");
        std::fs::create_dir(&dead).unwrap();
        let w = Webhook::start(config(bad_url, 1), dead.clone()).unwrap();
        w.send(b"{}".to_vec());
        w.shutdown().await;
        assert!(dead.is_dir());
        // Shutting down puts what is queued in the dead-letter file.
        let (ok_url, _) = receiver(200).await;
        let file = dir.path().join("dl.jsonl");
        let w = Webhook::start(config(ok_url, 1), file.clone()).unwrap();
        w.shutdown().await;
        w.send(b"{\"late\":1}".to_vec());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"late\":1}\n");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
