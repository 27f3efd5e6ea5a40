//! End-to-end analyses of Windows samples under Wine in the `windows` guest image, through
//! `aegis analyze`. The PE fixtures are compiled here with mingw-w64, as 64-bit and 32-bit
//! programs. Needs root; builds the `windows` image into the shared data directory on first
//! use (a few minutes).
//!
//! The registry, mutex and service facts come from wineserver's trace and the saved hives;
//! they are read from the report as JSON so that this file does not depend on how those
//! sections are typed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use aegis::report::{EndReason, Report, ReportStatus};
use serde_json::Value;
use support::*;

/// A report both typed and as JSON (for the Windows sections).
struct Analysis {
    report: Report,
    json: Value,
}

fn analyze_windows(sample: &Path, args: &[&str]) -> Analysis {
    analyze_windows_with(sample, args, &[])
}

/// As [`analyze_windows`], with extra variables in `aegis`'s own environment.
fn analyze_windows_with(sample: &Path, args: &[&str], env: &[(&str, &str)]) -> Analysis {
    let out = offline_aegis("windows")
        .arg("analyze")
        .arg(sample)
        .arg("--json")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("aegis runs");
    assert!(
        out.status.success(),
        "aegis analyze failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let report: Report = serde_json::from_value(json.clone()).expect("report");
    assert_no_leftovers(&report.analysis_id);
    assert_eq!(report.environment.image, "windows");
    Analysis { report, json }
}

/// Compiles a C fixture with mingw-w64 for 32 or 64 bits.
fn mingw(dir: &Path, name: &str, bits: u8, extra: &[&str]) -> PathBuf {
    let (compiler, package) = match bits {
        64 => ("x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64"),
        _ => ("i686-w64-mingw32-gcc", "gcc-mingw-w64-i686"),
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.c"));
    let is_dll = extra.contains(&"-shared");
    let out = dir.join(format!(
        "{name}{bits}.{}",
        if is_dll { "dll" } else { "exe" }
    ));
    let status = Command::new(compiler)
        .arg("-O1")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .args(extra)
        .status()
        .unwrap_or_else(|e| {
            panic!("{compiler} cannot run ({e}): install the Debian package {package}")
        });
    assert!(status.success(), "{compiler} failed for {name}");
    out
}

fn values_set(j: &Value) -> Vec<Value> {
    j["registry"]["values_set"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn value_set<'a>(values: &'a [Value], key: &str, name: &str) -> Option<&'a Value> {
    values.iter().find(|v| {
        v["key"]
            .as_str()
            .is_some_and(|k| k.eq_ignore_ascii_case(key))
            && v["name"] == name
    })
}

/// The file entry created at a Windows path (files in the prefix carry their `C:\` path).
fn created<'a>(r: &'a Report, windows_path: &str) -> Option<&'a aegis::report::FileEntry> {
    r.files
        .created
        .iter()
        .filter(|f| f.sha256.is_some())
        .find(|f| {
            f.windows_path
                .as_deref()
                .is_some_and(|w| w.eq_ignore_ascii_case(windows_path))
        })
}

fn console_program_facts(bits: u8) {
    let dir = workdir();
    let exe = mingw(dir.path(), "win_behaviour", bits, &["-lws2_32"]);
    let a = analyze_windows(&exe, &["--timeout", "60"]);
    let r = &a.report;
    assert_eq!(r.status, ReportStatus::Completed, "{:?}", r.incomplete);
    assert_eq!(r.sample.platform, "windows");
    let (format, arch) = if bits == 64 {
        ("PE32+ executable (console)", "x86_64")
    } else {
        ("PE32 executable (console)", "i386")
    };
    assert_eq!(r.sample.arch, arch);
    assert!(
        r.sample.file_type.starts_with(format),
        "{}",
        r.sample.file_type
    );
    assert_eq!(r.execution.end_reason, EndReason::Exited);
    assert_eq!(r.execution.exit_code, Some(7), "{:#?}", r.processes);
    assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
    assert_eq!(
        r.output.stdout.text,
        "child-of-fixture\r\nuser=jmiller computer=DESKTOP-4F7QK2M connect=0\r\n"
    );

    // The file dropped under C:\ProgramData, with its hash.
    let payload = created(r, r"C:\ProgramData\AegisTest\payload.txt").expect("payload");
    assert_eq!(
        payload.sha256.as_deref(),
        Some(sha256(b"aegis windows payload\n").as_str())
    );

    // wineserver is the launcher's child, not the sample's; cmd.exe is the sample's child.
    let launcher = &r.processes[0];
    assert_eq!(launcher.argv[0], aegis::windows::LAUNCHER);
    // One wineserver, the launcher's: a Windows process that found no server would start a
    // second, untraced one (what -p0 allowed between the bootstrap and the sample).
    let servers: Vec<_> = r
        .processes
        .iter()
        .filter(|p| p.image == aegis::windows::SERVER)
        .collect();
    assert_eq!(servers.len(), 1, "{servers:#?}");
    assert_eq!(servers[0].parent_id, Some(launcher.id));
    assert_eq!(servers[0].exit_code, Some(0), "wineserver exited by itself");
    let cmd = r
        .processes
        .iter()
        .find(|p| p.argv.iter().any(|a| a == "child-of-fixture") && p.execs > 0)
        .unwrap_or_else(|| panic!("cmd.exe child: {:#?}", r.processes));
    let sample = r
        .processes
        .iter()
        .rev()
        .find(|p| p.parent_id == Some(launcher.id))
        .expect("the sample's process");
    let mut ancestor = cmd.parent_id;
    while let Some(id) = ancestor.filter(|id| *id != sample.id) {
        ancestor = r.processes[id as usize - 1].parent_id;
    }
    assert_eq!(
        ancestor,
        Some(sample.id),
        "cmd.exe descends from the sample"
    );
    let windows = cmd.windows.as_ref().expect("cmd.exe's Windows view");
    assert_eq!(
        windows.command_line.as_deref(),
        Some("cmd.exe /c echo child-of-fixture")
    );

    // The TCP connection to the documentation address, answered by the simulated internet:
    // one record, seen both in the system calls and in the traffic.
    let conns: Vec<_> = r
        .network
        .connections
        .iter()
        .filter(|c| c.dst_ip.as_deref() == Some("192.0.2.10"))
        .collect();
    assert_eq!(conns.len(), 1, "{conns:#?}");
    let conn = conns[0];
    assert_eq!(conn.dst_port, Some(8443));
    assert_eq!(conn.protocol, "tcp");
    assert_eq!(conn.seen_in, "syscall+traffic", "{conn:#?}");

    // Registry and mutex, from wineserver's trace.
    let values = values_set(&a.json);
    let run = value_set(
        &values,
        r"HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run",
        "AegisUpdater",
    )
    .unwrap_or_else(|| panic!("Run key value in {values:#?}"));
    assert_eq!(run["type"], "REG_SZ");
    assert_eq!(run["data"], r"C:\ProgramData\AegisTest\updater.exe");
    let mutexes = a.json["mutexes"].as_array().cloned().unwrap_or_default();
    assert!(
        mutexes.iter().any(|m| m["name"] == "AegisFixtureMutex"),
        "{mutexes:#?}"
    );
}

#[test]
fn pe64_console_program_report_has_exact_windows_facts() {
    console_program_facts(64);
}

#[test]
fn pe32_console_program_report_has_exact_windows_facts() {
    console_program_facts(32);
}

#[test]
fn cmd_script_with_reg_add_and_sc_create() {
    let dir = workdir();
    let script = write(
        dir.path(),
        "persist.cmd",
        b"@echo off\r\n\
reg add HKCU\\Software\\AegisTest /v Marker /t REG_SZ /d from-reg-add /f\r\n\
sc create AegisTestSvc binPath= \"C:\\ProgramData\\svc.exe\" start= auto\r\n\
echo done\r\n",
    );
    let a = analyze_windows(&script, &["--timeout", "60"]);
    let r = &a.report;
    assert_eq!(r.sample.file_type, "Windows batch script");
    assert_eq!(r.execution.end_reason, EndReason::Exited);
    assert_eq!(r.execution.exit_code, Some(0));
    assert!(
        r.output.stdout.text.ends_with("done\r\n"),
        "{:?}",
        r.output.stdout.text
    );
    let values = values_set(&a.json);
    let marker = value_set(&values, r"HKEY_CURRENT_USER\Software\AegisTest", "Marker")
        .unwrap_or_else(|| panic!("reg add value in {values:#?}"));
    assert_eq!(marker["data"], "from-reg-add");
    let services = a.json["services"].as_array().cloned().unwrap_or_default();
    let svc = services
        .iter()
        .find(|s| s["name"] == "AegisTestSvc")
        .unwrap_or_else(|| panic!("service in {services:#?}"));
    assert_eq!(svc["binary_path"], r"C:\ProgramData\svc.exe");
}

#[test]
fn crashing_program_ends_with_the_access_violation_code() {
    for bits in [64, 32] {
        let dir = workdir();
        let exe = mingw(dir.path(), "win_crash", bits, &[]);
        let r = analyze_windows(&exe, &["--timeout", "60"]).report;
        assert_eq!(r.execution.end_reason, EndReason::Exited, "{bits}");
        // winedbg --auto then fails to attach (the monitor already traces the process) and
        // says so on stdout.
        assert!(
            r.output.stdout.text.starts_with("about to crash\r\n"),
            "{:?}",
            r.output.stdout.text
        );
        assert!(r
            .output
            .stderr
            .text
            .contains("Unhandled page fault on write access"));
        // Wine ends a process with an unhandled access violation (0xC0000005) with exit
        // status 5, the low byte of the NTSTATUS.
        assert_eq!(r.execution.exit_code, Some(5), "{bits}: {:#?}", r.processes);
    }
}

#[test]
fn gui_program_runs_under_the_virtual_display() {
    let dir = workdir();
    let exe = mingw(dir.path(), "win_gui", 64, &["-mwindows"]);
    let r = analyze_windows(&exe, &["--timeout", "60"]).report;
    assert!(r.sample.file_type.starts_with("PE32+ executable (GUI)"));
    assert_eq!(r.execution.exit_code, Some(3), "{:#?}", r.processes);
    let f = created(&r, r"C:\ProgramData\gui-window.txt").expect("gui file");
    assert_eq!(
        f.sha256.as_deref(),
        Some(sha256(b"AegisFixtureWindow\n").as_str())
    );
    assert!(r.processes.iter().any(|p| p.image == "/usr/bin/Xvfb"));
}

#[test]
fn sleeper_is_stopped_at_the_timeout_and_its_registry_change_is_kept() {
    let dir = workdir();
    let exe = mingw(dir.path(), "win_sleep", 32, &[]);
    let a = analyze_windows(&exe, &["--timeout", "8"]);
    let r = &a.report;
    assert_eq!(r.execution.end_reason, EndReason::Timeout);
    let limit = 8.0 + aegis::windows::STOP_GRACE_S as f64 + 1.0;
    assert!(
        r.execution.duration_s >= 8.0 && r.execution.duration_s < limit,
        "{}",
        r.execution.duration_s
    );
    assert_eq!(r.execution.signal.as_deref(), Some("SIGKILL"));
    let values = values_set(&a.json);
    let started = value_set(
        &values,
        r"HKEY_CURRENT_USER\Software\AegisSleeper",
        "Started",
    )
    .unwrap_or_else(|| panic!("value in {values:#?}"));
    assert_eq!(started["data"], "yes");
}

#[test]
fn dll_runs_its_first_export_or_the_one_given() {
    for bits in [64, 32] {
        let dir = workdir();
        let dll = mingw(dir.path(), "win_dll", bits, &["-shared", "-Wl,--kill-at"]);
        let r = analyze_windows(&dll, &["--timeout", "60"]).report;
        assert_eq!(r.execution.end_reason, EndReason::Exited);
        let rundll = format!(
            r"C:\windows\{}\rundll32.exe",
            if bits == 64 { "system32" } else { "syswow64" }
        );
        assert_eq!(r.execution.command[3], rundll);
        assert!(
            r.execution.command[4].ends_with(".dll,Alpha"),
            "{:?}",
            r.execution.command
        );
        let f = created(&r, r"C:\ProgramData\dll-export.txt").expect("export's file");
        assert_eq!(
            f.sha256.as_deref(),
            Some(sha256(b"Alpha\n").as_str()),
            "{bits}"
        );
        assert!(r
            .events_of_note
            .iter()
            .any(|e| e.kind == "dll_export" && e.detail.contains("first export")));

        let r = analyze_windows(&dll, &["--timeout", "60", "--", "Beta"]).report;
        let f = created(&r, r"C:\ProgramData\dll-export.txt").expect("export's file");
        assert_eq!(
            f.sha256.as_deref(),
            Some(sha256(b"Beta\n").as_str()),
            "{bits}"
        );
    }
}

#[test]
fn nothing_the_sample_does_reaches_the_host() {
    let canary = tempfile::Builder::new()
        .prefix("aegis-canary-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let canary_win = canary.path().display().to_string().replace('/', "\\");
    let host_prefix = Path::new("/root/.wine");
    let prefix_before = std::fs::metadata(host_prefix)
        .ok()
        .map(|m| m.modified().unwrap());
    let dir = workdir();
    let script = format!(
        "@echo off\r\n\
echo owned> Z:{canary_win}\\z.txt\r\n\
echo owned> \\\\?\\unix{canary_win}\\unix.txt\r\n\
mkdir C:\\users\\jmiller\\Desktop\\x\r\n\
echo owned> C:\\users\\jmiller\\Desktop\\x\\desk.txt\r\n\
dir Z:\\ \r\n\
set\r\n\
echo end\r\n"
    );
    let s = write(dir.path(), "escape.bat", script.as_bytes());
    let env_canary = ("AEGIS_HOST_CANARY", "host-secret-value");
    let r = analyze_windows_with(&s, &["--timeout", "60"], &[env_canary]).report;
    // The Windows environment block: the session's, nothing of the host's.
    let out = &r.output.stdout.text;
    assert!(!out.contains("host-secret-value"), "{out}");
    assert!(out.contains("USERNAME=jmiller\r\n"), "{out}");
    assert!(out.contains("COMPUTERNAME=DESKTOP-4F7QK2M\r\n"), "{out}");
    assert!(out.contains("USERPROFILE=C:\\users\\jmiller\r\n"), "{out}");
    assert_eq!(r.execution.end_reason, EndReason::Exited);
    assert!(
        r.output.stdout.text.ends_with("end\r\n"),
        "{:?}",
        r.output.stdout.text
    );
    let left: Vec<_> = std::fs::read_dir(canary.path()).unwrap().collect();
    assert!(left.is_empty(), "the sample reached the host: {left:?}");
    let prefix_after = std::fs::metadata(host_prefix)
        .ok()
        .map(|m| m.modified().unwrap());
    assert_eq!(
        prefix_before, prefix_after,
        "the host's own Wine prefix changed"
    );
    assert!(!Path::new("/root/Desktop/x").exists());
    // The Desktop folder is the prefix's own, so the write stayed in the writable layer.
    assert!(created(&r, r"C:\users\jmiller\Desktop\x\desk.txt").is_some());
}

#[test]
fn vbs_and_js_run_under_cscript_and_a_script_error_is_reported() {
    let dir = workdir();
    let vbs = write(
        dir.path(),
        "drop.vbs",
        b"Set fso = CreateObject(\"Scripting.FileSystemObject\")\r\n\
Set f = fso.CreateTextFile(\"C:\\ProgramData\\vbs-was-here.txt\", True)\r\n\
f.Write \"vbs\"\r\n\
f.Close\r\n\
WScript.Echo \"echo from vbs\"\r\n",
    );
    let r = analyze_windows(&vbs, &["--timeout", "60"]).report;
    assert_eq!(r.sample.file_type, "VBScript (Windows Script Host)");
    assert_eq!(r.execution.command[3], r"C:\windows\system32\cscript.exe");
    assert_eq!(r.execution.exit_code, Some(0));
    assert_eq!(r.output.stdout.text, "echo from vbs\r\n");
    let f = created(&r, r"C:\ProgramData\vbs-was-here.txt").expect("vbs file");
    assert_eq!(f.sha256.as_deref(), Some(sha256(b"vbs").as_str()));
    assert!(r.events_of_note.iter().all(|e| e.kind != "script_error"));

    // Wine's WSH swallows runtime errors (exit status 0, no message): the report says so.
    let js = write(
        dir.path(),
        "broken.js",
        b"WScript.Echo(\"before\");\r\nvar o = new ActiveXObject(\"Aegis.NoSuchObject\");\r\n\
WScript.Echo(\"after\");\r\n",
    );
    let r = analyze_windows(&js, &["--timeout", "60"]).report;
    assert_eq!(r.sample.file_type, "JScript (Windows Script Host)");
    assert_eq!(r.output.stdout.text, "before\r\n");
    assert!(
        r.events_of_note.iter().any(|e| e.kind == "script_error"),
        "{:#?}",
        r.events_of_note
    );
}

#[test]
fn foreign_and_truncated_pe_files_are_not_executed_with_a_reason() {
    let dir = workdir();
    let exe = std::fs::read(mingw(dir.path(), "win_crash", 64, &[])).unwrap();
    let pe_offset = u32::from_le_bytes(exe[0x3c..0x40].try_into().unwrap()) as usize;
    let mut arm = exe.clone();
    arm[pe_offset + 4..pe_offset + 6].copy_from_slice(&0xaa64u16.to_le_bytes());
    let arm = write(dir.path(), "arm64.exe", &arm);
    let r = analyze(&arm, &[]);
    assert_eq!(r.execution.end_reason, EndReason::NotExecuted);
    assert_eq!(r.sample.platform, "windows");
    let error = r.execution.error.unwrap();
    assert!(error.contains("machine type 0xaa64"), "{error}");

    let cut = write(dir.path(), "cut.exe", &exe[..pe_offset + 8]);
    let r = analyze(&cut, &[]);
    assert_eq!(r.execution.end_reason, EndReason::NotExecuted);
    let error = r.execution.error.unwrap();
    assert!(
        error.contains("PE file is truncated or malformed"),
        "{error}"
    );
}

#[test]
fn windows_image_prefix_is_prepared_and_hardened() {
    let data = aegis::paths::DataDir::new(data_dir());
    let image = aegis::image::ImageStore::new(&data)
        .ensure("windows", &mut |line: &str| eprintln!("image: {line}"))
        .expect("windows image");
    let root = &image.rootfs;
    let prefix = root.join("root/.wine");
    let hostname = std::fs::read_to_string(root.join("etc/hostname")).unwrap();
    assert_eq!(hostname, "DESKTOP-4F7QK2M\n");
    // Prepared once at build time, owned by guest root (shifted to UID_BASE on the host).
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(prefix.join(".update-timestamp")).expect("prepared prefix");
    assert_eq!(meta.uid(), aegis::guest::UID_BASE);

    // Only C: is mapped, to the prefix's own drive_c.
    let drives: Vec<String> = std::fs::read_dir(prefix.join("dosdevices"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(drives, vec!["c:"]);
    assert_eq!(
        std::fs::read_link(prefix.join("dosdevices/c:")).unwrap(),
        Path::new("../drive_c")
    );
    // User folders are real folders, and no link anywhere leaves the prefix.
    let profile = prefix.join("drive_c/users/jmiller");
    for folder in [
        "Desktop",
        "Documents",
        "Downloads",
        "Music",
        "Pictures",
        "Videos",
    ] {
        let meta = std::fs::symlink_metadata(profile.join(folder)).unwrap();
        assert!(meta.is_dir(), "{folder} is {:?}", meta.file_type());
    }
    let mut stack = vec![prefix.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_symlink() {
                let target = std::fs::read_link(entry.path()).unwrap();
                assert!(
                    !target.is_absolute(),
                    "{} -> {}",
                    entry.path().display(),
                    target.display()
                );
            }
        }
    }
    let decoy = std::fs::read_to_string(profile.join("Desktop/VPN setup.txt")).unwrap();
    assert!(decoy.contains("User: jmiller"));

    // Registry: no menu builder, no crash dialog, no Mono/Gecko prompt, the computer name.
    let user = std::fs::read_to_string(prefix.join("user.reg")).unwrap();
    for line in [
        "\"winemenubuilder.exe\"=\"\"",
        "\"mscoree\"=\"\"",
        "\"mshtml\"=\"\"",
        "\"ShowCrashDialog\"=dword:00000000",
    ] {
        assert!(user.contains(line), "user.reg lacks {line}");
    }
    let system = std::fs::read_to_string(prefix.join("system.reg")).unwrap();
    assert!(
        !system.contains("winemenubuilder.exe -a -r"),
        "RunServices entry left"
    );
    assert!(system.contains("\"ComputerName\"=\"DESKTOP-4F7QK2M\""));
    assert!(system.contains("\"RegisteredOwner\"=\"John Miller\""));
}
