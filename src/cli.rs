//! The `aegis` command line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::analysis::{self, AnalysisRequest, Engine};
use crate::config::{self, Config, LimitOverrides};
use crate::image::ImageStore;
use crate::paths::DataDir;
use crate::report::Report;

/// AegisAI Sandbox Orchestrator: runs a suspicious file in an isolated sandbox and reports
/// what it does.
#[derive(Debug, Parser)]
#[command(name = "aegis", version, about)]
pub struct Cli {
    /// Data directory (images, analyses). Default: /var/lib/aegis as root,
    /// ~/.local/share/aegis otherwise.
    #[arg(long, global = true, env = "AEGIS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file. Default: ./config.json when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse one file and print a summary (or the full report with --json).
    Analyze(AnalyzeArgs),
    /// Build, list or remove guest images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Check that this machine can run analyses; says what is missing and how to fix it.
    Doctor,
    /// Print the JSON Schema of the report.
    Schema,
    /// Analyse every script of a directory and write a Markdown table of the results.
    Corpus(CorpusArgs),
    /// Serve the REST API (durable queue in <data-dir>/aegis.db) until SIGTERM.
    Serve(ServeArgs),
    /// Internal: the supervisor of one sandbox (started by the orchestrator).
    #[command(hide = true, name = "sandbox-exec")]
    SandboxExec {
        #[arg(long)]
        spec: PathBuf,
    },
    /// Internal: the monitor as the init of a docker backend container.
    #[command(hide = true, name = "container-init")]
    ContainerInit,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The file to analyse.
    pub file: PathBuf,
    /// Wall-clock timeout in seconds (default: sandbox.default_timeout).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Memory limit, e.g. 512m or 1g (default: sandbox.memory_limit; at least 16m).
    #[arg(long, value_parser = parse_size_arg, allow_hyphen_values = true)]
    pub memory: Option<u64>,
    /// CPU limit in CPUs, e.g. 0.5 (default: sandbox.cpu_limit).
    #[arg(long, value_parser = parse_cpus_arg, allow_hyphen_values = true)]
    pub cpus: Option<f64>,
    /// Also write report.json and the artifacts to this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the full report as JSON on stdout (and nothing else there).
    #[arg(long)]
    pub json: bool,
    /// The sample's network: `simulated` (the simulated internet: every address answers,
    /// traffic recorded and captured) or `none` (loopback only). Default: network.mode.
    #[arg(long, value_parser = parse_network_arg)]
    pub network: Option<crate::netsim::NetworkMode>,
    /// How names resolve in the simulated internet: `sinkhole` (every name resolves to the
    /// simulated internet) or `nxdomain` (no name resolves). Default: network.dns.
    #[arg(long, value_parser = parse_dns_arg)]
    pub dns: Option<crate::netsim::DnsMode>,
    /// The name the sample is submitted under (default: the file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Sandbox backend: native or docker (default: sandbox.backend).
    #[arg(long, value_parser = config::Backend::parse)]
    pub backend: Option<config::Backend>,
    /// Container runtime of the docker backend: runc or runsc (gVisor) (default:
    /// sandbox.runtime).
    #[arg(long, value_parser = config::ContainerRuntime::parse)]
    pub runtime: Option<config::ContainerRuntime>,
    /// Arguments passed to the sample.
    #[arg(last = true)]
    pub arguments: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default: service.listen, 127.0.0.1:8002).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Analyses run at once (default: service.concurrency, else what the machine holds).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build (or rebuild) a guest image.
    Build { name: String },
    /// List built images.
    List,
    /// Remove an image.
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct CorpusArgs {
    /// Directory of samples (e.g. ../shared/corpus/atomic-red-team/linux).
    pub dir: PathBuf,
    /// Markdown file to write.
    #[arg(long, default_value = "docs/corpus.md")]
    pub markdown: PathBuf,
    /// Timeout per sample in seconds.
    #[arg(long, default_value_t = 20)]
    pub timeout: u64,
    /// The samples' network, `simulated` or `none` (default: network.mode).
    #[arg(long, value_parser = parse_network_arg)]
    pub network: Option<crate::netsim::NetworkMode>,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    let bytes = config::parse_size(s).map_err(|e| format!("{e}; use a size such as 512m or 1g"))?;
    if bytes < config::MIN_MEMORY_BYTES {
        return Err(format!("{s} is below the minimum of 16m"));
    }
    Ok(bytes)
}

/// Escapes what a terminal would act on (control characters, bidirectional overrides), so a
/// sample cannot drive the analyst's terminal through the summary.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn parse_network_arg(s: &str) -> Result<crate::netsim::NetworkMode, String> {
    crate::netsim::NetworkMode::parse(s)
        .ok_or_else(|| format!("`{s}` is not a network mode; use {}", config::NETWORK_FORM))
}

fn parse_dns_arg(s: &str) -> Result<crate::netsim::DnsMode, String> {
    crate::netsim::DnsMode::parse(s)
        .ok_or_else(|| format!("`{s}` is not a DNS mode; use {}", config::DNS_FORM))
}

fn parse_cpus_arg(s: &str) -> Result<f64, String> {
    config::parse_cpus(s).map_err(|e| format!("{e}; use {}", config::CPUS_FORM))
}

/// Set by SIGINT/SIGTERM; the running analysis tears its sandbox down and stops.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn catch_interrupts() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Runs the command line; the error is printed once, on one line, by `main`.
pub fn run(cli: Cli) -> Result<i32> {
    let data = DataDir::new(cli.data_dir.clone().unwrap_or_else(DataDir::default_root));
    if let Command::SandboxExec { spec } = &cli.command {
        crate::sandbox::supervise(spec)?;
        return Ok(0);
    }
    if let Command::ContainerInit = &cli.command {
        return Ok(crate::monitor::container::init());
    }
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Analyze(args) => analyze(&data, config, args),
        Command::Image(cmd) => image(&data, cmd),
        Command::Doctor => {
            let mut checks = crate::doctor::run_checks(&data);
            let docker = crate::doctor::docker_checks(&data, &config);
            let docker_needed = config.sandbox.backend == config::Backend::Docker;
            crate::doctor::print(&checks);
            println!(
                "\ndocker backend ({}):",
                if docker_needed {
                    "sandbox.backend is docker"
                } else {
                    "needed only for --backend docker"
                }
            );
            crate::doctor::print(&docker);
            if docker_needed {
                checks.extend(docker);
            }
            Ok(if checks.iter().all(|c| c.ok) { 0 } else { 1 })
        }
        Command::Schema => {
            print!("{}", crate::report::schema_json());
            Ok(0)
        }
        Command::Corpus(args) => {
            let mut config = config;
            if let Some(mode) = args.network {
                config.network.mode = mode;
            }
            crate::corpus::run(&data, config, &args.dir, &args.markdown, args.timeout)
        }
        Command::Serve(args) => serve(&data, config, args),
        Command::SandboxExec { .. } | Command::ContainerInit => Ok(0),
    }
}

/// Largest sample `aegis analyze` reads.
const MAX_SAMPLE_BYTES: u64 = 1 << 30;

fn read_sample(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read sample {}", path.display()))?;
    if !meta.is_file() {
        bail!("sample {} is not a regular file", path.display());
    }
    if meta.len() > MAX_SAMPLE_BYTES {
        bail!(
            "sample {} is {} bytes; the largest accepted is {} bytes",
            path.display(),
            meta.len(),
            MAX_SAMPLE_BYTES
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read sample {}", path.display()))
}

fn analyze(data: &DataDir, config: Config, args: AnalyzeArgs) -> Result<i32> {
    let bytes = read_sample(&args.file)?;
    let file_name = args.name.clone().unwrap_or_else(|| {
        args.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sample".into())
    });
    let limits = config.limits(&LimitOverrides {
        timeout_s: args.timeout,
        memory_bytes: args.memory,
        cpus: args.cpus,
    })?;
    let placement = config.placement(args.backend, args.runtime);
    let mode = match config.network_mode_for(placement.backend, args.network) {
        Ok(mode) => mode,
        Err(reason) => bail!("--network: {reason}"),
    };
    let request = AnalysisRequest {
        file_name,
        bytes,
        arguments: args.arguments.clone(),
        limits,
        network: config.network_spec(Some(mode), args.dns),
        placement,
    };
    if args.runtime.is_some() && request.placement.backend != config::Backend::Docker {
        bail!("--runtime applies to the docker backend only; add --backend docker");
    }
    std::fs::create_dir_all(data.root())
        .with_context(|| format!("cannot create data directory {}", data.root().display()))?;
    analysis::sweep(data);
    if request.placement.backend == config::Backend::Docker {
        sweep_containers(&config);
    }
    catch_interrupts();
    let show = std::io::stderr().is_terminal();
    let mut progress = |line: &str| {
        if show {
            eprintln!("aegis: {line}");
        }
    };
    let id = uuid::Uuid::new_v4().to_string();
    // This process runs one analysis on its only thread: the supervisor can be forked.
    let engine = Engine::new(data.clone(), config).single_threaded();
    let finished = match engine.analyze(&id, &request, &mut progress, &INTERRUPTED) {
        Ok(f) => f,
        Err(analysis::AnalysisError::Interrupted) => {
            eprintln!("aegis: interrupted; sandbox removed");
            return Ok(130);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(out) = &args.out {
        copy_dir(&finished.dir, out)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&finished.report)?);
    } else {
        print_summary(&finished.report, &finished.dir);
    }
    if finished.report.status == crate::report::ReportStatus::Completed {
        return Ok(0);
    }
    let why = finished
        .report
        .incomplete
        .first()
        .map_or("see the report's incomplete list".to_string(), |i| {
            format!("{}: {}", i.section, i.reason)
        });
    eprintln!("aegis: error: analysis failed: {}", printable(&why));
    Ok(1)
}

/// Removes the containers of orchestrators that are gone (an engine that does not answer is
/// the analysis's problem to report, not the sweep's).
pub fn sweep_containers(config: &Config) {
    let Ok(engine) = crate::docker::Engine::connect(&config.sandbox.docker_socket) else {
        return;
    };
    match engine.sweep() {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(containers = ?removed, "removed containers of finished orchestrators")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot sweep leftover containers"),
    }
}

fn serve(data: &DataDir, config: Config, args: ServeArgs) -> Result<i32> {
    if config.sandbox.backend == config::Backend::Docker {
        sweep_containers(&config);
    }
    let options = crate::service::ServeOptions {
        listen: args.listen,
        concurrency: args.concurrency,
    };
    crate::service::serve(data, config, options)?;
    Ok(0)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from)?.flatten() {
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)
                .with_context(|| format!("cannot write {}", dest.display()))?;
        }
    }
    Ok(())
}

fn print_summary(r: &Report, dir: &Path) {
    let e = &r.execution;
    let end = serde_json::to_value(e.end_reason).unwrap_or_default();
    println!("analysis   {}", r.analysis_id);
    println!(
        "sample     {} ({}, {} bytes)",
        r.sample.file_name, r.sample.file_type, r.sample.size
    );
    println!("sha256     {}", r.sample.sha256);
    println!(
        "ended      {} after {:.2} s (exit code {}, signal {})",
        end.as_str().unwrap_or("?"),
        e.duration_s,
        e.exit_code.map_or("-".into(), |c| c.to_string()),
        e.signal.as_deref().unwrap_or("-")
    );
    if let Some(err) = &e.error {
        println!("reason     {}", printable(err));
    }
    let c = &r.summary.counts;
    println!(
        "behaviour  {} processes, {} files created, {} modified, {} deleted, {} connections",
        c.processes, c.files_created, c.files_modified, c.files_deleted, c.connections
    );
    let n = &r.network;
    match (&n.dns, &n.http, &n.tls) {
        (Some(dns), Some(http), Some(tls)) => println!(
            "network    {}: {} DNS questions, {} HTTP requests, {} TLS hellos, capture {}",
            n.mode,
            dns.len(),
            http.len(),
            tls.len(),
            n.pcap.as_deref().unwrap_or("-")
        ),
        _ => println!("network    {} (loopback only)", n.mode),
    }
    for h in r.summary.http_conversations.iter().take(10) {
        println!(
            "  http     {} {}",
            printable(&h.request_method),
            printable(&h.url)
        );
    }
    for cmd in r.summary.command_executions.iter().take(10) {
        println!("  exec     {}", printable(cmd));
    }
    for n in r.events_of_note.iter().take(10) {
        println!("  note     {}: {}", n.kind, printable(&n.detail));
    }
    for i in &r.incomplete {
        println!("  incomplete {}: {}", i.section, printable(&i.reason));
    }
    println!("report     {}", dir.join("report.json").display());
}

fn image(data: &DataDir, cmd: ImageCommand) -> Result<i32> {
    let store = ImageStore::new(data);
    match cmd {
        ImageCommand::Build { name } => {
            let mut progress = |line: &str| eprintln!("{line}");
            let info = store.build(&name, &mut progress)?;
            println!("{} {} ({} files)", info.name, info.digest, info.file_count);
        }
        ImageCommand::List => {
            for info in store.list()? {
                println!(
                    "{}\t{}\t{}\t{} bytes",
                    info.name, info.digest, info.created_at, info.size_bytes
                );
            }
        }
        ImageCommand::Rm { name } => {
            store.remove(&name)?;
            println!("removed {name}");
        }
    }
    Ok(0)
}

/// Fails with a clear message when not root (the native backend needs it).
pub fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the native sandbox needs root (namespaces, cgroups, overlay mounts); run as root");
    }
    Ok(())
}
