//! Wine's debug output on a process's stderr, and in it the relay trace of export lookups.
//!
//! How it is produced (Wine 8.0, verified with a test program): the prefix carries
//! `HKCU\Software\Wine\Debug` `RelayInclude` = `kernel32.GetProcAddress;kernelbase.GetProcAddress`
//! and the sample runs with `WINEDEBUG=+relay`. Wine then prints, on the stderr of each process,
//! `00c8:Call KERNEL32.GetProcAddress(170000000,140009020 "wine_get_version") ret=1400015d4`
//! for lookups by name made from the program's own code (Wine's default `RelayFromExclude`
//! leaves out calls from kernel32, advapi32, user32, gdi32). The prefix is the Windows thread id,
//! the same as in wineserver's trace. A lookup by ordinal, through `LdrGetProcedureAddress`
//! (whose name argument relay prints as a pointer) or by walking the export table is not seen.

/// One `GetProcAddress(module, "name")` call seen in the relay trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportLookup {
    /// Windows thread id of the caller.
    pub tid: u32,
    /// `KERNEL32.GetProcAddress` or `KERNELBASE.GetProcAddress`.
    pub function: String,
    /// The export name asked for.
    pub name: String,
}

/// Every lookup by name in `text` (a stderr that may mix the program's own output).
pub fn export_lookups(text: &str) -> Vec<ExportLookup> {
    text.lines().filter_map(lookup).collect()
}

fn lookup(line: &str) -> Option<ExportLookup> {
    let (tid, rest) = debug_prefix(line)?;
    let call = rest.strip_prefix("Call ")?;
    let (function, args) = call.split_once('(')?;
    if !function.to_ascii_lowercase().ends_with(".getprocaddress") {
        return None;
    }
    let quoted = args.split_once(" \"")?.1;
    let name = quoted.split_once("\")")?.0;
    Some(ExportLookup {
        tid,
        function: function.to_string(),
        name: name.to_string(),
    })
}

/// `00c8:rest` → (0xc8, rest) when the line has the shape of Wine's debug output.
fn debug_prefix(line: &str) -> Option<(u32, &str)> {
    let (tid, rest) = line.split_once(':')?;
    let hex = (4..=8).contains(&tid.len()) && tid.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return None;
    }
    Some((u32::from_str_radix(tid, 16).ok()?, rest))
}

/// Beginnings of Wine's debug lines after the thread prefix: relay calls and returns, thread
/// starts, and `class:channel:` messages.
const DEBUG_STARTS: &[&str] = &[
    "Call ",
    "Ret  ",
    "Starting ",
    "trace:",
    "fixme:",
    "err:",
    "warn:",
];

/// True for a line Wine's debug output wrote (not the program).
pub fn is_debug_line(line: &str) -> bool {
    debug_prefix(line).is_some_and(|(_, rest)| DEBUG_STARTS.iter().any(|s| rest.starts_with(s)))
}

/// The program's own stderr without Wine's debug lines, and how many lines were removed.
/// (A program can print a line of the same shape; it is then removed too.)
pub fn strip_debug_lines(text: &str) -> (String, usize) {
    let mut kept = String::with_capacity(text.len());
    let mut removed = 0;
    for line in text.split_inclusive('\n') {
        if is_debug_line(line.trim_end_matches('\n')) {
            removed += 1;
        } else {
            kept.push_str(line);
        }
    }
    (kept, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/wine/winecheck-relay.stderr"
        );
        std::fs::read_to_string(path).expect("fixture exists")
    }

    #[test]
    fn lookups_by_name_from_wine_and_from_the_sample() {
        let lookups = export_lookups(&fixture());
        let got: Vec<(u32, &str)> = lookups.iter().map(|l| (l.tid, l.name.as_str())).collect();
        // wineboot (thread 002c) resolving Wine's internal entry points, then the sample.
        assert_eq!(
            got,
            [
                (0x2c, "__wine_unix_call_dispatcher"),
                (0x2c, "__wine_dbg_header"),
                (0x2c, "__wine_dbg_header"),
                (0xc8, "wine_get_version"),
            ]
        );
        assert_eq!(lookups[3].function, "KERNEL32.GetProcAddress");
    }

    #[test]
    fn wine_debug_lines_are_told_from_the_programs_output() {
        let mixed = format!(
            "{}error: config.ini not found\n00c8 is a thread\n",
            fixture()
        );
        let (kept, removed) = strip_debug_lines(&mixed);
        assert_eq!(kept, "error: config.ini not found\n00c8 is a thread\n");
        assert_eq!(removed, fixture().lines().count());
        assert!(!is_debug_line("Call me: maybe"));
        assert!(is_debug_line(
            "0024:fixme:ntdll:NtQuerySystemInformation info_class"
        ));
    }

    #[test]
    fn lookups_by_ordinal_or_pointer_give_nothing() {
        assert_eq!(
            lookup("00c8:Call KERNEL32.GetProcAddress(170000000,00000005) ret=1"),
            None
        );
        let ldr = "0034:Call ntdll.LdrGetProcedureAddress(170000000,0021edb0,00000000,0021eda8) ret=7b02450d";
        assert_eq!(lookup(ldr), None);
    }
}
