//! The output formats a view is asked for by name (`--format`): one list of
//! names and one parser, whichever command offers which of them.

/// An output format of `report`, `run`, `replay` and `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The summary table people read.
    Table,
    /// Pretty-printed JSON of the whole model, for programs.
    Json,
    /// Comma-separated rows (one per phase, then per operation).
    Csv,
    /// One self-contained HTML page with SVG charts.
    Html,
}

impl Format {
    /// Every format, in the order the error message lists them.
    pub const ALL: [Format; 4] = [Format::Table, Format::Json, Format::Csv, Format::Html];

    /// The format's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Html => "html",
        }
    }

    /// `s` as one of the `offered` formats; otherwise an error naming them
    /// ("unknown format \"x\": use table, json or html").
    pub fn parse_among(s: &str, offered: &[Format]) -> Result<Format, String> {
        offered
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown format {s:?}: use {}", names(offered)))
    }
}

/// Any of the formats (`report`, `run`, `replay`).
impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::parse_among(s, &Format::ALL)
    }
}

/// "table, json, csv or html".
fn names(formats: &[Format]) -> String {
    match formats {
        [] => String::new(),
        [one] => one.name().to_string(),
        [first @ .., last] => {
            let first: Vec<&str> = first.iter().map(|f| f.name()).collect();
            format!("{} or {}", first.join(", "), last.name())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_name_is_told_the_offered_ones() {
        assert_eq!("csv".parse(), Ok(Format::Csv));
        assert_eq!(
            "bad".parse::<Format>(),
            Err("unknown format \"bad\": use table, json, csv or html".to_string())
        );
        let offered = [Format::Table, Format::Json, Format::Html];
        assert_eq!(
            Format::parse_among("csv", &offered),
            Err("unknown format \"csv\": use table, json or html".to_string())
        );
        assert_eq!(Format::parse_among("html", &offered), Ok(Format::Html));
    }
}
