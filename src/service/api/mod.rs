//! The REST API: the network-facing room. Requests are checked at the door (token, declared
//! body size), parsed into typed commands, and carried out by the [`Orchestrator`]; nothing in
//! here holds sandbox or queue state.

mod auth;
pub mod error;
mod handlers;
pub mod openapi;
pub mod parse;
pub mod types;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::orchestrator::Orchestrator;
use error::ApiError;

/// What every handler shares.
pub struct App {
    pub orch: Arc<Orchestrator>,
    /// `service.api_tokens`; empty means no authentication.
    pub tokens: Vec<String>,
    /// `service.max_body_bytes`.
    pub max_body: u64,
}

/// Every route of the API (the same list `openapi.json` documents).
pub fn router(app: Arc<App>) -> Router {
    let body_limit = usize::try_from(app.max_body).unwrap_or(usize::MAX);
    Router::new()
        .route("/health", get(handlers::health))
        .route("/analyze", post(handlers::analyze))
        .route("/analyses", get(handlers::list))
        .route(
            "/results/{analysis_id}",
            get(handlers::result).delete(handlers::delete),
        )
        .route("/results/{analysis_id}/cancel", post(handlers::cancel))
        .route("/results/{analysis_id}/artifacts", get(handlers::artifacts))
        .route(
            "/results/{analysis_id}/artifacts/{*name}",
            get(handlers::artifact),
        )
        .route("/openapi.json", get(handlers::openapi))
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(app.clone(), door))
        .with_state(app)
}

/// Checks made before any body is read: the token, then the declared length (so an oversized
/// upload is answered 413 at once, without reading it). Also logs each request, without its
/// body.
async fn door(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = if path != "/health"
        && !app.tokens.is_empty()
        && !auth::authorized(req.headers(), &app.tokens)
    {
        refuse_unauthorized(req).await
    } else if declared_length(&req).is_some_and(|n| n > app.max_body) {
        let mut response = ApiError::TooLarge {
            limit: app.max_body,
        }
        .into_response();
        // The unread body is not drained: the connection ends with the answer.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    } else {
        next.run(req).await
    };
    tracing::debug!(
        method = %method,
        path = ?path,
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// Most of an unauthorised request's body read before the 401, so that a client that sent a
/// small body gets the answer: closing a socket with unread bytes makes the kernel reset the
/// connection, and a reset can discard the answer before the client reads it.
const UNAUTHORIZED_DRAIN_BYTES: usize = 64 << 10;

async fn refuse_unauthorized(req: Request) -> Response {
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    let drained = match declared_length(&req) {
        Some(n) if n <= UNAUTHORIZED_DRAIN_BYTES as u64 => {
            axum::body::to_bytes(req.into_body(), UNAUTHORIZED_DRAIN_BYTES)
                .await
                .is_ok()
        }
        Some(_) => false,
        None => !chunked,
    };
    let mut response = ApiError::Unauthorized.into_response();
    if !drained {
        // A large or unbounded body is not read for a caller without a token.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
