//! Rendering speed of the template engine alone: a realistic HTTP request (a
//! URL with a zipf key and a sequence, three headers, a ~200-byte JSON body
//! with uniform, choice, string and UUID fields) rendered N times by one
//! worker on one thread, with the number of allocations per request.
//!
//! `cargo bench --bench templates [-- N]` (default N = 2,000,000). No
//! criterion: std only, plus the workspace's counting allocator
//! (bench/alloc-count: the allocator needs `unsafe impl`, which the
//! workspace's lints forbid here).

use std::hint::black_box;
use std::time::Instant;

use fleetbench_gen::{Alphabet, GenKind, GenSpec, Lane, Length, Template, WorkerGen};

#[global_allocator]
static ALLOC: alloc_count::Counting = alloc_count::Counting;

/// The one worker of the one agent every measurement renders as.
const ALONE: Lane = Lane {
    agent: 0,
    agents: 1,
    worker: 0,
    workers: 1,
};

fn generators() -> Vec<GenSpec> {
    let g = |name: &str, kind| GenSpec {
        name: name.to_string(),
        kind,
        seed: None,
    };
    vec![
        g(
            "user",
            GenKind::Zipf {
                n: 10_000_000,
                exponent: 1.1,
            },
        ),
        g("order", GenKind::Sequence { start: 1, step: 1 }),
        g("qty", GenKind::UniformInt { min: 1, max: 20 }),
        g(
            "price",
            GenKind::UniformFloat {
                min: 0.5,
                max: 500.0,
                precision: 2,
            },
        ),
        g(
            "status",
            GenKind::Choice {
                values: vec![
                    "new".into(),
                    "paid".into(),
                    "shipped".into(),
                    "returned".into(),
                ],
                weights: vec![50.0, 30.0, 15.0, 5.0],
            },
        ),
        g(
            "note",
            GenKind::String {
                length: Length::Uniform { min: 16, max: 48 },
                alphabet: Alphabet::Alnum,
            },
        ),
        g("req", GenKind::Uuid),
    ]
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let gens = generators();
    let compile = |t: &str| Template::compile(t, &gens).expect("the bench's templates are valid");
    let url = compile("http://10.0.0.5:8080/users/{{user}}/orders/{{order}}");
    let headers = [
        compile("application/json"),
        compile("{{req}}"),
        compile("agent-{{agent}}-worker-{{worker}}"),
    ];
    let body = compile(
        r#"{"order_id":{{order}},"user_id":{{user}},"quantity":{{qty}},"unit_price":{{price}},"status":"{{status}}","note":"{{note}}","request_id":"{{req}}","iteration":{{iteration}},"source":"fleetbench"}"#,
    );
    let mut worker = WorkerGen::new(&gens, 42, ALONE);
    let mut url_buf = Vec::new();
    let mut header_bufs = [Vec::new(), Vec::new(), Vec::new()];
    let mut body_buf = Vec::new();
    let mut bytes = 0u64;
    let mut request = |worker: &mut WorkerGen, i: u64| {
        worker.begin(i);
        url_buf.clear();
        worker.render(&url, &mut url_buf);
        for (t, b) in headers.iter().zip(header_bufs.iter_mut()) {
            b.clear();
            worker.render(t, b);
        }
        body_buf.clear();
        worker.render(&body, &mut body_buf);
        let size = url_buf.len() + header_bufs.iter().map(Vec::len).sum::<usize>() + body_buf.len();
        black_box((&url_buf, &header_bufs, &body_buf));
        (size as u64, body_buf.len())
    };

    // Warm-up: the buffers grow to their largest size.
    let warm_allocs = alloc_count::allocations();
    for i in 0..100_000 {
        request(&mut worker, i);
    }
    let (_, body_len) = request(&mut worker, 0);
    let warm_allocs = alloc_count::allocations() - warm_allocs;

    let allocs_before = alloc_count::allocations();
    let bytes_before = alloc_count::allocated_bytes();
    let start = Instant::now();
    for i in 0..n {
        bytes += request(&mut worker, i).0;
    }
    let elapsed = start.elapsed();
    let allocs = alloc_count::allocations() - allocs_before;
    let alloc_bytes = alloc_count::allocated_bytes() - bytes_before;

    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "templates: {n} requests rendered in {:.3} s on one thread",
        elapsed.as_secs_f64()
    );
    println!("  requests/s:            {rate:.0}");
    println!(
        "  ns/request:            {:.1}",
        elapsed.as_nanos() as f64 / n as f64
    );
    println!(
        "  bytes/request:         {:.1} (body ~{body_len})",
        bytes as f64 / n as f64
    );
    println!(
        "  allocations/request:   {:.6} ({allocs} allocations, {alloc_bytes} bytes, after warm-up)",
        allocs as f64 / n as f64
    );
    println!("  warm-up allocations:   {warm_allocs} (100,000 requests: the buffers growing)");

    // Each generator alone: one draw per iteration, `{{name}}` rendered.
    let mut costs = Vec::new();
    let mut alone = gens.clone();
    alone.push(GenSpec {
        name: "user_1e9".into(),
        kind: GenKind::Zipf {
            n: 1_000_000_000,
            exponent: 0.99,
        },
        seed: None,
    });
    for g in &alone {
        let t = Template::compile(&format!("{{{{{}}}}}", g.name), &alone)
            .expect("every generator has a name");
        let mut w = WorkerGen::new(&alone, 42, ALONE);
        let mut out = Vec::new();
        let draws = n / 4;
        let start = Instant::now();
        for i in 0..draws {
            w.begin(i);
            out.clear();
            w.render(&t, &mut out);
            black_box(&out);
        }
        costs.push(format!(
            "{} {:.0}",
            g.name,
            start.elapsed().as_nanos() as f64 / draws as f64
        ));
    }
    println!("  ns per draw, alone:    {}", costs.join(", "));
}
