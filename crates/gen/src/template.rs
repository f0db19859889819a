//! Templates: text with `{{name}}` holes, compiled once, rendered per
//! request by a [`super::WorkerGen`].
//!
//! `{{name}}` is a generator; `{{agent}}`, `{{worker}}` and `{{iteration}}`
//! are built in. Spaces inside the braces are allowed (`{{ key }}`). `\{{`
//! is a literal `{{` (a backslash before anything else is itself). Extra
//! opening braces before a hole are literal: `[{{{x}}}]` reads as `[{`, the
//! hole `x`, `}]` (JSON with a hole right after an opening brace).

use crate::seed::names_fingerprint;
use crate::spec::{BUILTINS, GenSpec};

/// A compiled template. Its generator holes are indices into the generator
/// list it was compiled against; render it with a `WorkerGen` built from the
/// same list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The literal bytes, unescaped, one after another.
    text: Vec<u8>,
    parts: Vec<Part>,
    /// Of the generator names it was compiled against, in order.
    pub(super) fingerprint: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// `text[start..end]`.
    Literal {
        start: u32,
        end: u32,
    },
    Generator(u32),
    Agent,
    Worker,
    Iteration,
}

impl Template {
    /// Compiles `text` against `generators`. The error says what is wrong
    /// (an unknown name, listing the known ones; an unclosed `{{`; an empty
    /// hole) without a position: the caller knows where the string is.
    pub fn compile(text: &str, generators: &[GenSpec]) -> Result<Template, String> {
        let mut t = Template {
            text: Vec::with_capacity(text.len()),
            parts: Vec::new(),
            fingerprint: names_fingerprint(generators),
        };
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"\\{{") {
                t.push_literal(b"{{");
                i += 3;
            } else if bytes[i..].starts_with(b"{{") {
                // Braces beyond two before the hole are literal.
                while bytes.get(i + 2) == Some(&b'{') {
                    t.push_literal(b"{");
                    i += 1;
                }
                let inner_start = i + 2;
                let Some(len) = text[inner_start..].find("}}") else {
                    return Err(format!(
                        "unclosed `{{{{` in {text:?}: close it with `}}}}`, or write `\\{{{{` for a literal `{{{{`"
                    ));
                };
                let name = text[inner_start..inner_start + len].trim();
                let part = match name {
                    "agent" => Part::Agent,
                    "worker" => Part::Worker,
                    "iteration" => Part::Iteration,
                    "" => {
                        return Err(format!(
                            "empty `{{{{}}}}` in {text:?}: name a generator inside, like `{{{{key}}}}`"
                        ));
                    }
                    _ => match generators.iter().position(|g| g.name == name) {
                        Some(index) => Part::Generator(index as u32),
                        None => {
                            let known: Vec<&str> = BUILTINS
                                .iter()
                                .copied()
                                .chain(generators.iter().map(|g| g.name.as_str()))
                                .collect();
                            return Err(format!(
                                "`{{{{{name}}}}}` in {text:?} names no generator; known: {}",
                                known.join(", ")
                            ));
                        }
                    },
                };
                t.parts.push(part);
                i = inner_start + len + 2;
            } else {
                // Up to the next `{{` or `\{{`, in one piece. Neither starts
                // at `i` (the branches above), so the piece is not empty, and
                // both ends fall on ASCII bytes: char boundaries.
                let next = text[i..].find("{{").map_or(bytes.len(), |p| i + p);
                let end = if next < bytes.len() && bytes[next - 1] == b'\\' {
                    next - 1
                } else {
                    next
                };
                t.push_literal(&bytes[i..end]);
                i = end;
            }
        }
        Ok(t)
    }

    fn push_literal(&mut self, bytes: &[u8]) {
        let start = self.text.len() as u32;
        self.text.extend_from_slice(bytes);
        let end = self.text.len() as u32;
        if let Some(Part::Literal { end: last, .. }) = self.parts.last_mut()
            && *last == start
        {
            *last = end;
            return;
        }
        self.parts.push(Part::Literal { start, end });
    }

    /// True when the template has no holes: it renders the same every time.
    pub fn is_constant(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal { .. }))
    }

    /// The bytes of a constant template (unescaped), else `None`.
    pub fn literal(&self) -> Option<&[u8]> {
        self.is_constant().then_some(&self.text[..])
    }

    /// The generators this template draws from, as indices into the list it
    /// was compiled against.
    pub fn generators(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Generator(i) => Some(*i as usize),
            _ => None,
        })
    }

    pub(super) fn parts(&self) -> &[Part] {
        &self.parts
    }

    pub(super) fn literal_bytes(&self, start: u32, end: u32) -> &[u8] {
        &self.text[start as usize..end as usize]
    }
}
