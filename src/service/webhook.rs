//! Callbacks: when an analysis reaches its final status, `POST` that status to the URL given
//! with the submission (or `service.webhook_url`).
//!
//! Safety policy: the product never sends anything to a non-loopback address. A callback URL
//! must be `http://` on `127.0.0.0/8`, `[::1]` or `localhost` (which is always 127.0.0.1, never
//! looked up); anything else is refused when it is submitted or configured. The connection
//! goes to the address taken from the checked URL, no name is resolved, and redirects are not
//! followed.
//!
//! Deliveries run on their own tasks and never hold up the queue. A delivery that fails (no
//! connection, timeout, non-2xx) is retried after 1, 2, 4 and 8 s, five attempts in all. The
//! state is kept in the database, so deliveries pending when the service stops are made at
//! its next start (at least once).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use tokio::sync::{mpsc, Semaphore};

pub use crate::egress::{CallbackUrl, NotAllowed, POLICY};

use super::command::AnalysisId;
use super::db::AnalysisRow;
use super::queue::Queue;

/// Waits between attempts; one attempt more than there are waits.
pub const BACKOFF: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// Longest time one attempt may take, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 16;

/// Why a callback URL is refused, or a delivery failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WebhookError {
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error("callback to {url} failed: {detail}")]
    Delivery { url: String, detail: String },
}

/// The document a callback receives.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Callback {
    pub analysis_id: String,
    pub status: String,
    pub submitted_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub error: Option<String>,
}

impl Callback {
    pub fn of(row: &AnalysisRow) -> Callback {
        Callback {
            analysis_id: row.id.to_string(),
            status: row.status.to_string(),
            submitted_at: row.submitted_at.clone(),
            started_at: row.started_at.clone(),
            ended_at: row.ended_at.clone(),
            error: row.error.clone(),
        }
    }
}

/// Hands finished analyses to the delivery tasks.
#[derive(Debug, Clone)]
pub struct Webhooks {
    tx: mpsc::UnboundedSender<AnalysisId>,
}

impl Webhooks {
    /// Starts the dispatcher on the current runtime and queues what is still pending.
    pub fn start(queue: Arc<Queue>) -> Webhooks {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(queue, rx));
        Webhooks { tx }
    }

    /// Delivers the final status of `id` if it has a callback. Never blocks.
    pub fn finished(&self, id: &AnalysisId) {
        let _ = self.tx.send(id.clone());
    }
}

async fn dispatch(queue: Arc<Queue>, mut rx: mpsc::UnboundedReceiver<AnalysisId>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(id) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let queue = queue.clone();
        tokio::spawn(async move {
            deliver(&queue, &id).await;
            drop(permit);
        });
    }
}

/// Every attempt for one analysis, with the waits between them.
async fn deliver(queue: &Arc<Queue>, id: &AnalysisId) {
    let mut waits = BACKOFF.iter();
    loop {
        let job = {
            let (queue, id) = (queue.clone(), id.clone());
            tokio::task::spawn_blocking(move || queue.webhook_job(&id)).await
        };
        let job = match job {
            Ok(Ok(Some(job))) => job,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                return tracing::error!(analysis_id = %id, error = %e, "webhook: cannot read analysis")
            }
            Err(e) => return tracing::error!(analysis_id = %id, error = %e, "webhook task failed"),
        };
        let result = attempt(&job.url, &Callback::of(&job.row)).await;
        let next_wait = if result.is_ok() { None } else { waits.next() };
        let state = match (&result, next_wait) {
            (Ok(()), _) => "delivered",
            (Err(_), Some(_)) => "pending",
            (Err(_), None) => "failed",
        };
        match &result {
            Ok(()) => {
                tracing::info!(analysis_id = %id, attempt = job.attempts + 1, "callback delivered")
            }
            Err(e) => {
                tracing::warn!(analysis_id = %id, attempt = job.attempts + 1, error = %e, state, "callback failed")
            }
        }
        let recorded = {
            let (queue, id) = (queue.clone(), id.clone());
            tokio::task::spawn_blocking(move || queue.webhook_attempted(&id, state)).await
        };
        if let Ok(Err(e)) = recorded {
            tracing::error!(analysis_id = %id, error = %e, "webhook: cannot record attempt");
        }
        match next_wait {
            Some(wait) if result.is_err() => tokio::time::sleep(*wait).await,
            _ => return,
        }
    }
}

/// One `POST` of the callback document.
async fn attempt(url_text: &str, body: &Callback) -> Result<(), WebhookError> {
    let fail = |detail: String| WebhookError::Delivery {
        url: url_text.to_string(),
        detail,
    };
    // Checked again here: a URL stored by an older version must meet today's policy too.
    let url = CallbackUrl::parse(url_text)?;
    let body = serde_json::to_vec(body).map_err(|e| fail(e.to_string()))?;
    let status = tokio::time::timeout(ATTEMPT_TIMEOUT, post(&url, body))
        .await
        .map_err(|_| fail(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())))?
        .map_err(fail)?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(fail(format!("answered HTTP {status}")))
    }
}

async fn post(url: &CallbackUrl, body: Vec<u8>) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect(url.addr())
        .await
        .map_err(|e| format!("connect to {}: {e}", url.addr()))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let connection = tokio::spawn(conn);
    let request = hyper::Request::post(url.path())
        .header(hyper::header::HOST, url.host_header())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("aegis/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    connection.abort();
    Ok(response?.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_refuses_a_webhook_url_off_loopback() {
        use serde_json::json;
        let ok = crate::config::Config::from_value(
            &json!({"service": {"webhook_url": "http://localhost:9/x"}}),
        )
        .unwrap();
        assert_eq!(
            ok.service.webhook_url.as_deref(),
            Some("http://localhost:9/x")
        );
        let err = crate::config::Config::from_value(
            &json!({"service": {"webhook_url": "http://10.1.2.3/"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("config key `service.webhook_url`: callback URL is not allowed: host `10.1.2.3` is not loopback"), "{err}");
    }

    #[tokio::test]
    async fn a_delivery_posts_json_and_reads_the_status() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("\"error\":null}") {
                let n = sock.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            sock.write_all(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let body = Callback {
            analysis_id: "x".into(),
            status: "completed".into(),
            submitted_at: "t".into(),
            started_at: None,
            ended_at: None,
            error: None,
        };
        let url = format!("http://localhost:{port}/hook?k=v");
        let err = attempt(&url, &body).await.unwrap_err();
        assert!(err.to_string().ends_with("answered HTTP 503"), "{err}");
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /hook?k=v HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("host: localhost:{port}\r\n")),
            "{request}"
        );
        assert!(
            request.contains("content-type: application/json\r\n"),
            "{request}"
        );
    }
}
