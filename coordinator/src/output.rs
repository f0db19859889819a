//! What the commands print for people and scripts to read, on stdout.
//!
//! `println!` panics when the reader has gone away (`coordinator runs |
//! head -2`). Here a write returns its error instead: a command hands it up
//! with `?`, and `main` ends quietly, with status 0, on a broken pipe (any
//! other write error is an error). `run` prints its summary after the run
//! has ended, so there a closed pipe only loses the summary, never the
//! run's exit code. Messages on stderr are not this module's.

use std::io::Write as _;

/// Writes `text` to stdout, flushed.
pub(crate) fn print(text: impl AsRef<[u8]>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_ref())?;
    out.flush()
}

/// Writes one line to stdout (what [`outln!`] expands to).
pub(crate) fn line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Like `println!`, but returns the write's `std::io::Result` instead of
/// panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

pub(crate) use outln;

/// Whether `e` (anywhere in its chain) is a write to a reader that went
/// away.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
