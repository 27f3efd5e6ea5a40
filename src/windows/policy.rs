//! What Wine does by itself, as data: the programs it runs, and what its DLLs do inside every
//! program's process. Each entry was seen in traces of benign test programs under Debian's
//! Wine 8.0 that do none of it (tests/data/wine); another Wine version may need more.

/// Images Wine starts for itself (under `C:\windows\system32` or `syswow64`). `conhost.exe` (the
/// console host) and `explorer.exe /desktop` are Wine's whoever starts them; the others are
/// Wine's only when Wine started them.
pub const WINE_PROGRAMS: &[&str] = &[
    "start.exe",
    // The orchestrator boots the Wine session with it before it starts the sample.
    "hostname.exe",
    "wineboot.exe",
    "winemenubuilder.exe",
    "services.exe",
    "winedevice.exe",
    "explorer.exe",
    "plugplay.exe",
    "svchost.exe",
    "rpcss.exe",
    "conhost.exe",
];

/// Access masks of Wine's own opens of `Software\Wine` inside a program's process: the loader
/// (KEY_ALL_ACCESS, every process) and user32 (MAXIMUM_ALLOWED, processes that load it).
pub const WINE_OWN_ACCESS: &[u32] = &[0x000f_003f, 0x0200_0000];

/// (key, value) pairs Wine's DLLs set inside every program's process: not the sample's.
pub const WINE_OWN_VALUES_SET: &[(&str, &str)] = &[
    // kernelbase, at start-up: the time zone Wine derived from the host.
    (
        "registry\\machine\\system\\currentcontrolset\\control\\timezoneinformation",
        "standardname",
    ),
    (
        "registry\\machine\\system\\currentcontrolset\\control\\timezoneinformation",
        "timezonekeyname",
    ),
    // user32, when loaded: the keyboard layout.
    (
        "registry\\user\\s-1-5-21-0-0-0-1000\\keyboard layout\\preload",
        "1",
    ),
];

/// Mutexes Wine's DLLs create inside a program's process.
pub const WINE_OWN_MUTEXES: &[&str] = &[
    // gdi32, when loaded.
    "\\BaseNamedObjects\\__WINE_FONT_MUTEX__",
    // win32u, when a process first uses the display.
    "\\Sessions\\1\\BaseNamedObjects\\display_device_init",
];

/// Values of `Software\Wine` that Wine itself reads in every process (ntdll: `ShowDotFiles`;
/// the Windows version emulated: `Version`); a sample reading them is not told apart.
pub const WINE_OWN_VALUES: &[&str] = &["ShowDotFiles", "Version"];

/// Keys Wine rewrites itself on every start (device classes, fonts, ...): hive-diff changes
/// under them are not attributed to the sample when the trace cannot say who made them.
pub const WINE_CHURN: &[&str] = &[
    "registry\\machine\\system\\currentcontrolset\\control\\class\\",
    "registry\\machine\\system\\currentcontrolset\\enum\\",
    "registry\\machine\\system\\currentcontrolset\\control\\deviceclasses\\",
    "registry\\machine\\system\\currentcontrolset\\control\\timezoneinformation",
    "registry\\machine\\software\\microsoft\\windows nt\\currentversion\\networkcards",
    "registry\\machine\\hardware\\",
    "registry\\user\\s-1-5-21-0-0-0-1000\\software\\wine\\",
    // Rewritten from the Unix environment at every start.
    "registry\\user\\s-1-5-21-0-0-0-1000\\volatile environment",
];
