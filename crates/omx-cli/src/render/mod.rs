//! Reports as tables for people (`--format json` prints the reports themselves).

pub mod image_report;
pub mod lock_report;
pub mod verify_report;
