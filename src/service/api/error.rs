//! Every way a request can fail, and the one function that maps each to its HTTP status and
//! code. Client errors are 4xx by construction: only [`ApiError::Internal`] and storage failures
//! of the orchestrator map to 5xx (besides 503 while shutting down and 507 on low disk).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::super::orchestrator::OrchestratorError;
use super::parse::InputError;
use super::types::{ErrorBody, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Orchestrator(#[from] OrchestratorError),
    #[error("a valid `Authorization: Bearer <token>` header is required")]
    Unauthorized,
    #[error("request body is larger than the maximum of {limit} bytes (service.max_body_bytes)")]
    TooLarge { limit: u64 },
    #[error("Content-Type {shown} is not accepted; send application/json or multipart/form-data")]
    UnsupportedMediaType { shown: String },
    #[error("no endpoint {shown}; see /openapi.json")]
    NoRoute { shown: String },
    #[error("method not allowed on this endpoint; see /openapi.json")]
    MethodNotAllowed,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The status and code of every error: the single place where they are decided.
    pub fn classify(&self) -> (StatusCode, &'static str) {
        use OrchestratorError as O;
        match self {
            ApiError::Input(e) => (StatusCode::BAD_REQUEST, e.code()),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::NoRoute { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Orchestrator(o) => match o {
                O::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                O::ArtifactNotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
                O::NotCancellable { .. } => (StatusCode::CONFLICT, "not_cancellable"),
                O::StillRunning(_) => (StatusCode::CONFLICT, "still_running"),
                O::NotFinished { .. } => (StatusCode::CONFLICT, "not_finished"),
                O::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
                O::DiskLow { .. } => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
                O::Db(_) | O::Io { .. } | O::Artifact(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal")
                }
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.classify();
        let message = self.to_string();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(code, error = %message, "request failed");
        } else {
            tracing::debug!(code, status = status.as_u16(), "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::command::{AnalysisId, Status};

    #[test]
    fn every_client_error_maps_to_a_4xx() {
        let id = AnalysisId::generate();
        let client = [
            ApiError::Input(InputError::EmptySample),
            ApiError::Input(InputError::MissingField("file")),
            ApiError::Unauthorized,
            ApiError::TooLarge { limit: 1 },
            ApiError::UnsupportedMediaType { shown: "x".into() },
            ApiError::NoRoute { shown: "x".into() },
            ApiError::MethodNotAllowed,
            ApiError::Orchestrator(OrchestratorError::NotFound(id.clone())),
            ApiError::Orchestrator(OrchestratorError::StillRunning(id.clone())),
            ApiError::Orchestrator(OrchestratorError::NotCancellable {
                id: id.clone(),
                status: Status::Completed,
            }),
            ApiError::Orchestrator(OrchestratorError::NotFinished {
                id,
                status: Status::Queued,
            }),
        ];
        for e in client {
            assert!(e.classify().0.is_client_error(), "{e:?}");
        }
        let (status, code) = ApiError::Orchestrator(OrchestratorError::DiskLow {
            free: "1m".into(),
            min: "1g".into(),
        })
        .classify();
        assert_eq!((status.as_u16(), code), (507, "insufficient_storage"));
        let (status, code) = ApiError::Orchestrator(OrchestratorError::ShuttingDown).classify();
        assert_eq!((status.as_u16(), code), (503, "shutting_down"));
    }
}
