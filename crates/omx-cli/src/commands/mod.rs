//! One module per command: its arguments (their doc comments are its `--help`) and `run`.

pub mod build;
pub mod completions;
pub mod copy;
pub mod doctor;
pub mod lock;
pub mod map;
pub mod plan;
pub mod prepare;
pub mod pull;
pub mod scan;
pub mod setup;
pub mod submit;
pub mod verify;
