//! What an agent needs to attach, handed to it over a trusted channel (SSH
//! stdin into a 0600 file, or a 0600 file the coordinator writes for local
//! agents): where the coordinator is, the fingerprint of its TLS certificate
//! to pin, and the agent's own id and secret. Never in argv or the
//! environment, where any local user could read it from the process list.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The agent credentials file: one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// `host:port` the agent dials.
    pub coordinator: String,
    /// Hex SHA-256 of the coordinator certificate's DER bytes.
    pub fingerprint: String,
    /// The id the coordinator admitted the agent under.
    pub agent_id: String,
    /// Per-agent secret, hex; presented in Hello.
    pub secret: String,
    /// The run the agent is started for; empty for a pool agent.
    #[serde(default)]
    pub run_id: String,
    /// The pool the agent belongs to (empty: started for one run). A pool
    /// agent outlives runs: it never gives up dialing and serves whichever
    /// run of its pool welcomes it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pool: String,
}

/// A credentials file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("reading credentials file {path}")]
    Read {
        /// The file, as shown to the user.
        path: String,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the JSON of [`Credentials`].
    #[error("credentials file {path} is not valid: {message}")]
    Invalid {
        /// The file, as shown to the user.
        path: String,
        /// What the JSON parser said.
        message: String,
    },
}

impl Credentials {
    /// The file's contents: one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("credentials serialize: plain strings")
    }

    /// Parses a file's contents; `path` names it in errors.
    pub fn from_json(path: &str, text: &str) -> Result<Credentials, CredentialsError> {
        serde_json::from_str(text).map_err(|e| CredentialsError::Invalid {
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a credentials file (its mode is the caller's to
    /// check).
    pub fn read(path: &Path) -> Result<Credentials, CredentialsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: shown.clone(),
            source,
        })?;
        Credentials::from_json(&shown, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_fields() {
        let c = Credentials {
            coordinator: "10.0.0.1:7700".into(),
            fingerprint: "ab".repeat(32),
            agent_id: "h1-1".into(),
            secret: "cd".repeat(32),
            run_id: "r".into(),
            pool: String::new(),
        };
        assert!(
            !c.to_json().contains("pool"),
            "run agents' files stay as they were"
        );
        let pooled = Credentials {
            pool: "nightly".into(),
            run_id: String::new(),
            ..c.clone()
        };
        assert_eq!(
            Credentials::from_json("x", &pooled.to_json()).unwrap(),
            pooled
        );
        assert_eq!(Credentials::from_json("x", &c.to_json()).unwrap(), c);
        let e = Credentials::from_json("creds", r#"{"coordinator":"a","bogus":1}"#).unwrap_err();
        assert!(e.to_string().contains("creds"), "{e}");
    }
}
