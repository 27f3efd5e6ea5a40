use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AEGIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = aegis::cli::Cli::parse();
    match aegis::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // The whole chain, once, on one line.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("aegis: error: {}", chain.join(": "));
            std::process::exit(1);
        }
    }
}
