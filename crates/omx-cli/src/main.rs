//! `omx-ecr-helper`: gets container images ready for AWS HealthOmics workflows.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod blob_cache;
mod commands;
mod exit;
mod output;
mod progress;
mod render;
mod steps;
mod table;
mod xdg;

use commands::{
    build, completions, copy, doctor, lock, map, plan, prepare, pull, scan, setup, submit, verify,
};

/// Gets container images ready for AWS HealthOmics workflows.
///
/// HealthOmics runs workflow tasks only from x86_64 images in ECR private, in the same region, in
/// repositories whose policy lets omics.amazonaws.com pull. omx-ecr-helper brings public images
/// there (pull-through cache where ECR supports it, a native registry-to-registry copy otherwise),
/// builds images from Dockerfile bundles, and tells you the private URI of every image.
#[derive(Parser)]
// `about` and `long_about` come from the doc comment above (naming them here would put the
// package description in `-h` and the man page's NAME instead).
#[command(name = "omx-ecr-helper", version, max_term_width = 100)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

// The commands' help comes from their argument structs' doc comments (a doc comment here would
// replace it), listed in the order a user meets them.
#[derive(Subcommand)]
enum Command {
    Pull(pull::PullArgs),
    Plan(plan::PlanArgs),
    Lock(lock::LockArgs),
    Copy(copy::CopyArgs),
    Build(build::BuildArgs),
    Scan(scan::ScanArgs),
    Map(map::MapArgs),
    Prepare(prepare::PrepareArgs),
    Verify(verify::VerifyArgs),
    Setup(setup::SetupArgs),
    Submit(submit::SubmitArgs),
    Doctor(doctor::DoctorArgs),
    Completions(completions::CompletionsArgs),
    Man(completions::ManArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = exit::parse_arguments();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Pull(args) => pull::run(args).await,
        Command::Build(args) => build::run(args).await,
        Command::Plan(args) => plan::run(args),
        Command::Lock(args) => lock::run(args).await,
        Command::Submit(args) => submit::run(args).await,
        Command::Copy(args) => copy::run(args).await,
        Command::Scan(args) => scan::run(args),
        Command::Map(args) => map::run(args).await,
        Command::Prepare(args) => prepare::run(args).await,
        Command::Verify(args) => verify::run(args).await,
        Command::Setup(args) => setup::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    };
    exit::report(result)
}

/// Crates whose own tracing is for debugging them, not for a person running a command: the AWS
/// SDK warns about every instance-metadata probe on a machine that has none, and the HTTP stack
/// logs connection details. Their messages show at `-v`/`-vv` or when RUST_LOG asks for them.
const LIBRARY_LOGS: &[&str] = &["aws_", "hyper", "h2", "rustls", "reqwest", "tower"];

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => {
            let quiet: Vec<String> = LIBRARY_LOGS
                .iter()
                .map(|target| format!("{target}=off"))
                .collect();
            format!("warn,omx=info,{}", quiet.join(","))
        }
        1 => "debug".to_string(),
        _ => "trace".to_string(),
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
