//! The REST API end to end: the real `aegis serve`, real analyses of small shell scripts.
//! Needs root (the native sandbox) and builds the shared guest image on first use.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{b64, created_paths, multipart, script, Sandbox};
use serde_json::{json, Value};

fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

#[test]
fn json_submission_runs_and_is_fetched_listed_and_filtered() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({}), 2);
    let tag = format!("json-{}", uid());
    let source = script(&tag, "from json", "0");
    let id = server.submit(&source, "dropper.sh", json!({"priority": 7}));

    let r = server.wait_terminal(&id);
    let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "analysis_id",
            "ended_at",
            "error",
            "report",
            "started_at",
            "status",
            "submitted_at"
        ]
    );
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["analysis_id"], id.as_str());
    assert_eq!(r["error"], Value::Null);
    let (sub, start, end) = (
        r["submitted_at"].as_str().unwrap(),
        r["started_at"].as_str().unwrap(),
        r["ended_at"].as_str().unwrap(),
    );
    assert!(sub <= start && start <= end, "{sub} {start} {end}");
    let report = &r["report"];
    assert_eq!(report["analysis_id"], id.as_str());
    assert_eq!(report["status"], "completed");
    assert_eq!(report["sample"]["file_name"], "dropper.sh");
    assert_eq!(report["execution"]["end_reason"], "exited");
    assert_eq!(report["execution"]["exit_code"], 0);
    assert_eq!(created_paths(report), vec![format!("/tmp/{tag}.txt")]);
    let sha256 = report["sample"]["sha256"].as_str().unwrap().to_string();

    let page = server
        .get(&format!("/analyses?sha256={sha256}&status=completed"))
        .json();
    assert_eq!(page["total"], 1);
    let item = &page["analyses"][0];
    assert_eq!(item["analysis_id"], id.as_str());
    assert_eq!(item["file_name"], "dropper.sh");
    assert_eq!(item["sha256"], sha256.as_str());
    assert_eq!(item["size"], source.len());
    assert_eq!(item["priority"], 7);
    assert_eq!(item["attempts"], 1);
    assert_eq!(server.get("/analyses?status=queued").json()["total"], 0);

    // The same bytes again: a second analysis, run once.
    let again = server.submit(&source, "dropper.sh", json!({}));
    assert_ne!(again, id);
    assert_eq!(server.wait_terminal(&again)["status"], "completed");
    let page = server
        .get(&format!("/analyses?sha256={sha256}&limit=1"))
        .json();
    assert_eq!(
        (page["total"].as_u64(), page["limit"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(page["analyses"][0]["analysis_id"], again.as_str());
    assert_eq!(page["analyses"][0]["attempts"], 1);
    let page = server
        .get(&format!("/analyses?sha256={sha256}&limit=1&offset=1"))
        .json();
    assert_eq!(page["analyses"][0]["analysis_id"], id.as_str());
}

#[test]
fn multipart_submission_with_arguments_runs_like_curl_f() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({}), 1);
    let tag = format!("multi-{}", uid());
    let source = format!("#!/bin/sh\necho \"$@\" > /tmp/{tag}.txt\n");
    let (content_type, body) = multipart(&[
        ("file", Some("multi.sh"), source.as_bytes()),
        ("analysis_timeout", None, b"10"),
        ("arguments", None, b"one"),
        ("arguments", None, b"two words"),
        ("memory_limit", None, b"256m"),
    ]);
    let reply = server.request("POST", "/analyze", Some(&content_type), Some(body));
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let id = reply.json()["analysis_id"].as_str().unwrap().to_string();
    assert_eq!(
        reply.header("location"),
        Some(format!("/results/{id}").as_str())
    );

    let r = server.wait_terminal(&id);
    assert_eq!(r["status"], "completed", "{r}");
    let report = &r["report"];
    assert_eq!(report["sample"]["file_name"], "multi.sh");
    assert_eq!(
        report["execution"]["command"],
        json!(["/root/multi.sh", "one", "two words"])
    );
    assert_eq!(report["environment"]["limits"]["timeout_s"], 10);
    assert_eq!(
        report["environment"]["limits"]["memory_bytes"],
        256u64 << 20
    );
    assert_eq!(created_paths(report), vec![format!("/tmp/{tag}.txt")]);
}

#[test]
fn the_network_is_chosen_per_submission_and_a_real_internet_is_refused() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({}), 2);
    // Only the guest's own addresses: nothing here reaches for the outside.
    let script = "#!/bin/sh\nip -brief link | cut -d' ' -f1\n";
    let none = server.submit(script, "n.sh", json!({"network": "none"}));
    let sim = server.submit(script, "s.sh", json!({"dns": "nxdomain"}));
    let none = server.wait_terminal(&none);
    let sim = server.wait_terminal(&sim);
    assert_eq!(none["report"]["environment"]["network"], "none", "{none}");
    assert_eq!(none["report"]["output"]["stdout"]["text"], "lo\n");
    assert!(none["report"]["network"]["dns"].is_null());
    assert!(none["report"]["network"]["note"]
        .as_str()
        .unwrap()
        .contains("loopback only"));
    assert_eq!(
        sim["report"]["environment"]["network"], "simulated",
        "{sim}"
    );
    assert_eq!(sim["report"]["network"]["dns_mode"], "nxdomain");
    assert_eq!(sim["report"]["output"]["stdout"]["text"], "lo\neth0\n");
    assert_eq!(sim["report"]["network"]["pcap"], "network.pcap");
    let reply = server.post_json(
        "/analyze",
        &json!({"file_data": b64(b"#!/bin/sh\n"), "network": "internet"}),
    );
    let message = reply.assert_error(400, "invalid_field");
    assert!(
        message.contains("no real-internet mode exists"),
        "{message}"
    );
}

#[test]
fn artifacts_come_as_one_zip_that_opens_with_infected() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({}), 1);
    let tag = format!("art-{}", uid());
    let id = server.submit(
        &format!("#!/bin/sh\necho dropped-{tag} > /tmp/{tag}.txt\necho on-stdout\n"),
        "a.sh",
        json!({}),
    );
    let r = server.wait_terminal(&id);
    let created = &r["report"]["files"]["created"][0];
    let artifact = created["artifact"].as_str().unwrap().to_string();
    assert!(artifact.starts_with("dropped/"), "{artifact}");

    let reply = server.get(&format!("/results/{id}/artifacts"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/zip"));
    assert_eq!(
        reply.header("content-disposition"),
        Some(format!("attachment; filename=\"{id}-artifacts.zip\"").as_str())
    );
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(reply.body.clone())).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    // The capture of the simulated internet is an artifact of every analysis that has one.
    assert_eq!(
        names,
        vec![
            artifact.clone(),
            "network.pcap".to_string(),
            "stdout.bin".to_string()
        ]
    );
    for i in 0..zip.len() {
        assert!(
            zip.by_index_raw(i).unwrap().encrypted(),
            "entry {i} not encrypted"
        );
    }
    // ZipCrypto checks a password against one byte, so a wrong one passes that check once in
    // 256 tries; it still never yields the content (the CRC check fails on reading).
    let wrong = zip
        .by_name_decrypt(&artifact, b"not-infected")
        .ok()
        .and_then(|mut f| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).ok().map(|_| bytes)
        });
    assert_eq!(wrong, None);
    let mut text = String::new();
    zip.by_name_decrypt(&artifact, b"infected")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, format!("dropped-{tag}\n"));
    let mut out = String::new();
    zip.by_name_decrypt("stdout.bin", b"infected")
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "on-stdout\n");

    let one = server.get(&format!("/results/{id}/artifacts/{artifact}"));
    assert_eq!(one.status, 200);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(one.body)).unwrap();
    assert_eq!(zip.len(), 1);
    let mut text = String::new();
    zip.by_name_decrypt(&artifact, b"infected")
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, format!("dropped-{tag}\n"));

    server
        .get(&format!("/results/{id}/artifacts/stderr.bin"))
        .assert_error(404, "not_found");
    server
        .get(&format!("/results/{id}/artifacts/report.json"))
        .assert_error(400, "invalid_artifact_name");
    server
        .get(&format!(
            "/results/{id}/artifacts/dropped/..%2F..%2Freport.json"
        ))
        .assert_error(400, "invalid_artifact_name");
}

#[test]
fn cancel_and_delete_follow_the_lifecycle() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({}), 1);
    let long = server.submit(
        "#!/bin/sh\nsleep 30\n",
        "long.sh",
        json!({"analysis_timeout": 60}),
    );
    let queued = server.submit("#!/bin/sh\necho\n", "queued.sh", json!({}));
    server.wait_for(&long, &["running"], Duration::from_secs(30));
    assert_eq!(server.result(&queued)["status"], "queued");

    server
        .request("DELETE", &format!("/results/{long}"), None, None)
        .assert_error(409, "still_running");

    let reply = server.request("POST", &format!("/results/{queued}/cancel"), None, None);
    assert_eq!(
        (reply.status, reply.json()),
        (200, json!({"analysis_id": queued, "status": "cancelled"}))
    );
    std::thread::sleep(Duration::from_millis(300));
    let reply = server.request("POST", &format!("/results/{long}/cancel"), None, None);
    assert_eq!(
        (reply.status, reply.json()),
        (200, json!({"analysis_id": long, "status": "cancelled"}))
    );
    let r = server.result(&long);
    assert_eq!(
        (r["status"].as_str(), r["error"].as_str()),
        (Some("cancelled"), None)
    );
    assert!(r["ended_at"].is_string());
    server
        .request("POST", &format!("/results/{long}/cancel"), None, None)
        .assert_error(409, "not_cancellable");
    assert_eq!(
        std::fs::read_dir(sandbox.data().join("runs"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );

    // The worker is free again.
    let next = server.submit("#!/bin/sh\necho next\n", "next.sh", json!({}));
    assert_eq!(server.wait_terminal(&next)["status"], "completed");

    // Delete takes the rows and every file.
    let analysis_dir = sandbox.data().join("analyses").join(&next);
    let sample_file = sandbox.data().join("samples").join(&next);
    assert!(analysis_dir.join("report.json").is_file() && sample_file.is_file());
    let reply = server.request("DELETE", &format!("/results/{next}"), None, None);
    assert_eq!((reply.status, reply.body.len()), (204, 0));
    assert!(!analysis_dir.exists() && !sample_file.exists());
    server
        .get(&format!("/results/{next}"))
        .assert_error(404, "not_found");
    server
        .request("DELETE", &format!("/results/{next}"), None, None)
        .assert_error(404, "not_found");
    let rows: i64 = sandbox
        .db()
        .query_row(
            "SELECT COUNT(*) FROM transitions WHERE analysis_id = ?1",
            [&next],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn twenty_concurrent_submissions_stay_isolated_and_within_concurrency() {
    let sandbox = Sandbox::new();
    let server = std::sync::Arc::new(sandbox.serve(json!({}), 2));
    let run = uid();
    let submitters: Vec<_> = (0..20)
        .map(|n| {
            let server = server.clone();
            let tag = format!("c{n}-{run}");
            std::thread::spawn(move || {
                let id =
                    server.submit(&script(&tag, &tag, "0.3"), &format!("job{n}.sh"), json!({}));
                (tag, id)
            })
        })
        .collect();
    let jobs: Vec<(String, String)> = submitters.into_iter().map(|h| h.join().unwrap()).collect();

    let mut intervals = Vec::new();
    for (tag, id) in &jobs {
        let r = server.wait_terminal(id);
        assert_eq!(r["status"], "completed", "{r}");
        assert_eq!(
            created_paths(&r["report"]),
            vec![format!("/tmp/{tag}.txt")],
            "{id}"
        );
        intervals.push((
            r["started_at"].as_str().unwrap().to_string(),
            r["ended_at"].as_str().unwrap().to_string(),
        ));
    }
    let mut ids: Vec<&String> = jobs.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);

    // Most sandboxes alive at once, from the recorded intervals (an end before a start at
    // the same millisecond).
    let mut events: Vec<(String, i32)> = intervals
        .iter()
        .flat_map(|(s, e)| [(s.clone(), 1), (e.clone(), -1)])
        .collect();
    events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0, 0);
    for (_, delta) in events {
        now += delta;
        most = most.max(now);
    }
    assert_eq!(most, 2, "{intervals:?}");
    let page = server.get("/analyses?limit=100").json();
    assert_eq!(page["total"], 20);
    assert!(page["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["attempts"] == 1));
}

#[test]
fn jobs_run_by_priority_then_in_submission_order() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({}), 1);
    let blocker = server.submit("#!/bin/sh\nsleep 1\n", "blocker.sh", json!({}));
    server.wait_for(&blocker, &["running"], Duration::from_secs(30));
    let low1 = server.submit("#!/bin/sh\necho\n", "low1.sh", json!({"priority": 1}));
    let high = server.submit("#!/bin/sh\necho\n", "high.sh", json!({"priority": 9}));
    let low2 = server.submit("#!/bin/sh\necho\n", "low2.sh", json!({"priority": 1}));
    let default = server.submit("#!/bin/sh\necho\n", "default.sh", json!({}));
    let mut started: Vec<(String, &str)> = [
        (&blocker, "blocker"),
        (&high, "high"),
        (&default, "default"),
        (&low1, "low1"),
        (&low2, "low2"),
    ]
    .iter()
    .map(|(id, name)| {
        (
            server.wait_terminal(id)["started_at"]
                .as_str()
                .unwrap()
                .to_string(),
            *name,
        )
    })
    .collect();
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, n)| *n).collect();
    assert_eq!(order, ["blocker", "high", "default", "low1", "low2"]);
}

#[test]
fn callbacks_are_retried_until_delivered_and_never_leave_loopback() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        for attempt in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let status = if attempt == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
            got.push((
                std::time::Instant::now(),
                head,
                String::from_utf8(body).unwrap(),
            ));
        }
        got
    });

    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({}), 1);
    let url = format!("http://127.0.0.1:{port}/hook?source=aegis");
    let id = server.submit("#!/bin/sh\necho\n", "cb.sh", json!({"callback_url": url}));
    server.wait_terminal(&id);
    let got = receiver.join().unwrap();
    assert_eq!(got.len(), 2);
    let waited = got[1].0.duration_since(got[0].0);
    assert!(
        waited >= Duration::from_millis(900),
        "retried after {waited:?}"
    );
    assert!(
        got[1].1.starts_with("POST /hook?source=aegis HTTP/1.1\r\n"),
        "{}",
        got[1].1
    );
    let body: Value = serde_json::from_str(&got[1].2).unwrap();
    assert_eq!(body["analysis_id"], id.as_str());
    assert_eq!(body["status"], "completed");
    assert_eq!(got[0].2, got[1].2);

    let state = || -> (String, i64) {
        sandbox
            .db()
            .query_row(
                "SELECT webhook_state, webhook_attempts FROM analyses WHERE id = ?1",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let started = std::time::Instant::now();
    while state().0 != "delivered" && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(state(), ("delivered".to_string(), 2));

    for bad in [
        "http://192.0.2.1/hook",
        "http://localhost.example.com/",
        "https://127.0.0.1/",
    ] {
        let reply = server.post_json(
            "/analyze",
            &json!({"file_data": "aGk=", "callback_url": bad}),
        );
        let message = reply.assert_error(400, "invalid_field");
        assert!(
            message.contains("loopback hosts (127.0.0.0/8, [::1] or localhost)"),
            "{message}"
        );
    }
}

#[test]
fn openapi_document_served_equals_the_one_in_the_repo() {
    let sandbox = Sandbox::new();
    let server = sandbox.serve(json!({}), 1);
    let served = server.get("/openapi.json").json();
    let path = common::repo_file("docs/openapi.json");
    if std::env::var_os("AEGIS_BLESS").is_some() {
        let mut text = serde_json::to_string_pretty(&served).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
        .unwrap_or(Value::Null);
    assert!(
        kept == served,
        "docs/openapi.json differs from GET /openapi.json; regenerate it with \
         AEGIS_BLESS=1 cargo test --test api openapi"
    );
    // Every documented path answers (with something other than "no such endpoint").
    for (path, ops) in served["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{analysis_id}", "00000000-0000-4000-8000-000000000000")
            .replace("{name}", "stdout.bin");
        for method in ops.as_object().unwrap().keys() {
            let reply = server.request(
                &method.to_uppercase(),
                &concrete,
                Some("application/json"),
                Some(b"{}".to_vec()),
            );
            let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            assert!(
                reply.status != 405
                    && !(reply.status == 404
                        && body["error"]["message"]
                            .as_str()
                            .unwrap_or("")
                            .starts_with("no endpoint")),
                "{method} {path}: {} {body}",
                reply.status
            );
        }
    }
}
