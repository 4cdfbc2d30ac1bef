//! `omx-ecr-helper completions` and `omx-ecr-helper man`: shell completions and man pages,
//! generated from the same clap definitions that parse the command line, so they cannot drift.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use crate::exit::Outcome;

/// Print a shell completion script.
///
/// For example: `omx-ecr-helper completions bash > ~/.local/share/bash-completion/completions/omx-ecr-helper`,
/// or `omx-ecr-helper completions zsh > "${fpath[1]}/_omx-ecr-helper"`.
#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Write man pages: omx-ecr-helper(1) and one per command (omx-ecr-helper-pull(1)...).
///
/// Without --out-dir, prints omx-ecr-helper(1) to stdout (`omx-ecr-helper man | man -l -`).
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write every page into DIR as NAME.1 (e.g. ~/.local/share/man/man1).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<Outcome> {
    let mut command = crate::Cli::command();
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Ok(Outcome::Success)
}

pub fn man(args: ManArgs) -> anyhow::Result<Outcome> {
    let command = crate::Cli::command();
    let Some(dir) = args.out_dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::io::stdout().write_all(&page)?;
        return Ok(Outcome::Success);
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // clap_mangen names each subcommand's page after its parent (omx-ecr-helper-pull.1).
    clap_mangen::generate_to(command, &dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    Ok(Outcome::Success)
}
