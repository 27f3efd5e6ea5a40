//! The OpenAPI 3.0 document served at `/openapi.json` and kept in `docs/openapi.json` (a test
//! keeps the two equal). Schemas come from the same Rust types the handlers serialise, the
//! report's included, so the document cannot drift from what is sent.

use std::sync::OnceLock;

use schemars::gen::SchemaSettings;
use serde_json::{json, Value};

use super::types;
use crate::service::webhook::{Callback, POLICY};

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let mut gen = SchemaSettings::openapi3().into_generator();
    let r = |v: schemars::schema::Schema| serde_json::to_value(v).unwrap_or(Value::Null);
    let submit_json = r(gen.subschema_for::<types::SubmitRequest>());
    let submit_form = r(gen.subschema_for::<types::SubmitForm>());
    let accepted = r(gen.subschema_for::<types::Accepted>());
    let result = r(gen.subschema_for::<types::AnalysisResult>());
    let page = r(gen.subschema_for::<types::AnalysisPage>());
    let cancel = r(gen.subschema_for::<types::CancelResult>());
    let health = r(gen.subschema_for::<types::Health>());
    let callback = r(gen.subschema_for::<Callback>());
    gen.subschema_for::<types::ErrorBody>();
    let schemas = serde_json::to_value(gen.take_definitions()).unwrap_or(Value::Null);

    let id_param = json!({"name": "analysis_id", "in": "path", "required": true,
        "description": "A lowercase UUID as returned by POST /analyze; anything else is 400.",
        "schema": {"type": "string", "format": "uuid"}});
    let zip = json!({"description": "A zip encrypted with the password `infected` (ZipCrypto).",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}});

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "AegisAI Sandbox Orchestrator",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Submit a file, let it run in an isolated sandbox, read its behavioural \
                report. Every error is `{\"error\": {\"code\", \"message\"}}`. When \
                `service.api_tokens` is set, every endpoint but /health needs \
                `Authorization: Bearer <token>`."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/health": {"get": {
                "summary": "Whether the service can analyse now",
                "security": [],
                "responses": {
                    "200": body("Ready: status `ok`.", &health),
                    "503": body("Cannot analyse: status `degraded` and the reasons.", &health)
                }
            }},
            "/analyze": {"post": {
                "summary": "Submit a sample",
                "description": format!("JSON with base64 `file_data`, or multipart/form-data with \
                    a `file` part. Optional `callback_url` receives the final status ({POLICY}). \
                    The body may be at most `service.max_body_bytes` (64 MiB by default)."),
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": submit_json},
                    "multipart/form-data": {"schema": submit_form}
                }},
                "callbacks": {"finished": {"{$request.body#/callback_url}": {"post": {
                    "requestBody": {"content": {"application/json": {"schema": callback}}},
                    "responses": {"200": {"description": "Any 2xx ends the retries."}}
                }}}},
                "responses": {
                    "202": body("Queued.", &accepted),
                    "400": error("A field is missing, malformed or out of range."),
                    "401": error("Token required."),
                    "413": error("Body over service.max_body_bytes."),
                    "415": error("Neither JSON nor multipart."),
                    "503": error("Shutting down."),
                    "507": error("Free disk below service.min_free_disk.")
                }
            }},
            "/analyses": {"get": {
                "summary": "List analyses, newest first",
                "parameters": [
                    query("status", "queued, running, completed, failed or cancelled",
                        json!({"type": "string", "enum": ["queued", "running", "completed", "failed", "cancelled"]})),
                    query("sha256", "The sample's SHA-256 (64 hex digits)", json!({"type": "string"})),
                    query("limit", "Page size, 1 to 100 (default 20)",
                        json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 20})),
                    query("offset", "Analyses to skip (default 0)",
                        json!({"type": "integer", "minimum": 0, "default": 0}))
                ],
                "responses": {
                    "200": body("One page.", &page),
                    "400": error("A bad or unknown parameter."),
                    "401": error("Token required.")
                }
            }},
            "/results/{analysis_id}": {
                "get": {
                    "summary": "Status of an analysis, and its report once it has ended",
                    "parameters": [id_param.clone()],
                    "responses": {
                        "200": body("The analysis.", &result),
                        "400": error("Malformed id."),
                        "401": error("Token required."),
                        "404": error("No such analysis.")
                    }
                },
                "delete": {
                    "summary": "Delete an analysis: its rows and every file",
                    "parameters": [id_param.clone()],
                    "responses": {
                        "204": {"description": "Deleted."},
                        "400": error("Malformed id."),
                        "401": error("Token required."),
                        "404": error("No such analysis."),
                        "409": error("Running: cancel it first.")
                    }
                }
            },
            "/results/{analysis_id}/cancel": {"post": {
                "summary": "Cancel a queued or running analysis",
                "parameters": [id_param.clone()],
                "responses": {
                    "200": body("Cancelled (or it ended first; the status says which).", &cancel),
                    "202": body("Still tearing the sandbox down; poll the result.", &cancel),
                    "400": error("Malformed id."),
                    "401": error("Token required."),
                    "404": error("No such analysis."),
                    "409": error("Already finished.")
                }
            }},
            "/results/{analysis_id}/artifacts": {"get": {
                "summary": "Every artifact (dropped files, output streams) in one zip",
                "parameters": [id_param.clone()],
                "responses": {
                    "200": zip.clone(),
                    "400": error("Malformed id."),
                    "401": error("Token required."),
                    "404": error("No such analysis."),
                    "409": error("Not finished yet.")
                }
            }},
            "/results/{analysis_id}/artifacts/{name}": {"get": {
                "summary": "One artifact, by the name the report gives it, in a zip",
                "parameters": [id_param, {"name": "name", "in": "path", "required": true,
                    "description": "`dropped/<sha256>`, `stdout.bin` or `stderr.bin`",
                    "schema": {"type": "string"}}],
                "responses": {
                    "200": zip,
                    "400": error("Malformed id or artifact name."),
                    "401": error("Token required."),
                    "404": error("No such analysis or artifact."),
                    "409": error("Not finished yet.")
                }
            }},
            "/openapi.json": {"get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.0",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}
            }}
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}

fn body(description: &str, schema: &Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn error(description: &str) -> Value {
    body(
        description,
        &json!({"$ref": "#/components/schemas/ErrorBody"}),
    )
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_to_a_component() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
        assert!(schemas.contains_key("Report"));
    }

    #[test]
    fn the_documented_json_fields_are_the_parsed_ones() {
        let schemas = &document()["components"]["schemas"];
        let props = schemas["SubmitRequest"]["properties"].as_object().unwrap();
        let mut documented: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut parsed = super::super::parse::JSON_FIELDS.to_vec();
        documented.sort_unstable();
        parsed.sort_unstable();
        assert_eq!(documented, parsed);
    }
}
