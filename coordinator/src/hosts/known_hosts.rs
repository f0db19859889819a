//! Host-key verification against an OpenSSH known_hosts file.
//!
//! Understands plain and comma-separated host patterns, `[host]:port`
//! entries for non-22 ports, hashed names (`|1|salt|hmac-sha1`), comments and
//! blank lines, and the `@revoked` marker (`@cert-authority` lines are
//! skipped: fleetbench does not accept host certificates). Line numbers are
//! the file's own, so a refusal can point at the exact line to fix.
//!
//! This module only reads and appends the file; the SSH handshake that asks
//! for a verdict lives in `ssh.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use russh::keys::PublicKey;

/// What the known_hosts file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A line names this host with exactly this key.
    Known { line: usize },
    /// A line names this host with another key of the same algorithm.
    Changed { line: usize },
    /// A line marks this key as revoked.
    Revoked { line: usize },
    /// No line names this host (with this key's algorithm).
    Unknown,
}

/// The name a host has in known_hosts: `host` on port 22, else `[host]:port`.
pub(crate) fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks `key` for `host:port` against the file at `path` (a missing file
/// knows no host).
pub(crate) fn check(
    path: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> std::io::Result<Verdict> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdict::Unknown),
        Err(e) => return Err(e),
    };
    Ok(check_text(&text, host, port, key))
}

fn check_text(text: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    // OpenSSH compares host names without case.
    let name = host_pattern(&host.to_ascii_lowercase(), port);
    let mut known = None;
    let mut other = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let mut fields = raw.split_whitespace();
        let Some(mut first) = fields.next() else {
            continue;
        };
        if first.starts_with('#') {
            continue;
        }
        let mut revoked = false;
        if first.starts_with('@') {
            match first {
                "@revoked" => revoked = true,
                _ => continue, // @cert-authority: not for us
            }
            let Some(next) = fields.next() else { continue };
            first = next;
        }
        let (Some(_algorithm), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(recorded) = russh::keys::parse_public_key_base64(blob) else {
            continue;
        };
        let same = recorded.key_data() == key.key_data();
        if revoked {
            // A revoked key is refused whatever other lines say.
            if same {
                return Verdict::Revoked { line };
            }
            continue;
        }
        if !matches_host(first, &name) {
            continue;
        }
        if same {
            known.get_or_insert(line);
        } else {
            other.get_or_insert(line);
        }
    }
    match (known, other) {
        (Some(line), _) => Verdict::Known { line },
        // The host is known with another key, of this type or another: a
        // new key type is not a reason to trust a stranger.
        (None, Some(line)) => Verdict::Changed { line },
        (None, None) => Verdict::Unknown,
    }
}

/// Whether a comma-separated pattern list names `name`. Negations (`!h`)
/// exclude; `*`/`?` wildcards are honoured.
fn matches_host(patterns: &str, name: &str) -> bool {
    let mut hit = false;
    for p in patterns.split(',') {
        if let Some(hashed) = p.strip_prefix("|1|") {
            if hashed_matches(hashed, name) {
                hit = true;
            }
        } else if let Some(neg) = p.strip_prefix('!') {
            if glob(neg, name) {
                return false;
            }
        } else if glob(p, name) {
            hit = true;
        }
    }
    hit
}

fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let b64 = data_encoding::BASE64;
    let (Ok(salt), Ok(hash)) = (b64.decode(salt.as_bytes()), b64.decode(hash.as_bytes())) else {
        return false;
    };
    let Ok(mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// OpenSSH-style glob: `*` any run, `?` one character.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// Appends `host:port key` to the file (creating it and its directory);
/// returns the line number written.
pub(crate) fn learn(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<usize> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut entry = String::new();
    if !existing.is_empty() && !existing.ends_with('\n') {
        entry.push('\n');
    }
    let openssh = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(format!("encoding host key: {e}")))?;
    let mut parts = openssh.split_whitespace();
    let (alg, blob) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    entry.push_str(&format!("{} {alg} {blob}\n", host_pattern(host, port)));
    file.write_all(entry.as_bytes())?;
    Ok(existing.lines().count() + 1)
}

/// The default known_hosts file: `~/.ssh/known_hosts`.
pub(crate) fn default_path() -> PathBuf {
    home().join(".ssh").join("known_hosts")
}

pub(crate) fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIO5sFj1c6KXkG1a+pp7Hf/RU+BKZGJNwxQM0ioZSEpZ3";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAOrdy1RkrVni6CaQzJ7b1k2FvVwDB6HK2PUd8LwO4GW";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    #[test]
    fn plain_port_and_comma_entries() {
        let text = format!(
            "# comment\n\n10.0.0.1,h1 ssh-ed25519 {KEY_A}\n[10.0.0.2]:2222 ssh-ed25519 {KEY_B}\n"
        );
        assert_eq!(
            check_text(&text, "10.0.0.1", 22, &key(KEY_A)),
            Verdict::Known { line: 3 }
        );
        assert_eq!(
            check_text(&text, "h1", 22, &key(KEY_A)),
            Verdict::Known { line: 3 }
        );
        assert_eq!(
            check_text(&text, "10.0.0.2", 2222, &key(KEY_B)),
            Verdict::Known { line: 4 }
        );
        // Same host, port 22: not the [host]:2222 entry.
        assert_eq!(
            check_text(&text, "10.0.0.2", 22, &key(KEY_B)),
            Verdict::Unknown
        );
        // A changed key names the line that holds the old one.
        assert_eq!(
            check_text(&text, "10.0.0.1", 22, &key(KEY_B)),
            Verdict::Changed { line: 3 }
        );
    }

    #[test]
    fn hashed_names_match() {
        // |1|salt|HMAC-SHA1(salt, "10.0.0.9"), as `ssh-keygen -H` writes it.
        let salt = [7u8; 20];
        let mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt)
            .unwrap()
            .chain_update(b"10.0.0.9")
            .finalize()
            .into_bytes();
        let b64 = data_encoding::BASE64;
        let text = format!(
            "|1|{}|{} ssh-ed25519 {KEY_A}\n",
            b64.encode(&salt),
            b64.encode(&mac)
        );
        assert_eq!(
            check_text(&text, "10.0.0.9", 22, &key(KEY_A)),
            Verdict::Known { line: 1 }
        );
        assert_eq!(
            check_text(&text, "10.0.0.8", 22, &key(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn revoked_and_negated() {
        let text = format!("@revoked * ssh-ed25519 {KEY_B}\n*,!10.0.0.5 ssh-ed25519 {KEY_A}\n");
        assert_eq!(
            check_text(&text, "x", 22, &key(KEY_B)),
            Verdict::Revoked { line: 1 }
        );
        assert_eq!(
            check_text(&text, "10.0.0.4", 22, &key(KEY_A)),
            Verdict::Known { line: 2 }
        );
        assert_eq!(
            check_text(&text, "10.0.0.5", 22, &key(KEY_A)),
            Verdict::Unknown
        );
    }

    #[test]
    fn learned_entries_are_found_again() {
        let path = std::env::temp_dir().join(format!("fleetbench-kh-{}", uuid::Uuid::now_v7()));
        std::fs::write(&path, "# mine").unwrap();
        let line = learn(&path, "10.1.1.1", 2200, &key(KEY_A)).unwrap();
        assert_eq!(line, 2);
        assert_eq!(
            check(&path, "10.1.1.1", 2200, &key(KEY_A)).unwrap(),
            Verdict::Known { line: 2 }
        );
        std::fs::remove_file(&path).unwrap();
    }
}
