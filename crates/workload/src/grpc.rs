//! The `grpc` op: a unary call of a method of a `.proto` file, the
//! message written as JSON (a template: generators work in it). The
//! `.proto` is compiled here, at parse time (protox, no `protoc`), and its
//! descriptors travel in the workload, so an agent builds messages from
//! them with no code generated per target. A method the file does not
//! define, or a message that does not fit its type, is refused here with
//! the file, line and column of the workload.

use std::path::Path;
use std::time::Duration;

use fleetbench::pb;
use fleetbench_gen::GenSpec;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::source::{Source, SpecError, duration_text, template, timeout};
use crate::tls::{RawTls, Tls, tls_for};

/// gRPC status codes by number (0 is OK), as error classes name them.
pub const GRPC_CODES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

/// A unary gRPC call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grpc {
    /// `http://host:port` (h2c) or `https://host:port` (h2 over TLS).
    pub url: String,
    /// The `.proto` file, as written.
    pub proto: String,
    /// `package.Service/Method`.
    pub method: String,
    /// The request message as JSON (a template); `{}` unless written.
    pub message: String,
    /// Metadata (headers) sent with each call; values are templates.
    pub metadata: Vec<(String, String)>,
    /// The call's deadline (sent as `grpc-timeout`, enforced by the agent).
    #[serde(with = "duration_text")]
    pub deadline: Duration,
    /// Status codes that count as success (numbers); `[0]` (OK) unless written.
    pub expect_codes: Vec<u32>,
    /// For https: how to speak TLS.
    pub tls: Option<Box<Tls>>,
    /// The compiled `.proto` (a `FileDescriptorSet`, encoded).
    #[serde(skip)]
    pub descriptors: Vec<u8>,
}

impl Grpc {
    pub(crate) fn to_pb(&self) -> pb::GrpcOperation {
        pb::GrpcOperation {
            url: self.url.clone(),
            method: self.method.clone(),
            message_json: self.message.clone(),
            metadata: self
                .metadata
                .iter()
                .map(|(name, value)| pb::Header {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            deadline_ms: u64::try_from(self.deadline.as_millis()).unwrap_or(u64::MAX),
            expect_codes: self.expect_codes.clone(),
            tls: self.tls.as_ref().map(|t| t.to_pb()),
            descriptor_set: self.descriptors.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrpc {
    url: Spanned<String>,
    proto: Spanned<String>,
    include: Option<Vec<String>>,
    method: Spanned<String>,
    message: Option<Spanned<String>>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, Spanned<String>>,
    deadline: Option<Spanned<String>>,
    expect_code: Option<Spanned<Vec<String>>>,
    tls: Option<Spanned<RawTls>>,
}

/// Validates a `grpc` table of op `what`.
pub(crate) fn validate_grpc(
    src: &Source,
    raw: Spanned<RawGrpc>,
    generators: &[GenSpec],
    what: &str,
) -> Result<Grpc, SpecError> {
    let raw = raw.into_inner();
    let base = Path::new(src.path).parent().unwrap_or(Path::new("."));
    let url = raw.url.get_ref().trim().trim_end_matches('/').to_string();
    let https = url.starts_with("https://");
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    if rest.is_none_or(|r| r.is_empty() || r.contains(['/', '?', ' ']) || r.contains("{{")) {
        return Err(src.error(
            raw.url.span(),
            format!("{what}: url {url:?} must be http://HOST:PORT (h2c) or https://HOST:PORT, with no path"),
        ));
    }
    let descriptors = compile_proto(src, base, &raw.proto, raw.include.as_deref(), what)?;
    let pool = DescriptorPool::decode(descriptors.as_slice())
        .map_err(|e| src.error(raw.proto.span(), format!("{what}: proto: {e}")))?;
    let method_text = raw.method.get_ref().trim_start_matches('/').to_string();
    let input = method_input(&pool, &method_text).map_err(|why| {
        src.error(
            raw.method.span(),
            format!("{what}: method {method_text:?} {why}"),
        )
    })?;
    let (message, message_span) = match raw.message {
        Some(m) => (m.get_ref().clone(), m.span()),
        None => ("{}".to_string(), raw.method.span()),
    };
    template(
        src,
        message_span.clone(),
        &message,
        &format!("{what}: message"),
        generators,
    )?;
    if !message.contains("{{") {
        // A message with no template is checked against its type now.
        let mut de = serde_json::Deserializer::from_str(&message);
        DynamicMessage::deserialize(input.clone(), &mut de).map_err(|e| {
            src.error(
                message_span,
                format!("{what}: message does not fit {}: {e}", input.full_name()),
            )
        })?;
    }
    let mut metadata = Vec::new();
    for (name, value) in raw.metadata {
        let lower = name.to_ascii_lowercase();
        if lower.is_empty()
            || !lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(src.error(
                value.span(),
                format!("{what}: metadata key {name:?} is not a valid header name"),
            ));
        }
        template(
            src,
            value.span(),
            value.get_ref(),
            &format!("{what}: metadata {name:?}"),
            generators,
        )?;
        metadata.push((lower, value.into_inner()));
    }
    let deadline = timeout(src, raw.deadline.as_ref(), what, Duration::from_secs(10))?;
    let expect_codes = match raw.expect_code {
        None => vec![0],
        Some(list) => {
            let span = list.span();
            let mut codes = Vec::new();
            for name in list.into_inner() {
                let code = GRPC_CODES
                    .iter()
                    .position(|c| c.eq_ignore_ascii_case(&name))
                    .or_else(|| name.parse::<usize>().ok().filter(|n| *n < GRPC_CODES.len()));
                let Some(code) = code else {
                    return Err(src.error(
                        span,
                        format!("{what}: expect_code {name:?} is not a gRPC status (OK, NOT_FOUND, ... or 0 to 16)"),
                    ));
                };
                codes.push(code as u32);
            }
            codes
        }
    };
    let tls = tls_for(src, raw.tls, https, what)?;
    Ok(Grpc {
        url,
        proto: raw.proto.into_inner(),
        method: method_text,
        message,
        metadata,
        deadline,
        expect_codes,
        tls,
        descriptors,
    })
}

/// The input message type of `Package.Service/Method` in `pool`.
fn method_input(
    pool: &DescriptorPool,
    method: &str,
) -> Result<prost_reflect::MessageDescriptor, String> {
    let Some((service, name)) = method.split_once('/') else {
        return Err("must be package.Service/Method".into());
    };
    let Some(svc) = pool.get_service_by_name(service) else {
        let known: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
        return Err(format!(
            "names a service the proto does not define (it defines {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    };
    let Some(m) = svc.methods().find(|m| m.name() == name) else {
        let known: Vec<String> = svc.methods().map(|m| m.name().to_string()).collect();
        return Err(format!(
            "is not a method of {service} ({})",
            known.join(", ")
        ));
    };
    if m.is_client_streaming() || m.is_server_streaming() {
        return Err("streams; only unary calls are supported".into());
    }
    Ok(m.input())
}

/// Compiles `proto` (relative to the workload's directory, with the
/// `include` directories and that directory itself to resolve imports)
/// into an encoded `FileDescriptorSet`.
fn compile_proto(
    src: &Source,
    base: &Path,
    proto: &Spanned<String>,
    include: Option<&[String]>,
    what: &str,
) -> Result<Vec<u8>, SpecError> {
    let file = base.join(proto.get_ref());
    let mut includes: Vec<std::path::PathBuf> = include
        .unwrap_or_default()
        .iter()
        .map(|i| base.join(i))
        .collect();
    includes.push(file.parent().unwrap_or(base).to_path_buf());
    includes.push(base.to_path_buf());
    if !file.is_file() {
        return Err(src.error(
            proto.span(),
            format!(
                "{what}: proto {:?}: {} is not a file",
                proto.get_ref(),
                file.display()
            ),
        ));
    }
    let set = protox::compile([&file], &includes).map_err(|e| {
        src.error(
            proto.span(),
            format!("{what}: proto {:?}: {e}", proto.get_ref()),
        )
    })?;
    Ok(set.encode_to_vec())
}
