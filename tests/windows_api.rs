//! A Windows PE submitted through the REST API runs under Wine like `aegis analyze` runs it.
//! Needs root and mingw-w64 (gcc-mingw-w64-x86-64); builds the `windows` image on first use.

mod common;

use std::process::Command;

use common::{b64, Sandbox};
use serde_json::json;

#[test]
fn pe_submitted_as_json_runs_under_wine() {
    let work = tempfile::tempdir().unwrap();
    let exe = work.path().join("invoice.exe");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/win_crash.c");
    let status = Command::new("x86_64-w64-mingw32-gcc")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| {
            panic!("x86_64-w64-mingw32-gcc cannot run ({e}): install gcc-mingw-w64-x86-64")
        });
    assert!(status.success());
    let bytes = std::fs::read(&exe).unwrap();

    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({}), 1);
    let reply = server.post_json(
        "/analyze",
        &json!({"file_data": b64(&bytes), "file_name": "invoice.exe", "analysis_timeout": 60}),
    );
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let id = reply.json()["analysis_id"].as_str().unwrap().to_string();
    let r = server.wait_terminal(&id);
    assert_eq!(r["status"], "completed", "{r}");
    let report = &r["report"];
    assert_eq!(report["environment"]["image"], "windows");
    assert_eq!(report["environment"]["hostname"], "DESKTOP-4F7QK2M");
    assert_eq!(report["sample"]["platform"], "windows");
    assert_eq!(
        report["sample"]["file_type"],
        "PE32+ executable (console), x86_64"
    );
    assert_eq!(report["execution"]["end_reason"], "exited");
    assert_eq!(
        report["execution"]["exit_code"], 5,
        "the access violation's low byte"
    );
    assert!(report["output"]["stdout"]["text"]
        .as_str()
        .unwrap()
        .starts_with("about to crash\r\n"));
}
