//! The CLI's integration tests, one binary (one link instead of one per file): a module per
//! area, `util` for what they share. Every test runs the built `omx-ecr-helper` as a child
//! process with its environment passed to it, so tests share no process-global state and run as
//! threads of this binary. See ripgrep's `tests/` for the layout.

mod util;

mod blob_cache;
mod build_command;
mod completions_and_man;
mod copy_command;
mod doctor_command;
mod dry_run_offline;
mod ecr_main_job;
mod first_contact;
mod lock_command;
mod map_command;
mod plan_command;
mod prepare_command;
mod pull_command;
mod pull_limits;
mod readme_commands;
mod referrers_copy;
mod reliability_bad_input;
mod reliability_faults;
mod reliability_hostile_args;
mod reliability_interrupt;
mod reliability_races;
mod reliability_secrets;
mod round_trips;
mod scan_command;
mod setup_command;
mod setup_registry_secrets;
mod strategy_and_registry_map;
mod submit_command;
mod token_auth;
mod verify_command;
