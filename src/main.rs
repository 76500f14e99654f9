use clap::Parser;

/// Veritrail: a verifiable audit log.
#[derive(Parser)]
#[command(name = "veritrail", version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
