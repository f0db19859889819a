//! How the agents the coordinator starts are named: `local-N` on this
//! machine, `user@host#N` on an SSH host (a run's or a pool's), and
//! `metrics:…` for a service host's metrics-only agent.

use fleetbench_workload::SshHost;

/// The id of local agent `i` (from 1).
pub(crate) fn local(i: u32) -> String {
    format!("local-{i}")
}

/// The id of agent `i` on `host`: `user@host#i`, or `user@host:port#i`
/// off port 22 (unique per host entry; `#` and `@` never occur in local ids).
pub(crate) fn remote(host: &SshHost, i: u32) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_:".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let (user, name) = (clean(&host.user), clean(&host.host));
    if host.port == 22 {
        format!("{user}@{name}#{i}")
    } else {
        format!("{user}@{name}:{}#{i}", host.port)
    }
}

/// The id of the metrics-only agent on a service host that runs no load.
pub(crate) fn metrics(host: &SshHost) -> String {
    format!("metrics:{}", remote(host, 1))
}

#[cfg(test)]
mod tests {
    use super::{local, metrics, remote};

    #[test]
    fn remote_ids_name_the_port_only_off_22_and_clean_odd_characters() {
        let host = |s: &str| s.parse::<fleetbench_workload::SshHost>().unwrap();
        assert_eq!(remote(&host("bench@10.0.0.1"), 2), "bench@10.0.0.1#2");
        assert_eq!(
            remote(&host("bench@10.0.0.1:2222"), 1),
            "bench@10.0.0.1:2222#1"
        );
        assert_eq!(
            metrics(&host("bench@db.example")),
            "metrics:bench@db.example#1"
        );
        assert_eq!(local(3), "local-3");
        let odd = fleetbench_workload::SshHost {
            user: "be nch#".into(),
            host: "h@st".into(),
            port: 22,
        };
        assert_eq!(remote(&odd, 1), "be_nch_@h_st#1");
    }
}
