//! Data files behind `kind = "file"` generators: a CSV file with a header row
//! (one column picked by name) or a plain file of lines. Read once, at parse
//! time, into [`Rows`]: one string and the row boundaries, shared by every
//! worker through an `Arc`.

use std::path::Path;

use fleetbench_gen::{MAX_FILE_BYTES, Rows};

use crate::source;

/// Why a data file cannot be used: the message a user sees after
/// `generator "NAME": `.
#[derive(Debug)]
pub(crate) enum FileError {
    /// About the file itself (reading it, its size, its contents).
    File(String),
    /// About the `column` asked for.
    Column(String),
}

/// Reads `path` and returns its rows: the values of `column` for a CSV file,
/// else its non-empty lines.
pub(crate) fn load(path: &Path, shown: &str, column: Option<&str>) -> Result<Rows, FileError> {
    use std::io::Read;
    let fail = |m: String| FileError::File(m);
    // Not opened unless it is a plain file: opening a FIFO blocks until a
    // writer comes, and a device never ends.
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(fail(format!(
                "data file {shown:?} ({}) is not a plain file (a directory, FIFO or device); give a file",
                path.display()
            )));
        }
        _ => {}
    }
    let file = std::fs::File::open(path).map_err(|e| {
        fail(format!(
            "cannot read data file {shown:?} ({}): {e}",
            path.display()
        ))
    })?;
    let size = file
        .metadata()
        .map_err(|e| fail(format!("cannot read data file {shown:?}: {e}")))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(fail(format!(
            "data file {shown:?} is {size} bytes, more than the limit of {} MiB; cut it down or split it across runs",
            MAX_FILE_BYTES >> 20
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read data file {shown:?}: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(format!(
            "data file {shown:?} is more than the limit of {} MiB",
            MAX_FILE_BYTES >> 20
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        fail(format!(
            "data file {shown:?} is not UTF-8 text (line {line})"
        ))
    })?;
    let rows = match column {
        Some(c) => csv_column(&text, c).map_err(|e| match e {
            CsvError::Column(m) => FileError::Column(format!("data file {shown:?} {m}")),
            CsvError::Syntax(m) => fail(format!("data file {shown:?}: {m}")),
        })?,
        None => Rows::new(text.lines().filter(|l| !l.is_empty())),
    };
    if rows.is_empty() {
        return Err(fail(format!("data file {shown:?} has no rows")));
    }
    Ok(rows)
}

enum CsvError {
    Column(String),
    Syntax(String),
}

/// The values of one column of RFC 4180 CSV text with a header row: fields
/// separated by commas, optionally in double quotes (which may hold commas,
/// newlines and `""` for a quote); LF or CRLF line ends; blank lines skipped.
fn csv_column(text: &str, column: &str) -> Result<Rows, CsvError> {
    let mut csv = Csv {
        text,
        pos: 0,
        line: 1,
    };
    let mut header = Vec::new();
    let mut field = String::new();
    if csv
        .record(&mut field, |_, f| header.push(f.to_string()))
        .map_err(CsvError::Syntax)?
        .is_none()
    {
        return Err(CsvError::Syntax(
            "is empty: a CSV file needs a header row".into(),
        ));
    }
    let Some(index) = header.iter().position(|h| h == column) else {
        return Err(CsvError::Column(format!(
            "has no column {column:?}; its header has: {}",
            header.join(", ")
        )));
    };
    let mut values = Vec::new();
    loop {
        let line = csv.line;
        let mut value = None;
        let Some(count) = csv
            .record(&mut field, |i, f| {
                if i == index {
                    value = Some(f.to_string());
                }
            })
            .map_err(CsvError::Syntax)?
        else {
            break;
        };
        if count != header.len() {
            return Err(CsvError::Syntax(format!(
                "line {line} has {}, the header has {}",
                source::count(count, "field"),
                header.len()
            )));
        }
        values.push(value.unwrap_or_default());
    }
    Ok(Rows::new(values))
}

struct Csv<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl Csv<'_> {
    /// Reads one record, handing each field to `each`; returns its number of
    /// fields, or `None` at the end of the text.
    fn record(
        &mut self,
        field: &mut String,
        mut each: impl FnMut(usize, &str),
    ) -> Result<Option<usize>, String> {
        let b = self.text.as_bytes();
        // Blank lines between records.
        loop {
            if b[self.pos..].starts_with(b"\r\n") {
                self.pos += 2;
            } else if b.get(self.pos) == Some(&b'\n') {
                self.pos += 1;
            } else {
                break;
            }
            self.line += 1;
        }
        if self.pos >= b.len() {
            return Ok(None);
        }
        let mut count = 0;
        loop {
            field.clear();
            if b.get(self.pos) == Some(&b'"') {
                let open_line = self.line;
                self.pos += 1;
                loop {
                    let Some(q) = self.text[self.pos..].find('"') else {
                        return Err(format!("line {open_line}: a quoted field is never closed"));
                    };
                    let chunk = &self.text[self.pos..self.pos + q];
                    self.line += chunk.matches('\n').count();
                    field.push_str(chunk);
                    self.pos += q + 1;
                    if b.get(self.pos) == Some(&b'"') {
                        field.push('"');
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                match b.get(self.pos) {
                    None | Some(b',') | Some(b'\n') => {}
                    Some(b'\r') if b.get(self.pos + 1) == Some(&b'\n') => {}
                    Some(_) => {
                        return Err(format!(
                            "line {}: text after a closing quote; a quote inside a quoted field is written \"\"",
                            self.line
                        ));
                    }
                }
            } else {
                let end = self.text[self.pos..]
                    .find([',', '\n'])
                    .map_or(b.len(), |e| self.pos + e);
                let mut value = &self.text[self.pos..end];
                if b.get(end) != Some(&b',') {
                    value = value.strip_suffix('\r').unwrap_or(value);
                }
                field.push_str(value);
                self.pos = end;
            }
            each(count, field);
            count += 1;
            match b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'\r') => {
                    self.pos += 2;
                    self.line += 1;
                    return Ok(Some(count));
                }
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                    return Ok(Some(count));
                }
                _ => return Ok(Some(count)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(text: &str, c: &str) -> Result<Vec<String>, String> {
        csv_column(text, c)
            .map(|r| r.iter().map(str::to_string).collect())
            .map_err(|e| match e {
                CsvError::Column(m) | CsvError::Syntax(m) => m,
            })
    }

    #[test]
    fn csv_picks_a_column_with_quoted_fields() {
        let text = "id,name,email\r\n1,\"Doe, Jane\",jane@example.com\r\n\n2,\"say \"\"hi\"\"\",\"multi\nline\"\n3,,last\n";
        assert_eq!(
            column(text, "name").unwrap(),
            ["Doe, Jane", "say \"hi\"", ""]
        );
        assert_eq!(
            column(text, "email").unwrap(),
            ["jane@example.com", "multi\nline", "last"]
        );
        assert_eq!(column(text, "id").unwrap(), ["1", "2", "3"]);
        // No final newline.
        assert_eq!(column("a,b\n1,2", "b").unwrap(), ["2"]);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let e = column("a,b\n1,2\n3\n", "a").unwrap_err();
        assert_eq!(e, "line 3 has 1 field, the header has 2");
        let e = column("a,b\n1,\"2\n", "a").unwrap_err();
        assert_eq!(e, "line 2: a quoted field is never closed");
        let e = column("a,b\n\"1\"x,2\n", "a").unwrap_err();
        assert!(e.starts_with("line 2: text after a closing quote"), "{e}");
        let e = column("a,b\n1,2\n", "c").unwrap_err();
        assert_eq!(e, "has no column \"c\"; its header has: a, b");
        let e = column("", "c").unwrap_err();
        assert!(e.contains("needs a header row"), "{e}");
    }
}
