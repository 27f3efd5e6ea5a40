//! Identifying a submitted sample and deciding how it runs.
//!
//! The type is chosen from the magic bytes first and the submitted name second. A file that
//! cannot run in the guest (empty, truncated, foreign architecture, unsupported type) gets a
//! reason instead of a launch plan, and the analysis reports `not_executed` with that reason.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::report::SampleInfo;
use crate::windows::{self, Launch};

/// Directory inside the guest where the sample is placed; also its working directory.
pub const SAMPLE_DIR: &str = "/root";

/// Longest sanitised file name, in bytes.
const MAX_NAME_BYTES: usize = 100;

/// What the sample is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Elf {
        arch: String,
        dynamic: bool,
    },
    /// A script with a `#!` line; the kernel runs its interpreter.
    Shebang {
        interpreter: String,
    },
    /// A script without `#!`, run by the interpreter its name or content suggests.
    Script {
        interpreter: &'static str,
    },
    /// A Windows program or script, run under Wine in the `windows` image.
    Windows {
        launch: Launch,
    },
    /// Cannot run in the guest.
    NotRunnable {
        reason: String,
    },
}

/// A sample ready to be placed in the sandbox.
#[derive(Debug, Clone)]
pub struct Sample {
    pub info: SampleInfo,
    pub kind: Kind,
    /// Sanitised basename used inside the guest.
    pub guest_name: String,
}

impl Sample {
    /// Identifies `bytes` submitted under `file_name`, hashes included.
    pub fn identify(file_name: &str, bytes: &[u8]) -> Sample {
        let mut sample = Sample::classify(file_name, bytes);
        sample.info.set_digests(bytes);
        sample
    }

    /// Identifies `bytes` without hashing them (the hashes can be filled in later, off the
    /// path to the sample's first instruction).
    /// Whether this is a Windows sample (run under Wine, native backend only).
    pub fn is_windows(&self) -> bool {
        matches!(self.kind, Kind::Windows { .. })
    }

    pub fn classify(file_name: &str, bytes: &[u8]) -> Sample {
        let guest_name = sanitize_name(file_name);
        let (kind, file_type, arch) = classify(&guest_name, bytes);
        let windows = bytes.starts_with(b"MZ") || matches!(kind, Kind::Windows { .. });
        let (platform, dir) = if windows {
            ("windows", windows::downloads_guest_dir())
        } else {
            ("linux", SAMPLE_DIR.to_string())
        };
        let info = SampleInfo {
            file_name: file_name.to_string(),
            sandbox_path: format!("{dir}/{guest_name}"),
            size: bytes.len() as u64,
            md5: String::new(),
            sha1: String::new(),
            sha256: String::new(),
            file_type,
            platform: platform.to_string(),
            arch,
        };
        Sample {
            info,
            kind,
            guest_name,
        }
    }

    /// The guest image the sample runs in.
    pub fn image(&self) -> &'static str {
        match self.kind {
            Kind::Windows { .. } => windows::IMAGE,
            _ => "linux",
        }
    }

    /// The directory the sample starts in.
    pub fn cwd(&self) -> String {
        match self.kind {
            Kind::Windows { .. } => windows::downloads_guest_dir(),
            _ => SAMPLE_DIR.to_string(),
        }
    }

    /// argv that starts the sample inside the guest, or the reason it cannot start.
    pub fn command(&self, arguments: &[String]) -> Result<Vec<String>, String> {
        let path = self.info.sandbox_path.clone();
        let mut argv = match &self.kind {
            Kind::Elf { .. } | Kind::Shebang { .. } => vec![path],
            Kind::Script { interpreter } => vec![interpreter.to_string(), path],
            Kind::Windows { launch } => {
                return windows::command(launch, &self.guest_name, arguments)
            }
            Kind::NotRunnable { reason } => return Err(reason.clone()),
        };
        argv.extend(arguments.iter().cloned());
        Ok(argv)
    }
}

impl SampleInfo {
    /// Fills `md5`, `sha1` and `sha256`.
    pub fn set_digests(&mut self, bytes: &[u8]) {
        self.md5 = hex::encode(Md5::digest(bytes));
        self.sha1 = hex::encode(Sha1::digest(bytes));
        self.sha256 = hex::encode(Sha256::digest(bytes));
    }
}

/// Basename of a submitted name, safe to create inside the guest: no directories, no `..`,
/// no control or bidirectional-override characters, no leading dot or dash, bounded length.
pub fn sanitize_name(submitted: &str) -> String {
    let base = submitted.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean: String = base
        .chars()
        .map(|c| if is_unsafe_char(c) { '_' } else { c })
        .collect();
    clean = clean.trim_start_matches(['.', '-', ' ']).to_string();
    while clean.len() > MAX_NAME_BYTES {
        clean.pop();
    }
    if clean.is_empty() || clean.chars().all(|c| c == '_') {
        return "sample".to_string();
    }
    clean
}

fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        || matches!(
            c,
            '$' | '`' | '"' | '\'' | ';' | '&' | '|' | '<' | '>' | '*' | '?' | '!' | '\\'
        )
}

fn classify(name: &str, bytes: &[u8]) -> (Kind, String, String) {
    if bytes.is_empty() {
        let kind = Kind::NotRunnable {
            reason: "the sample is empty (zero bytes)".into(),
        };
        return (kind, "empty".into(), "none".into());
    }
    if bytes.starts_with(b"\x7fELF") {
        return classify_elf(bytes);
    }
    if bytes.starts_with(b"MZ") {
        return classify_pe(bytes);
    }
    if bytes.starts_with(b"#!") {
        let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        let interpreter = String::from_utf8_lossy(&line[2..]).trim().to_string();
        let kind = Kind::Shebang {
            interpreter: interpreter.clone(),
        };
        return (kind, format!("script, #!{interpreter}"), "none".into());
    }
    classify_text(name, bytes)
}

fn classify_text(name: &str, bytes: &[u8]) -> (Kind, String, String) {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let windows = match ext.as_deref() {
        Some("bat" | "cmd") => Some((Launch::Batch, "Windows batch script")),
        Some("js") => Some((Launch::Script, "JScript (Windows Script Host)")),
        Some("vbs") => Some((Launch::Script, "VBScript (Windows Script Host)")),
        _ => None,
    };
    if let Some((launch, label)) = windows {
        return (Kind::Windows { launch }, label.into(), "none".into());
    }
    let by_ext = match ext.as_deref() {
        Some("sh") => Some(("/bin/sh", "shell script")),
        Some("bash") => Some(("/bin/bash", "bash script")),
        Some("py") => Some(("/usr/bin/python3", "Python script")),
        Some("pl") => Some(("/usr/bin/perl", "Perl script")),
        _ => None,
    };
    if let Some((interpreter, label)) = by_ext {
        return (Kind::Script { interpreter }, label.into(), "none".into());
    }
    if looks_like_text(bytes) {
        // What a shell does with a text file that has no #! line (ENOEXEC): run it with sh.
        let kind = Kind::Script {
            interpreter: "/bin/sh",
        };
        return (kind, "text, run as a shell script".into(), "none".into());
    }
    let kind = Kind::NotRunnable {
        reason: "unsupported file type: not ELF, not a script, not text".into(),
    };
    (kind, "data".into(), "none".into())
}

fn looks_like_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(4096)];
    !head.contains(&0) && std::str::from_utf8(head).is_ok_and(|_| true)
        || head
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace() || *b >= 0x80)
}

/// What the launch decision needs from an ELF file: the header and the program headers only
/// (a full parse walks symbol tables, which costs milliseconds on a large static binary).
struct ElfFacts {
    header: goblin::elf::Header,
    is_64: bool,
    dynamic: bool,
    truncated: bool,
}

impl ElfFacts {
    fn read(bytes: &[u8]) -> goblin::error::Result<ElfFacts> {
        let header = goblin::elf::Elf::parse_header(bytes)?;
        let container = header.container()?;
        let ctx = goblin::container::Ctx::new(container, header.endianness()?);
        let phoff = usize::try_from(header.e_phoff).unwrap_or(usize::MAX);
        let phs =
            goblin::elf::ProgramHeader::parse(bytes, phoff, usize::from(header.e_phnum), ctx)?;
        Ok(ElfFacts {
            header,
            is_64: container.is_big(),
            dynamic: phs
                .iter()
                .any(|p| p.p_type == goblin::elf::program_header::PT_INTERP),
            truncated: phs
                .iter()
                .any(|p| p.p_offset.saturating_add(p.p_filesz) > bytes.len() as u64),
        })
    }
}

fn classify_elf(bytes: &[u8]) -> (Kind, String, String) {
    use goblin::elf::header;

    let elf = match ElfFacts::read(bytes) {
        Ok(elf) => elf,
        Err(err) => {
            let kind = Kind::NotRunnable {
                reason: format!("the ELF file is truncated or malformed: {err}"),
            };
            return (kind, "ELF (malformed)".into(), "unknown".into());
        }
    };
    let arch = match elf.header.e_machine {
        header::EM_X86_64 => "x86_64",
        header::EM_386 => "i386",
        header::EM_AARCH64 => "aarch64",
        header::EM_ARM => "arm",
        header::EM_MIPS => "mips",
        header::EM_PPC64 => "ppc64",
        header::EM_PPC => "ppc",
        header::EM_RISCV => "riscv",
        header::EM_S390 => "s390",
        _ => "unknown",
    }
    .to_string();
    let dynamic = elf.dynamic;
    let bits = if elf.is_64 { 64 } else { 32 };
    let kind_word = match elf.header.e_type {
        header::ET_DYN if dynamic => "pie executable",
        header::ET_DYN => "shared object",
        header::ET_EXEC => "executable",
        header::ET_REL => "relocatable",
        header::ET_CORE => "core file",
        _ => "file",
    };
    let link = if dynamic {
        "dynamically linked"
    } else {
        "statically linked"
    };
    let file_type = format!("ELF {bits}-bit {kind_word}, {arch}, {link}");
    let truncated = elf.truncated;
    let kind = if truncated {
        Kind::NotRunnable {
            reason: "the ELF file is truncated: a segment extends past the end of the file".into(),
        }
    } else if arch != "x86_64" && arch != "i386" {
        Kind::NotRunnable {
            reason: format!(
                "ELF for {arch}: only x86-64 and i386 samples run natively in this version"
            ),
        }
    } else if elf.header.e_type != header::ET_EXEC && elf.header.e_type != header::ET_DYN {
        Kind::NotRunnable {
            reason: format!("ELF {kind_word}: not a program that can be executed"),
        }
    } else {
        Kind::Elf {
            arch: arch.clone(),
            dynamic,
        }
    };
    (kind, file_type, arch)
}

/// A PE file: executable or DLL, 32 or 64 bits, console or GUI; only x86 and x86-64 run.
fn classify_pe(bytes: &[u8]) -> (Kind, String, String) {
    use goblin::pe::header::{COFF_MACHINE_X86, COFF_MACHINE_X86_64};
    use goblin::pe::subsystem::{IMAGE_SUBSYSTEM_WINDOWS_CUI, IMAGE_SUBSYSTEM_WINDOWS_GUI};

    let pe = match goblin::pe::PE::parse(bytes) {
        Ok(pe) => pe,
        Err(err) => {
            let kind = Kind::NotRunnable {
                reason: format!("the PE file is truncated or malformed: {err}"),
            };
            return (kind, "PE (malformed)".into(), "unknown".into());
        }
    };
    let machine = pe.header.coff_header.machine;
    let arch = match machine {
        COFF_MACHINE_X86_64 => "x86_64",
        COFF_MACHINE_X86 => "i386",
        _ => "unknown",
    };
    let subsystem = pe
        .header
        .optional_header
        .map(|h| h.windows_fields.subsystem);
    let (bits, format) = if pe.is_64 {
        (64, "PE32+")
    } else {
        (32, "PE32")
    };
    let what = if pe.is_lib { "DLL" } else { "executable" };
    let ui = match subsystem {
        Some(IMAGE_SUBSYSTEM_WINDOWS_GUI) => "GUI",
        Some(IMAGE_SUBSYSTEM_WINDOWS_CUI) => "console",
        Some(_) => "other subsystem",
        None => "no optional header",
    };
    let file_type = format!("{format} {what} ({ui}), {arch}");
    let kind = if arch == "unknown" {
        Kind::NotRunnable {
            reason: format!(
                "PE for machine type {machine:#06x}: only x86 and x86-64 Windows programs run"
            ),
        }
    } else if pe.is_lib {
        let first_export = pe
            .exports
            .iter()
            .find_map(|e| e.name.filter(|n| !n.is_empty()).map(str::to_string));
        Kind::Windows {
            launch: Launch::Dll { bits, first_export },
        }
    } else if matches!(
        subsystem,
        Some(IMAGE_SUBSYSTEM_WINDOWS_GUI | IMAGE_SUBSYSTEM_WINDOWS_CUI)
    ) {
        Kind::Windows {
            launch: Launch::Exe {
                gui: subsystem == Some(IMAGE_SUBSYSTEM_WINDOWS_GUI),
                bits,
            },
        }
    } else {
        Kind::NotRunnable {
            reason: format!("PE {what} for {ui}: not a Windows program Wine can start"),
        }
    };
    (kind, file_type, arch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_reduced_to_a_safe_basename() {
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("C:\\Users\\x\\evil.exe"), "evil.exe");
        assert_eq!(sanitize_name("a\u{202e}fdp.exe"), "a_fdp.exe");
        assert_eq!(sanitize_name("x\0y\nz"), "x_y_z");
        assert_eq!(sanitize_name("$(rm -rf).sh"), "_(rm -rf).sh");
        assert_eq!(sanitize_name(".."), "sample");
        assert_eq!(sanitize_name(""), "sample");
        assert_eq!(sanitize_name("-rf"), "rf");
        assert_eq!(sanitize_name(&"a".repeat(300)).len(), 100);
        assert_eq!(sanitize_name("déjà vu.sh"), "déjà vu.sh");
    }

    #[test]
    fn empty_sample_is_not_runnable() {
        let s = Sample::identify("x.sh", b"");
        assert!(s.command(&[]).unwrap_err().contains("empty"));
        assert_eq!(s.info.size, 0);
        assert_eq!(
            s.info.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn scripts_are_run_by_shebang_or_by_name() {
        let s = Sample::identify("a.sh", b"#!/bin/bash\necho hi\n");
        assert_eq!(s.command(&[]).unwrap(), vec!["/root/a.sh"]);
        assert_eq!(s.info.file_type, "script, #!/bin/bash");
        let s = Sample::identify("b.py", b"print(1)\n");
        assert_eq!(
            s.command(&["x".into()]).unwrap(),
            vec!["/usr/bin/python3", "/root/b.py", "x"]
        );
        let s = Sample::identify("c.pl", b"print 1;\n");
        assert_eq!(s.command(&[]).unwrap()[0], "/usr/bin/perl");
        let s = Sample::identify("noext", b"echo hi\n");
        assert_eq!(s.command(&[]).unwrap(), vec!["/bin/sh", "/root/noext"]);
    }

    #[test]
    fn binary_junk_and_truncated_elf_are_not_runnable() {
        let s = Sample::identify("blob", &[0u8, 1, 2, 3, 0, 0xff]);
        assert!(s
            .command(&[])
            .unwrap_err()
            .contains("unsupported file type"));
        let s = Sample::identify("t.elf", b"\x7fELF\x02\x01\x01");
        assert!(s
            .command(&[])
            .unwrap_err()
            .contains("truncated or malformed"));
    }

    #[test]
    fn windows_scripts_are_recognised_by_name() {
        let s = Sample::identify("run.CMD", b"@echo off\r\nreg add HKCU\\x\r\n");
        assert_eq!(
            s.kind,
            Kind::Windows {
                launch: Launch::Batch
            }
        );
        assert_eq!(s.info.platform, "windows");
        assert_eq!(s.image(), "windows");
        assert_eq!(
            s.info.sandbox_path,
            "/root/.wine/drive_c/users/jmiller/Downloads/run.CMD"
        );
        let s = Sample::identify("a.vbs", b"WScript.Echo 1\r\n");
        assert_eq!(
            s.kind,
            Kind::Windows {
                launch: Launch::Script
            }
        );
    }

    #[test]
    fn malformed_pe_is_not_runnable_and_says_why() {
        let s = Sample::identify("x.exe", b"MZ\x90\x00junk");
        assert!(s
            .command(&[])
            .unwrap_err()
            .contains("PE file is truncated or malformed"));
        assert_eq!(s.info.platform, "windows");
    }

    #[test]
    fn own_binary_is_a_runnable_x86_64_elf() {
        let bytes = std::fs::read("/proc/self/exe").unwrap();
        let s = Sample::identify("me", &bytes);
        assert_eq!(s.info.arch, "x86_64");
        assert!(matches!(s.kind, Kind::Elf { .. }), "{:?}", s.kind);
        assert!(s.info.file_type.starts_with("ELF 64-bit"));
    }
}
