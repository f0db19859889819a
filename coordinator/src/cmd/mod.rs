//! One file per subcommand: each takes its parsed arguments (`cli`) and the
//! data directory, does its work through the modules that own it, and says
//! the exit code.
//!
//! Reading runs again (`runs`, `report`, `replay`, `compare`, `export`,
//! `rerun`, `verify`) is a fold over the log through `log::history`; the numbers and their
//! rendering live in the library crates (`fleetbench_fold`,
//! `fleetbench_views`). `judge` is what `run`, `report` and `replay` share
//! about the verdict: `--threshold`, `--junit`, `--check`.

pub(crate) mod compare;
pub(crate) mod enroll;
pub(crate) mod export;
pub(crate) mod generate;
pub(crate) mod judge;
pub(crate) mod pool;
pub(crate) mod preview;
pub(crate) mod replay;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod runs;
pub(crate) mod verify;
