//! Facts about the agent's host (for Hello) and its metrics every second
//! (CPU, memory, network, load), sampled with sysinfo on a thread of their
//! own so that a slow `/proc` read never delays the link or the load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetbench::pb;
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;

/// Hello's host facts; the caller fills in ids and the outbox bounds.
pub(crate) fn facts() -> pb::Hello {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    // The memory this agent may use: the host's, or its cgroup's limit
    // (a container) when lower.
    let memory_bytes = sysinfo::System::new()
        .map(|mut s| {
            s.refresh_memory();
            let host = s.total_memory();
            s.cgroup_limits()
                .map_or(host, |c| c.total_memory.min(host).max(1))
        })
        .unwrap_or(0);
    pb::Hello {
        hostname: sysinfo::System::host_name().unwrap_or_else(|_| "unknown".into()),
        cores,
        memory_bytes,
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        agent_version: fleetbench::VERSION.into(),
        binary_hash: own_hash().unwrap_or_default(),
        protocol: fleetbench::PROTOCOL,
        ..Default::default()
    }
}

fn own_hash() -> std::io::Result<String> {
    fleetbench::binary::file_hash(&std::env::current_exe()?)
}

/// CPU time (user + system) this process has used, in milliseconds, from
/// /proc/self/stat; 0 where that is not available.
pub(crate) fn process_cpu_ms() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) close with ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after ')'.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Linux reports clock ticks at USER_HZ, 100 on every mainstream build.
    (ticks(11) + ticks(12)) * 10
}

/// Samples host metrics every `every` until `stop`, pushing each sample.
///
/// With `active`, samples only while it reads true (a pool agent: while a
/// run holds it); the first sample after a pause covers at most `every`.
pub(crate) fn sample_metrics(
    outbox: Arc<Outbox>,
    every: Duration,
    active: Option<tokio::sync::watch::Receiver<bool>>,
    stop: CancellationToken,
) {
    let Ok(mut system) = sysinfo::System::new() else {
        tracing::warn!("host metrics unavailable on this system");
        return;
    };
    let mut networks = sysinfo::Networks::new_with_refreshed_list().ok();
    system.refresh_cpu_usage();
    let mut last = Instant::now();
    let mut cpu_last = process_cpu_ms();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let mut paused = false;
    while !stop.is_cancelled() {
        std::thread::sleep(every.min(Duration::from_millis(250)));
        if active.as_ref().is_some_and(|a| !*a.borrow()) {
            paused = true;
            continue;
        }
        if paused {
            // Resumed: start the interval (and the CPU baselines) now.
            paused = false;
            last = Instant::now();
            cpu_last = process_cpu_ms();
            system.refresh_cpu_usage();
            continue;
        }
        if last.elapsed() < every {
            continue;
        }
        let interval = last.elapsed();
        last = Instant::now();
        let cpu_now = process_cpu_ms();
        let agent_cpu_pct =
            cpu_now.saturating_sub(cpu_last) as f32 * 100.0 / interval.as_millis().max(1) as f32;
        cpu_last = cpu_now;
        system.refresh_cpu_usage();
        system.refresh_memory();
        let (mut rx, mut tx) = (0, 0);
        if let Some(n) = networks.as_mut() {
            n.refresh(true);
            for (_, data) in n.iter() {
                rx += data.received();
                tx += data.transmitted();
            }
        }
        let load = sysinfo::System::load_average().map_or(0.0, |l| l.one);
        outbox.push(pb::event::Kind::HostMetrics(pb::HostMetrics {
            cpu_pct: system.global_cpu_usage(),
            mem_used_bytes: system.used_memory(),
            mem_total_bytes: system.total_memory(),
            net_rx_bytes: rx,
            net_tx_bytes: tx,
            load_1: load,
            interval_ms: interval.as_millis() as u32,
            agent_cpu_pct,
            cores,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        // Spin until the counter shows 100 ms more CPU, within a generous
        // deadline: on a loaded machine the spin gets less than its wall time.
        let before = process_cpu_ms();
        let t = Instant::now();
        let mut x = 0u64;
        while process_cpu_ms() < before + 100 {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "CPU time stuck at {} ms after 30 s of spinning (from {before})",
                process_cpu_ms()
            );
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            std::hint::black_box(x);
        }
    }
}
