//! `aegis doctor`: whether this host can run analyses, and what to do where it cannot.
//!
//! Each check reads what the kernel and the file system report, then a pure function judges
//! it, so the judgements are tested on sample inputs. A check never changes the host.

use std::fs;
use std::path::{Path, PathBuf};

use crate::image::{ImageError, ImageStore, KNOWN_IMAGES};
use crate::paths::DataDir;

/// Free space below which the disk check fails: one image (~300 MB) plus a few analyses'
/// writable layers.
const MIN_FREE_BYTES: u64 = 2 << 30;

/// Controllers the cgroup v2 root must offer (memory, task and CPU limits).
const V2_CONTROLLERS: &[&str] = &["memory", "pids", "cpu"];

/// Controllers cgroup v1 must have mounted (v1 has no `cgroup.kill`, hence the freezer).
const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "freezer"];

/// The image an analysis of a Linux sample needs.
const LINUX_IMAGE: &str = "linux";

/// The result of one check.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    /// Short name, e.g. `overlayfs`.
    pub name: String,
    /// Whether the host passes.
    pub ok: bool,
    /// What was found, in words.
    pub detail: String,
    /// What to do about a failed check.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check, in the order a reader would fix them.
pub fn run_checks(data: &DataDir) -> Vec<Check> {
    vec![
        check_root(),
        judge_user_namespaces(read("/proc/sys/user/max_user_namespaces")),
        judge_overlayfs(read("/proc/filesystems")),
        judge_seccomp(read("/proc/self/status")),
        judge_ptrace(read("/proc/sys/kernel/yama/ptrace_scope")),
        check_cgroups(),
        check_tun(),
        check_disk(data.root()),
        check_mmdebstrap(),
        check_image(data, LINUX_IMAGE),
    ]
}

/// Whether the Docker Engine answers, and whether the monitor runs in a container under runc
/// and under runsc (gVisor). Each runtime check starts one throw-away container.
pub fn docker_checks(data: &DataDir, config: &crate::config::Config) -> Vec<Check> {
    use crate::config::ContainerRuntime;
    let socket = &config.sandbox.docker_socket;
    let engine = match crate::docker::Engine::connect(socket).and_then(|e| e.info().map(|i| (e, i)))
    {
        Ok(pair) => pair,
        Err(e) => {
            return vec![Check::fail(
                "docker engine",
                e.to_string(),
                "./scripts/start-docker.sh (installs docker.io and runsc, starts dockerd)",
            )]
        }
    };
    let (engine, info) = engine;
    let mut checks = vec![Check::pass(
        "docker engine",
        format!(
            "{socket}: engine {}, cgroup {}, runtimes {}",
            info.version,
            info.cgroup_version,
            info.runtimes.join(", ")
        ),
    )];
    let image = match ImageStore::new(data).get(LINUX_IMAGE) {
        Ok(Some(i)) => i,
        _ => {
            checks.push(Check::fail(
                "docker monitor",
                "the guest image is not built, so nothing can be imported",
                "aegis image build linux",
            ));
            return checks;
        }
    };
    for runtime in [ContainerRuntime::Runc, ContainerRuntime::Runsc] {
        let name = format!("docker runtime {}", runtime.as_str());
        if !info.runtimes.iter().any(|r| r == runtime.as_str()) {
            checks.push(Check::fail(
                &name,
                "not registered with the engine",
                "./scripts/start-docker.sh writes /etc/docker/daemon.json with runsc",
            ));
            continue;
        }
        checks.push(match engine.probe_runtime(&image, runtime) {
            Ok(()) => Check::pass(&name, "the monitor ran in a container".to_string()),
            Err(e) => Check::fail(&name, e.to_string(), "see docs/backends.md"),
        });
    }
    checks
}

/// Prints the checks as a table: name, `ok` or `MISSING`, detail, and the fix below it.
pub fn print(checks: &[Check]) {
    print!("{}", render(checks));
}

fn render(checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|check| check.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        let status = if check.ok { "ok" } else { "MISSING" };
        out.push_str(&format!(
            "{:width$}  {status:7}  {}\n",
            check.name, check.detail
        ));
        if let Some(fix) = &check.fix {
            out.push_str(&format!("{:width$}  {:7}  fix: {fix}\n", "", ""));
        }
    }
    let passed = checks.iter().filter(|check| check.ok).count();
    out.push_str(&format!("{passed} of {} checks passed\n", checks.len()));
    out
}

/// A kernel file's content; `None` when it does not exist or cannot be read.
fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn check_root() -> Check {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        return Check::pass("root", "running as root");
    }
    Check::fail(
        "root",
        format!(
            "running as uid {euid}; the native backend needs root to set up namespaces, \
             cgroups and overlay mounts"
        ),
        "run aegis as root, e.g. `sudo aegis ...`",
    )
}

/// Judges `/proc/sys/user/max_user_namespaces`. (`kernel.unprivileged_userns_clone`, where a
/// kernel has it, only limits unprivileged users; aegis runs as root.)
fn judge_user_namespaces(max: Option<String>) -> Check {
    const NAME: &str = "user namespaces";
    let Some(max) = max else {
        return Check::fail(
            NAME,
            "/proc/sys/user/max_user_namespaces is missing: the kernel has no user namespaces",
            "use a kernel built with CONFIG_USER_NS=y",
        );
    };
    match max.trim().parse::<u64>() {
        Ok(0) => Check::fail(
            NAME,
            "user.max_user_namespaces is 0: user namespaces are disabled",
            "sysctl -w user.max_user_namespaces=15000 (and persist it in /etc/sysctl.d/)",
        ),
        Ok(n) => Check::pass(NAME, format!("enabled (user.max_user_namespaces = {n})")),
        Err(_) => Check::fail(
            NAME,
            format!("cannot read user.max_user_namespaces ({:?})", max.trim()),
            "check /proc/sys/user/max_user_namespaces",
        ),
    }
}

/// Judges `/proc/filesystems`: overlay must be registered.
fn judge_overlayfs(filesystems: Option<String>) -> Check {
    const NAME: &str = "overlayfs";
    let has_overlay = filesystems.as_deref().is_some_and(|text| {
        text.lines()
            .any(|line| line.split_whitespace().last() == Some("overlay"))
    });
    if has_overlay {
        return Check::pass(NAME, "overlay is in /proc/filesystems");
    }
    Check::fail(
        NAME,
        "overlay is not in /proc/filesystems (module not loaded or not built)",
        "modprobe overlay, and add `overlay` to /etc/modules-load.d/aegis.conf",
    )
}

/// Judges `/proc/self/status`: a `Seccomp:` line means the kernel has seccomp.
fn judge_seccomp(status: Option<String>) -> Check {
    const NAME: &str = "seccomp";
    let line = status
        .as_deref()
        .and_then(|text| text.lines().find(|line| line.starts_with("Seccomp:")))
        .map(|line| line.trim_start_matches("Seccomp:").trim().to_string());
    match line {
        Some(mode) => Check::pass(NAME, format!("available (this process: mode {mode})")),
        None => Check::fail(
            NAME,
            "no Seccomp line in /proc/self/status: the kernel has no seccomp",
            "use a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y",
        ),
    }
}

/// Judges Yama's `ptrace_scope`: 3 forbids ptrace to everyone, the monitor included; 0 to 2
/// allow it (root holds CAP_SYS_PTRACE, and the monitor traces its own descendants).
fn judge_ptrace(scope: Option<String>) -> Check {
    const NAME: &str = "ptrace";
    let Some(scope) = scope else {
        return Check::pass(NAME, "Yama is not enabled: ptrace is not restricted");
    };
    match scope.trim() {
        value @ ("0" | "1" | "2") => Check::pass(
            NAME,
            format!("allowed (kernel.yama.ptrace_scope = {value})"),
        ),
        "3" => Check::fail(
            NAME,
            "kernel.yama.ptrace_scope = 3: ptrace is disabled for everyone, so the monitor \
             cannot trace samples",
            "set kernel.yama.ptrace_scope = 1 in /etc/sysctl.d/ and reboot (3 cannot be \
             lowered without a reboot)",
        ),
        other => Check::fail(
            NAME,
            format!("unexpected kernel.yama.ptrace_scope value {other:?}"),
            "set kernel.yama.ptrace_scope to 0, 1 or 2",
        ),
    }
}

/// One line of `/proc/self/mountinfo`, the fields the cgroup check needs.
#[derive(Debug, Clone, PartialEq)]
struct Mount {
    point: PathBuf,
    fstype: String,
    super_options: String,
}

/// Parses mountinfo lines: mount point is the fifth field; after the ` - ` separator come
/// file system type, source and super options. Malformed lines are skipped.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let point = before.split(' ').nth(4)?;
    let mut tail = after.split(' ');
    let fstype = tail.next()?.to_string();
    let super_options = tail.nth(1).unwrap_or("").to_string();
    Some(Mount {
        point: PathBuf::from(unescape_octal(point)),
        fstype,
        super_options,
    })
}

/// Decodes the kernel's `\ooo` escapes (space, tab, newline, backslash) in mountinfo paths.
fn unescape_octal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let code = rest
            .get(pos + 1..pos + 4)
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[pos + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Which cgroup hierarchy the sandbox will use.
#[derive(Debug, Clone, PartialEq)]
enum CgroupChoice {
    /// A cgroup2 mount whose `cgroup.controllers` lists all of [`V2_CONTROLLERS`].
    V2 { point: PathBuf },
    /// cgroup v1 mounts covering all of [`V1_CONTROLLERS`].
    V1,
    /// Neither; what each lacks.
    Missing {
        v2_missing: Vec<&'static str>,
        v1_missing: Vec<&'static str>,
    },
}

/// Prefers v2 when a cgroup2 mount offers every needed controller, else v1 when every v1
/// controller is mounted. `controllers` reads a cgroup2 mount's `cgroup.controllers`.
fn choose_cgroups(mounts: &[Mount], controllers: impl Fn(&Path) -> Option<String>) -> CgroupChoice {
    let mut v2_missing = V2_CONTROLLERS.to_vec();
    for mount in mounts.iter().filter(|m| m.fstype == "cgroup2") {
        let listed = controllers(&mount.point).unwrap_or_default();
        let missing = missing_from(V2_CONTROLLERS, listed.split_whitespace());
        if missing.is_empty() {
            return CgroupChoice::V2 {
                point: mount.point.clone(),
            };
        }
        v2_missing = missing;
    }
    let v1_options = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup")
        .flat_map(|m| m.super_options.split(','));
    let v1_missing = missing_from(V1_CONTROLLERS, v1_options);
    if v1_missing.is_empty() {
        return CgroupChoice::V1;
    }
    CgroupChoice::Missing {
        v2_missing,
        v1_missing,
    }
}

/// The entries of `wanted` that `present` lacks.
fn missing_from<'a>(
    wanted: &[&'static str],
    present: impl Iterator<Item = &'a str>,
) -> Vec<&'static str> {
    let present: Vec<&str> = present.collect();
    wanted
        .iter()
        .copied()
        .filter(|name| !present.contains(name))
        .collect()
}

fn check_cgroups() -> Check {
    let mounts = parse_mountinfo(&read("/proc/self/mountinfo").unwrap_or_default());
    let choice = choose_cgroups(&mounts, |point| {
        read_path(&point.join("cgroup.controllers"))
    });
    judge_cgroups(&choice)
}

fn judge_cgroups(choice: &CgroupChoice) -> Check {
    const NAME: &str = "cgroups";
    match choice {
        CgroupChoice::V2 { point } => Check::pass(
            NAME,
            format!(
                "will use cgroup v2 at {} (memory, pids, cpu)",
                point.display()
            ),
        ),
        CgroupChoice::V1 => Check::pass(
            NAME,
            "will use cgroup v1 (memory, pids, cpu, freezer mounted; no usable cgroup v2)",
        ),
        CgroupChoice::Missing {
            v2_missing,
            v1_missing,
        } => Check::fail(
            NAME,
            format!(
                "no usable cgroups: v2 lacks {}; v1 lacks {}",
                v2_missing.join(", "),
                v1_missing.join(", ")
            ),
            "boot with systemd.unified_cgroup_hierarchy=1 so /sys/fs/cgroup is cgroup v2 with \
             the memory, pids and cpu controllers (or mount the missing v1 controllers)",
        ),
    }
}

fn read_path(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Free space on the data directory's file system (its nearest existing ancestor when it
/// does not exist yet).
fn check_disk(data_root: &Path) -> Check {
    const NAME: &str = "disk space";
    let probe = data_root
        .ancestors()
        .find(|dir| dir.exists())
        .unwrap_or(Path::new("/"));
    match nix::sys::statvfs::statvfs(probe) {
        Ok(stat) => {
            // Both are u64 on 64-bit Linux, but c_ulong is u32 on 32-bit targets.
            #[allow(clippy::useless_conversion)]
            let free =
                u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
            judge_disk(data_root, free)
        }
        Err(errno) => Check::fail(
            NAME,
            format!("statvfs {} failed: {errno}", probe.display()),
            "check that the data directory's file system is mounted and readable",
        ),
    }
}

fn judge_disk(data_root: &Path, free: u64) -> Check {
    const NAME: &str = "disk space";
    let detail = format!("{} free for {}", human_bytes(free), data_root.display());
    if free >= MIN_FREE_BYTES {
        return Check::pass(NAME, detail);
    }
    Check::fail(
        NAME,
        format!("{detail}: less than {}", human_bytes(MIN_FREE_BYTES)),
        "free space there, or point --data-dir (AEGIS_DATA_DIR) at a larger file system",
    )
}

/// `1.5 GiB`-style sizes.
fn human_bytes(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The simulated internet reaches the sandbox through a TUN device.
fn check_tun() -> Check {
    judge_tun(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .err(),
    )
}

fn judge_tun(error: Option<std::io::Error>) -> Check {
    const NAME: &str = "simulated internet (/dev/net/tun)";
    match error {
        None => Check::pass(NAME, "the TUN device opens"),
        Some(e) => Check::fail(
            NAME,
            format!("cannot open /dev/net/tun: {e}"),
            "load the tun module (`modprobe tun`), or run analyses with `--network none`",
        ),
    }
}

fn check_mmdebstrap() -> Check {
    const NAME: &str = "mmdebstrap";
    match crate::image::locate_tools() {
        Ok(tools) => Check::pass(
            NAME,
            format!(
                "found at {}, with {} (builds guest images)",
                tools.mmdebstrap.display(),
                tools.unshare.display()
            ),
        ),
        Err(ImageError::ToolMissing { tool, package }) => Check::fail(
            NAME,
            format!("{tool} is not on PATH; it is needed to build guest images"),
            format!("apt-get install {package}"),
        ),
        Err(err) => Check::fail(NAME, err.to_string(), "apt-get install mmdebstrap"),
    }
}

fn check_image(data: &DataDir, name: &str) -> Check {
    let check_name = format!("image {name}");
    let fix = format!("aegis image build {name}");
    debug_assert!(KNOWN_IMAGES.contains(&name));
    match ImageStore::new(data).get(name) {
        Ok(Some(info)) => Check::pass(
            &check_name,
            format!(
                "built {} ({}, {})",
                info.created_at,
                info.digest,
                human_bytes(info.size_bytes)
            ),
        ),
        Ok(None) => Check::fail(&check_name, "not built", fix),
        Err(err) => Check::fail(&check_name, err.to_string(), format!("rebuild it: {fix}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's own layout: cgroup v1 controllers plus an unused unified hierarchy.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd host with only the unified hierarchy; optional fields before the separator.
    const UNIFIED: &str = "\
25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
29 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    fn controllers(list: &'static str) -> impl Fn(&Path) -> Option<String> {
        move |_| Some(list.to_string())
    }

    #[test]
    fn mountinfo_lines_are_parsed() {
        let mounts = parse_mountinfo(UNIFIED);
        assert_eq!(mounts.len(), 2);
        assert_eq!(
            mounts[1],
            Mount {
                point: PathBuf::from("/sys/fs/cgroup"),
                fstype: "cgroup2".into(),
                super_options: "rw,nsdelegate,memory_recursiveprot".into(),
            }
        );
    }

    #[test]
    fn malformed_mountinfo_lines_are_skipped() {
        let text = "garbage\n1 2 3\n36 35 98:0 /a /mnt\\040x rw - ext4 /dev/vda rw\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].point, PathBuf::from("/mnt x"));
    }

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(unescape_octal("/a\\040b\\011c\\134d"), "/a b\tc\\d");
        assert_eq!(unescape_octal("/trailing\\"), "/trailing\\");
        assert_eq!(unescape_octal("/bad\\9zz"), "/bad\\9zz");
    }

    #[test]
    fn v2_with_all_controllers_is_preferred() {
        let choice = choose_cgroups(
            &parse_mountinfo(UNIFIED),
            controllers("cpuset cpu io memory hugetlb pids rdma misc"),
        );
        assert_eq!(
            choice,
            CgroupChoice::V2 {
                point: PathBuf::from("/sys/fs/cgroup")
            }
        );
    }

    #[test]
    fn controller_names_match_whole_words() {
        // `cpuset` must not count as `cpu`.
        let choice = choose_cgroups(&parse_mountinfo(UNIFIED), controllers("cpuset memory pids"));
        assert!(
            matches!(choice, CgroupChoice::Missing { ref v2_missing, .. } if v2_missing == &["cpu"])
        );
    }

    #[test]
    fn hybrid_host_falls_back_to_v1() {
        let choice = choose_cgroups(&parse_mountinfo(HYBRID), controllers("hugetlb\n"));
        assert_eq!(choice, CgroupChoice::V1);
        assert!(judge_cgroups(&choice).detail.contains("cgroup v1"));
    }

    #[test]
    fn v1_needs_the_freezer() {
        let without_freezer: String = HYBRID
            .lines()
            .filter(|l| !l.contains("freezer"))
            .map(|l| format!("{l}\n"))
            .collect();
        let choice = choose_cgroups(&parse_mountinfo(&without_freezer), controllers(""));
        let CgroupChoice::Missing {
            v1_missing,
            v2_missing,
        } = &choice
        else {
            panic!("{choice:?}");
        };
        assert_eq!(v1_missing, &["freezer"]);
        assert_eq!(v2_missing, &["memory", "pids", "cpu"]);
        let check = judge_cgroups(&choice);
        assert!(
            !check.ok && check.detail.contains("v1 lacks freezer"),
            "{check:?}"
        );
        assert!(check.fix.is_some());
    }

    #[test]
    fn v1_controllers_may_share_a_mount() {
        let text = "1 0 0:1 / /cg/cpu rw - cgroup cgroup rw,cpu,cpuacct\n\
                    2 0 0:2 / /cg/mem rw - cgroup cgroup rw,memory,pids,freezer\n";
        assert_eq!(
            choose_cgroups(&parse_mountinfo(text), controllers("")),
            CgroupChoice::V1
        );
    }

    #[test]
    fn no_cgroups_at_all_is_missing() {
        let choice = choose_cgroups(&[], controllers(""));
        assert!(!judge_cgroups(&choice).ok);
    }

    #[test]
    fn ptrace_scope_3_blocks_and_others_allow() {
        for (value, ok) in [
            ("0\n", true),
            ("1\n", true),
            ("2\n", true),
            ("3\n", false),
            ("x", false),
        ] {
            assert_eq!(judge_ptrace(Some(value.into())).ok, ok, "{value:?}");
        }
        assert!(judge_ptrace(None).ok, "no Yama means no restriction");
        assert!(judge_ptrace(Some("3\n".into()))
            .fix
            .unwrap()
            .contains("reboot"));
    }

    #[test]
    fn user_namespaces_need_a_positive_limit() {
        assert!(judge_user_namespaces(Some("96369\n".into())).ok);
        assert!(!judge_user_namespaces(Some("0\n".into())).ok);
        assert!(!judge_user_namespaces(Some("junk".into())).ok);
        assert!(!judge_user_namespaces(None).ok);
    }

    #[test]
    fn overlay_must_be_a_whole_name_in_proc_filesystems() {
        assert!(judge_overlayfs(Some("nodev\tsysfs\nnodev\toverlay\n".into())).ok);
        assert!(!judge_overlayfs(Some("nodev\tsysfs\nnodev\toverlayfoo\n".into())).ok);
        let missing = judge_overlayfs(None);
        assert!(!missing.ok && missing.fix.unwrap().contains("modprobe overlay"));
    }

    #[test]
    fn seccomp_is_detected_from_the_status_line() {
        let check = judge_seccomp(Some("Name:\tx\nSeccomp:\t0\nSeccomp_filters:\t0\n".into()));
        assert!(check.ok && check.detail.contains("mode 0"), "{check:?}");
        assert!(!judge_seccomp(Some("Name:\tx\n".into())).ok);
    }

    #[test]
    fn disk_below_two_gib_fails() {
        assert!(judge_disk(Path::new("/d"), 3 << 30).ok);
        let low = judge_disk(Path::new("/d"), 1 << 30);
        assert!(!low.ok && low.detail.contains("1.0 GiB free"), "{low:?}");
    }

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(2 << 30), "2.0 GiB");
    }

    #[test]
    fn missing_image_says_how_to_build_it() {
        let dir = std::env::temp_dir().join(format!("aegis-doctor-{}", std::process::id()));
        let check = check_image(&DataDir::new(&dir), "linux");
        assert!(!check.ok);
        assert_eq!(check.fix.as_deref(), Some("aegis image build linux"));
    }

    #[test]
    fn table_shows_status_and_fix() {
        let checks = vec![
            Check::pass("root", "running as root"),
            Check::fail("overlayfs", "not there", "modprobe overlay"),
        ];
        let text = render(&checks);
        assert!(
            text.contains("root       ok       running as root\n"),
            "{text}"
        );
        assert!(text.contains("overlayfs  MISSING  not there\n"), "{text}");
        // Under the detail column: name width 9, two spaces, status width 7, two spaces.
        let fix_line = format!("{}fix: modprobe overlay\n", " ".repeat(9 + 2 + 7 + 2));
        assert!(text.contains(&fix_line), "{text}");
        assert!(text.ends_with("1 of 2 checks passed\n"));
    }

    #[test]
    fn a_missing_tun_device_names_the_fix() {
        let missing = std::io::Error::from_raw_os_error(libc::ENOENT);
        let check = judge_tun(Some(missing));
        assert!(!check.ok);
        assert!(
            check.detail.contains("cannot open /dev/net/tun"),
            "{}",
            check.detail
        );
        assert!(check.fix.as_deref().unwrap().contains("--network none"));
        assert!(judge_tun(None).ok);
    }

    #[test]
    fn every_check_runs_on_this_host() {
        let dir = std::env::temp_dir().join(format!("aegis-doctor-all-{}", std::process::id()));
        let checks = run_checks(&DataDir::new(&dir));
        assert_eq!(checks.len(), 10);
        assert!(checks.iter().all(|check| check.ok || check.fix.is_some()));
    }
}
