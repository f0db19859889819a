//! Who listens on a TCP port, as Linux's /proc tells it: `/proc/net/tcp`
//! and `/proc/net/tcp6` list the listening sockets with their inodes (and
//! owners' uids), and `/proc/PID/fd/*` links to `socket:[INODE]` name the
//! process holding each. Used to name the process that already holds a
//! service's port, on this machine or (through a shell over SSH) on a host.
//!
//! The parsing takes text, so the same code reads this machine's files and
//! a host's `cat` of them. Sockets of other network namespaces, and fds of
//! processes this user may not read, are not seen: then the holder is
//! unknown and only the socket's owner uid is said.

/// A listening socket on the port asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    pub(crate) inode: u64,
    pub(crate) uid: u32,
}

/// A process holding a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub(crate) comm: String,
}

/// The listening sockets on `port` in the text of `/proc/net/tcp` and/or
/// `/proc/net/tcp6` (header lines are skipped).
pub(crate) fn listening(tables: &str, port: u16) -> Vec<Listener> {
    const LISTEN: &str = "0A";
    let mut out = Vec::new();
    for line in tables.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        if f.len() < 10 || f[3] != LISTEN {
            continue;
        }
        let Some((_, hex_port)) = f[1].rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(hex_port, 16) != Ok(port) {
            continue;
        }
        if let (Ok(uid), Ok(inode)) = (f[7].parse(), f[9].parse()) {
            let l = Listener { inode, uid };
            if inode != 0 && !out.contains(&l) {
                out.push(l);
            }
        }
    }
    out
}

/// The listening sockets on `port` on this machine.
pub(crate) fn local_listening(port: u16) -> Vec<Listener> {
    let tables: String = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    listening(&tables, port)
}

/// The processes on this machine holding one of `sockets`, by pid.
pub(crate) fn local_holders(sockets: &[Listener]) -> Vec<Holder> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    let links: Vec<String> = sockets
        .iter()
        .map(|s| format!("socket:[{}]", s.inode))
        .collect();
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| links.iter().any(|want| l.as_os_str() == want.as_str()))
        });
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            out.push(Holder {
                pid,
                comm: comm.trim().to_string(),
            });
        }
    }
    out.sort_by_key(|h| h.pid);
    out
}

/// A shell script printing `PID COMM` for each process holding one of
/// `sockets` (busybox sh and readlink suffice).
pub(crate) fn holders_script(sockets: &[Listener]) -> String {
    let cases: Vec<String> = sockets
        .iter()
        .map(|s| format!("'socket:[{}]'", s.inode))
        .collect();
    format!(
        "for f in /proc/[0-9]*/fd/*; do \
         case \"$(readlink \"$f\" 2>/dev/null)\" in {}) \
         p=${{f#/proc/}}; p=${{p%%/*}}; echo \"$p $(cat /proc/$p/comm 2>/dev/null)\";; esac; \
         done 2>/dev/null | sort -un; true",
        cases.join("|")
    )
}

/// The holders in the output of [`holders_script`].
pub(crate) fn parse_holders(text: &str) -> Vec<Holder> {
    text.lines()
        .filter_map(|l| {
            let (pid, comm) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
            Some(Holder {
                pid: pid.parse().ok()?,
                comm: comm.trim().to_string(),
            })
        })
        .collect()
}

/// "pid 1234 (nginx)", "pids 1 (a), 2 (b)", or what is known without them.
pub(crate) fn describe(sockets: &[Listener], holders: &[Holder]) -> String {
    match holders {
        [] => match sockets.first() {
            Some(s) => format!("a process of uid {} this user cannot see", s.uid),
            None => "a process in another network namespace or not visible here".to_string(),
        },
        [h] => format!("pid {} ({})", h.pid, h.comm),
        many => format!(
            "pids {}",
            many.iter()
                .map(|h| format!("{} ({})", h.pid, h.comm))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4E20 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 81234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:4E20 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 81299 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:4E20 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0
";

    /// Listening sockets on the port, from both tables; an established
    /// connection from that port and other ports are not.
    #[test]
    fn listening_sockets_are_found_by_port_in_both_tables() {
        assert_eq!(
            listening(TCP, 0x4E20),
            vec![
                Listener {
                    inode: 81234,
                    uid: 1000
                },
                Listener {
                    inode: 5555,
                    uid: 0
                }
            ]
        );
        assert_eq!(listening(TCP, 22), vec![Listener { inode: 999, uid: 0 }]);
        assert!(listening(TCP, 8080).is_empty());
    }

    /// A socket this test holds is found, with this process as its holder.
    #[test]
    fn this_process_is_found_holding_its_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sockets = local_listening(port);
        assert_eq!(sockets.len(), 1, "{sockets:?}");
        let holders = local_holders(&sockets);
        assert_eq!(
            holders.iter().map(|h| h.pid).collect::<Vec<_>>(),
            vec![std::process::id()]
        );
        assert!(describe(&sockets, &holders).starts_with(&format!("pid {} (", std::process::id())));
    }

    /// The shell script's output reads back; it finds this process too.
    #[test]
    fn the_holders_script_finds_this_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sockets = local_listening(l.local_addr().unwrap().port());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(holders_script(&sockets))
            .output()
            .unwrap();
        let holders = parse_holders(&String::from_utf8_lossy(&out.stdout));
        assert!(
            holders.iter().any(|h| h.pid == std::process::id()),
            "{holders:?}"
        );
    }
}
