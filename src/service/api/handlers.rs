//! The handlers: each parses its request into a typed command, hands it to the orchestrator on
//! the blocking pool, and turns the answer into a response. None touches a sandbox, the queue
//! or a file directly.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::super::command::{AnalysisId, ArtifactName, Status};
use super::super::orchestrator::{Orchestrator, OrchestratorError};
use super::error::ApiError;
use super::parse::{self, Draft, InputError, Raw};
use super::{types, App};

/// Longest text part of a multipart submission, in bytes.
const MAX_TEXT_PART: usize = 64 << 10;

/// Most parts a multipart submission may have.
const MAX_PARTS: usize = 128;

/// Runs an orchestrator command on the blocking pool.
async fn blocking<T, F>(app: &App, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Orchestrator) -> Result<T, OrchestratorError> + Send + 'static,
    T: Send + 'static,
{
    let orch = app.orch.clone();
    tokio::task::spawn_blocking(move || f(&orch))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

fn id_from(path: Result<Path<String>, PathRejection>) -> Result<AnalysisId, ApiError> {
    match path {
        Ok(Path(text)) => Ok(parse::analysis_id(&text)?),
        Err(rejection) => Err(InputError::InvalidId {
            shown: parse::shown(&rejection.body_text()),
        }
        .into()),
    }
}

/// `GET /health`: 200 when analyses can run, 503 with the reasons otherwise.
pub async fn health(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let state = blocking(&app, |o| o.health()).await?;
    let body = types::Health::from(state);
    let status = if body.reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(body)).into_response())
}

/// `POST /analyze`: JSON with base64 `file_data`, or multipart with a `file` part.
pub async fn analyze(State(app): State<Arc<App>>, req: Request) -> Result<Response, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    // Refused before the body is read: no point receiving 64 MiB to answer 503 or 507.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    app.orch.admit(declared)?;
    let config = app.orch.config().clone();
    let submission = match mime.as_str() {
        "application/json" => {
            let body = read_body(req.into_body(), app.max_body).await?;
            parse::json_submission(&body, &config)?
        }
        "multipart/form-data" => multipart_submission(req, &app, &config).await?,
        _ => {
            return Err(ApiError::UnsupportedMediaType {
                shown: parse::shown(&content_type),
            })
        }
    };
    let accepted = blocking(&app, move |o| o.submit(submission)).await?;
    let location = format!("/results/{}", accepted.id);
    let body = types::Accepted {
        analysis_id: accepted.id.to_string(),
        status: accepted.status.to_string(),
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// The whole body, refused with 413 as soon as it passes `limit`.
async fn read_body(body: Body, limit: u64) -> Result<Bytes, ApiError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit_usize).await.map_err(|e| {
        if is_length_limit(&e) {
            ApiError::TooLarge { limit }
        } else {
            InputError::UnreadableBody(e.to_string()).into()
        }
    })
}

fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = err.source();
    }
    false
}

async fn multipart_submission(
    req: Request,
    app: &App,
    config: &crate::config::Config,
) -> Result<crate::service::command::Submission, ApiError> {
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| InputError::MalformedMultipart(e.body_text()))?;
    let mut draft = Draft::default();
    let mut parts = 0;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(e, app.max_body))?
    {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(
                InputError::MalformedMultipart(format!("more than {MAX_PARTS} parts")).into(),
            );
        }
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let file_name = field.file_name().map(str::to_string);
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| multipart_error(e, app.max_body))?;
                draft.set_file(bytes.to_vec(), file_name)?;
            }
            "file_data" => {
                return Err(InputError::InvalidField {
                    field: "file_data",
                    reason:
                        "is for JSON bodies; a multipart form sends the sample as the `file` part"
                            .into(),
                }
                .into())
            }
            _ => {
                let Some(known) = parse::JSON_FIELDS.iter().find(|f| **f == name) else {
                    return Err(InputError::UnknownField {
                        field: parse::shown(&name).trim_matches('"').to_string(),
                        accepted: "file, file_name, analysis_timeout, memory_limit, cpu_limit, \
                                   arguments, priority, callback_url"
                            .into(),
                    }
                    .into());
                };
                let text = text_part(field, known, app.max_body).await?;
                draft.set(known, Raw::Text(&text), config)?;
            }
        }
    }
    Ok(draft.finish("file", config)?)
}

async fn text_part(
    mut field: Field<'_>,
    name: &'static str,
    max_body: u64,
) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(e, max_body))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_TEXT_PART {
            return Err(InputError::InvalidField {
                field: name,
                reason: format!("is longer than {MAX_TEXT_PART} bytes"),
            }
            .into());
        }
    }
    String::from_utf8(bytes).map_err(|_| {
        InputError::InvalidField {
            field: name,
            reason: "is not UTF-8 text".into(),
        }
        .into()
    })
}

fn multipart_error(e: MultipartError, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge { limit }
    } else {
        InputError::MalformedMultipart(e.body_text()).into()
    }
}

/// `GET /analyses?status=&sha256=&limit=&offset=`.
pub async fn list(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Json<types::AnalysisPage>, ApiError> {
    let filter = parse::list_query(query.as_deref())?;
    let (limit, offset) = (filter.limit, filter.offset);
    let (rows, total) = blocking(&app, move |o| o.list(&filter)).await?;
    Ok(Json(types::AnalysisPage {
        analyses: rows.into_iter().map(types::AnalysisSummary::from).collect(),
        total,
        limit,
        offset,
    }))
}

/// `GET /results/{analysis_id}`.
pub async fn result(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<types::AnalysisResult>, ApiError> {
    let id = id_from(path)?;
    let state = blocking(&app, move |o| o.get(&id)).await?;
    Ok(Json(types::AnalysisResult::from(state)))
}

/// `POST /results/{analysis_id}/cancel`: 200 once cancelled, 202 while still tearing down.
pub async fn cancel(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = id_from(path)?;
    let row = blocking(&app, move |o| o.cancel(&id)).await?;
    let status = if row.status == Status::Running {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let body = types::CancelResult {
        analysis_id: row.id.to_string(),
        status: row.status.to_string(),
    };
    Ok((status, Json(body)).into_response())
}

/// `DELETE /results/{analysis_id}`: 204; the rows and every file of the analysis are gone.
pub async fn delete(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = id_from(path)?;
    blocking(&app, move |o| o.delete(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /results/{analysis_id}/artifacts`: every artifact in one zip, password `infected`.
pub async fn artifacts(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = id_from(path)?;
    let file_name = format!("{id}-artifacts.zip");
    let file = blocking(&app, move |o| o.artifacts(&id, None)).await?;
    zip_response(file, &file_name)
}

/// `GET /results/{analysis_id}/artifacts/{name}`: one artifact, zipped the same way.
pub async fn artifact(
    State(app): State<Arc<App>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (id, name) = match path {
        Ok(Path((id, name))) => (parse::analysis_id(&id)?, parse::artifact_name(&name)?),
        Err(rejection) => {
            return Err(InputError::InvalidId {
                shown: parse::shown(&rejection.body_text()),
            }
            .into())
        }
    };
    let file_name = format!("{id}-{}.zip", name.as_str().replace('/', "-"));
    let only: ArtifactName = name;
    let file = blocking(&app, move |o| o.artifacts(&id, Some(&only))).await?;
    zip_response(file, &file_name)
}

fn zip_response(file: std::fs::File, file_name: &str) -> Result<Response, ApiError> {
    let length = file
        .metadata()
        .map_err(|e| ApiError::Internal(format!("artifact zip: {e}")))?
        .len();
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let headers = [
        (header::CONTENT_TYPE, "application/zip".to_string()),
        (header::CONTENT_LENGTH, length.to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        ),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// `GET /openapi.json`.
pub async fn openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document().clone())
}

pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute {
        shown: parse::shown(uri.path()),
    }
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
