//! Headers (an http op's) and metadata (a grpc op's): the literal ones
//! built once into a map, the templated ones rendered per request.

use anyhow::{Context as _, Result, anyhow};
use fleetbench::pb;
use fleetbench_gen::{GenSpec, Template};

use super::slot::Scratch;

/// Headers whose value holds a template, rendered per request.
pub(crate) type Templated = Vec<(http::HeaderName, Template)>;

/// Compiles `list` (what it is: `what`, e.g. "header"): literal values
/// into `into`, templated ones returned.
pub(crate) fn compile(
    list: &[pb::Header],
    gens: &[GenSpec],
    what: &str,
    into: &mut http::HeaderMap,
) -> Result<Templated> {
    let mut templated = Vec::new();
    for h in list {
        let name = http::HeaderName::from_bytes(h.name.as_bytes())
            .with_context(|| format!("{what} name {:?}", h.name))?;
        let t =
            Template::compile(&h.value, gens).map_err(|e| anyhow!("{what} {:?}: {e}", h.name))?;
        match t.literal() {
            Some(v) => {
                into.append(
                    name,
                    http::HeaderValue::from_bytes(v)
                        .with_context(|| format!("{what} value of {:?}", h.name))?,
                );
            }
            None => templated.push((name, t)),
        }
    }
    Ok(templated)
}

/// Renders `templated` into `into`; `Err` when a value renders into bytes
/// a header cannot hold.
pub(crate) fn render(
    templated: &Templated,
    s: &mut Scratch,
    into: &mut http::HeaderMap,
) -> Result<(), ()> {
    for (name, t) in templated {
        s.buf.clear();
        s.values.render(t, &mut s.buf);
        into.append(
            name.clone(),
            http::HeaderValue::from_bytes(&s.buf).map_err(|_| ())?,
        );
    }
    Ok(())
}
