//! The rows of a data file (`kind = "file"` generators): one string and the
//! row boundaries, shared by every worker through an `Arc`. The workload crate
//! reads and checks the file; the agent gets its rows over the wire.
use std::sync::Arc;

use serde::Serialize;

/// Largest data file a generator reads: the coordinator holds it in memory
/// and sends each agent its rows in the StartPhase message.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// The rows of a data file, immutable and cheap to clone.
#[derive(Clone)]
pub struct Rows(Arc<RowsInner>);

struct RowsInner {
    text: String,
    /// Row `i` is `text[bounds[i]..bounds[i + 1]]`.
    bounds: Vec<u32>,
}

impl Rows {
    /// The rows, in order.
    pub fn new<S: AsRef<str>>(rows: impl IntoIterator<Item = S>) -> Rows {
        let mut text = String::new();
        let mut bounds = vec![0];
        for r in rows {
            text.push_str(r.as_ref());
            bounds.push(text.len() as u32);
        }
        Rows(Arc::new(RowsInner { text, bounds }))
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.0.bounds.len() - 1
    }

    /// No rows at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i` (panics past the end).
    pub fn get(&self, i: usize) -> &str {
        let b = &self.0.bounds;
        &self.0.text[b[i] as usize..b[i + 1] as usize]
    }

    /// The rows, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl PartialEq for Rows {
    fn eq(&self, other: &Rows) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.bounds == other.0.bounds && self.0.text == other.0.text)
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rows({} rows)", self.len())
    }
}

/// The resolved workload names the file and counts its rows; the rows
/// themselves stay out of the log's JSON.
impl Serialize for Rows {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.len() as u64)
    }
}
