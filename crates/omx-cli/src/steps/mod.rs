//! What commands do, apart from reading their arguments and printing: each step is one
//! command's work (`pull`, `lock`, `verify`, `map`), and `prepare` runs them in a row.

pub mod lock;
pub mod map;
pub mod pull;
pub mod verify;
