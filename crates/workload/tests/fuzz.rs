//! The workload parser against damaged input: every example file, mutated
//! thousands of ways (bytes flipped, inserted, deleted, lines swapped or
//! cut, numbers made huge or negative), never panics, and every rejection
//! says where, as `FILE:LINE:COL: ` or by naming the file. Seeded, so a
//! failure reproduces; bounded in count and time.

use std::time::{Duration, Instant};

use fleetbench_workload::Workload;

/// A small, seeded generator (xorshift64*): the same mutations every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INSERTS: &[&str] = &[
    "\"",
    "[",
    "]",
    "{",
    "}",
    "=",
    "\n",
    "#",
    "\\",
    "\u{0}",
    "\r\n",
    "-1",
    "1e400",
    "99999999999999999999",
    "\"{{\"",
    "{{x}}",
    "[[phase]]\n",
    "rate = 0\n",
    "duration = \"\"\n",
    "\u{feff}",
    "é",
    "\t",
];

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = at.min(bytes.len() - 1);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => {
                let s = INSERTS[rng.below(INSERTS.len())].as_bytes();
                bytes.splice(at..at, s.iter().copied());
            }
            2 if !bytes.is_empty() => {
                let end = (at + 1 + rng.below(20)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            3 => bytes.truncate(at),
            4 => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.len() > 1 {
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(a, b);
                }
                bytes = lines.join("\n").into_bytes();
            }
            _ => {
                // A digit run made huge, or negative.
                if let Some(i) = (at..bytes.len()).find(|&i| bytes[i].is_ascii_digit()) {
                    let s: &[u8] = if rng.below(2) == 0 {
                        b"18446744073709551616"
                    } else {
                        b"-"
                    };
                    bytes.splice(i..i, s.iter().copied());
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_workloads_never_panic_and_every_rejection_says_where() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut originals = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            originals.push(std::fs::read_to_string(&path).unwrap());
        }
    }
    assert!(originals.len() >= 4, "examples found: {}", originals.len());
    let mut rng = Rng(0x5eed_f1ee_7be4_c400);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut tried, mut rejected) = (0u32, 0u32);
    let mut unpositioned: Vec<String> = Vec::new();
    while tried < 4_000 && Instant::now() < deadline {
        let original = &originals[rng.below(originals.len())];
        let text = mutate(original, &mut rng);
        tried += 1;
        let parsed = std::panic::catch_unwind(|| Workload::parse("w.toml", &text));
        let result = parsed.unwrap_or_else(|_| panic!("the parser panicked on:\n{text}"));
        if let Err(e) = result {
            rejected += 1;
            let message = e.to_string();
            let positioned = message
                .strip_prefix("w.toml:")
                .and_then(|rest| rest.split_once(": "))
                .is_some_and(|(at, _)| {
                    let mut parts = at.split(':');
                    let line = parts
                        .next()
                        .is_some_and(|l| l.parse::<u32>().is_ok_and(|l| l > 0));
                    let col = parts
                        .next()
                        .is_some_and(|c| c.parse::<u32>().is_ok_and(|c| c > 0));
                    line && col && parts.next().is_none()
                });
            if !positioned {
                unpositioned.push(message.clone());
            }
            assert!(!message.contains("Spanned"), "Rust debug text: {message}");
        }
    }
    eprintln!("{tried} mutated workloads, {rejected} rejected");
    unpositioned.sort();
    unpositioned.dedup();
    assert!(
        unpositioned.is_empty(),
        "rejections without FILE:LINE:COL: {}",
        unpositioned.join("\n")
    );
    assert!(
        rejected > tried / 2,
        "too few rejections ({rejected} of {tried}): the mutator is toothless"
    );
}
