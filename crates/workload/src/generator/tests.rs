//! Tests of `[generator.NAME]` tables: validation and its messages, and
//! what the validated generators render through `fleetbench-gen` (streams,
//! templates, data files, the wire form). They parse only the generator
//! tables, so positions count from the first of them.

// The rejection table lists every message of every kind in one test.
#![allow(clippy::too_many_lines)]

use std::path::Path;

use fleetbench_gen::{
    GenKind, GenSpec, Lane, MAX_FILE_BYTES, Order, Rows, Template, WorkerGen, fnv1a, stream_seed,
};
use serde::Deserialize;

use super::{RawGenerators, validate_all};
use crate::source::Source;

#[derive(Deserialize)]
struct Doc {
    generator: RawGenerators,
}

/// Parses the `[generator.*]` tables of `text` as a workload in `dir`.
fn parse_in(dir: &Path, text: &str) -> Result<Vec<GenSpec>, String> {
    let src = Source {
        path: "w.toml",
        text,
    };
    let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
    validate_all(&src, doc.generator, dir).map_err(|e| e.to_string())
}

fn parse(text: &str) -> Result<Vec<GenSpec>, String> {
    parse_in(Path::new("."), text)
}

fn one(text: &str) -> GenSpec {
    let mut v = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.len(), 1);
    v.remove(0)
}

fn reject(text: &str) -> String {
    match parse(text) {
        Ok(g) => panic!("accepted: {g:?}"),
        Err(e) => e,
    }
}

/// The only worker of the only agent.
const ONE_LANE: Lane = Lane {
    agent: 0,
    agents: 1,
    worker: 0,
    workers: 1,
};

fn lane(agent: u32, worker: u32) -> Lane {
    Lane {
        agent,
        agents: 2,
        worker,
        workers: 4,
    }
}

/// Renders `template` for `iterations` iterations of one worker.
fn render_many(
    gens: &[GenSpec],
    seed: u64,
    lane: Lane,
    template: &str,
    iterations: u64,
) -> Vec<String> {
    let t = Template::compile(template, gens).unwrap();
    let mut w = WorkerGen::new(gens, seed, lane);
    let mut out = Vec::new();
    (0..iterations)
        .map(|i| {
            w.begin(i);
            out.clear();
            w.render(&t, &mut out);
            String::from_utf8(out.clone()).unwrap()
        })
        .collect()
}

/// A sample of `kind` (a TOML inline body) as numbers.
fn samples(body: &str, n: usize) -> Vec<f64> {
    let g = one(&format!("[generator.x]\n{body}\n"));
    render_many(&[g], 11, lane(0, 0), "{{x}}", n as u64)
        .iter()
        .map(|s| s.parse::<f64>().unwrap())
        .collect()
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

const MANY: &str = r#"
[generator.key]
kind = "zipf"
n = 1000000
exponent = 1.1

[generator.id]
kind = "sequence"
start = 100
step = 3

[generator.qty]
kind = "uniform"
min = 1
max = 50

[generator.price]
kind = "uniform"
min = 0.5
max = 99.5
precision = 2

[generator.lat]
kind = "normal"
mean = 50
stddev = 5

[generator.wait]
kind = "exponential"
mean = 20

[generator.size]
kind = "pareto"
scale = 1
shape = 2

[generator.op]
kind = "choice"
values = ["read", "write", "scan"]
weights = [8, 1, 1]

[generator.name]
kind = "string"
length = { min = 4, max = 12 }
alphabet = "alpha"

[generator.blob]
kind = "bytes"
length = 8

[generator.req]
kind = "uuid"
"#;

const MANY_TEMPLATE: &str = "/items/{{key}}?id={{id}}&a={{agent}}&w={{worker}}&i={{iteration}} {{qty}} {{price}} {{lat}} {{wait}} {{size}} {{op}} {{name}} {{req}} key again {{key}}";

#[test]
fn same_seed_same_requests_other_seed_others() {
    let gens = parse(MANY).unwrap();
    let a = render_many(&gens, 42, lane(1, 2), MANY_TEMPLATE, 1000);
    let b = render_many(&gens, 42, lane(1, 2), MANY_TEMPLATE, 1000);
    assert_eq!(a, b);
    let c = render_many(&gens, 43, lane(1, 2), MANY_TEMPLATE, 1000);
    assert_ne!(a, c);
    // No two requests of seed 42 and 43 agree on the random parts.
    let same = a.iter().zip(&c).filter(|(x, y)| x == y).count();
    assert_eq!(same, 0);
    // Another worker of the same agent draws another stream.
    let d = render_many(&gens, 42, lane(1, 3), MANY_TEMPLATE, 1000);
    assert_ne!(a, d);
    // Bytes are not text: the same seed gives the same bytes too.
    let blob = Template::compile("{{blob}}", &gens).unwrap();
    let bytes = |seed| {
        let mut w = WorkerGen::new(&gens, seed, lane(1, 2));
        let mut out = Vec::new();
        for i in 0..100 {
            w.begin(i);
            w.render(&blob, &mut out);
        }
        out
    };
    assert_eq!(bytes(42), bytes(42));
    assert_ne!(bytes(42), bytes(43));
    assert_eq!(bytes(42).len(), 800);
}

#[test]
fn the_stream_is_pinned_across_versions() {
    // Fixed values: a change of the hash, the mixing or the sampling
    // shows here (runs must be re-runnable exactly across versions).
    let gens = parse(MANY).unwrap();
    let first = &render_many(&gens, 42, lane(0, 0), MANY_TEMPLATE, 1)[0];
    assert_eq!(
        first,
        "/items/9707?id=100&a=0&w=0&i=0 8 65.10 36.020 0.224 2.021 scan zGUqigpTUe 9ee8033e-f07e-4b92-a420-384cb228a8ef key again 9707"
    );
    assert_eq!(stream_seed(42, "key", 0, 0), 0xef48_5ba9_4292_2c8c);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_ne!(stream_seed(42, "key", 0, 0), stream_seed(42, "key", 0, 1));
    assert_ne!(stream_seed(42, "key", 0, 0), stream_seed(42, "key", 1, 0));
    assert_ne!(stream_seed(42, "key", 0, 0), stream_seed(42, "kex", 0, 0));
}

#[test]
fn a_generator_used_twice_in_an_iteration_gives_one_value() {
    let gens = parse(MANY).unwrap();
    let reqs = render_many(&gens, 7, lane(0, 1), "{{req}} {{req}} {{key}}", 200);
    for r in &reqs {
        let parts: Vec<&str> = r.split(' ').collect();
        assert_eq!(parts[0], parts[1], "{r}");
    }
    // And the next iteration draws anew.
    assert_ne!(reqs[0], reqs[1]);
    // Two templates of one iteration (URL and body) share it too.
    let url = Template::compile("/k/{{key}}/{{req}}", &gens).unwrap();
    let body = Template::compile("{\"k\":{{key}},\"r\":\"{{req}}\"}", &gens).unwrap();
    let mut w = WorkerGen::new(&gens, 7, lane(0, 1));
    w.begin(0);
    let (mut u, mut b) = (Vec::new(), Vec::new());
    w.render(&url, &mut u);
    w.render(&body, &mut b);
    let u = String::from_utf8(u).unwrap();
    let b = String::from_utf8(b).unwrap();
    let parts: Vec<&str> = u.split('/').collect();
    assert_eq!(b, format!("{{\"k\":{},\"r\":\"{}\"}}", parts[2], parts[3]));
}

#[test]
fn own_seed_overrides_the_run_seed() {
    let g = one("[generator.x]\nkind = \"uniform\"\nmin = 0\nmax = 1000000\nseed = 5\n");
    let a = render_many(std::slice::from_ref(&g), 1, lane(0, 0), "{{x}}", 50);
    let b = render_many(std::slice::from_ref(&g), 2, lane(0, 0), "{{x}}", 50);
    assert_eq!(a, b, "own seed: the run's does not matter");
    let g = one("[generator.x]\nkind = \"uniform\"\nmin = 0\nmax = 1000000\n");
    let a = render_many(std::slice::from_ref(&g), 1, lane(0, 0), "{{x}}", 50);
    let b = render_many(std::slice::from_ref(&g), 2, lane(0, 0), "{{x}}", 50);
    assert_ne!(a, b);
}

#[test]
fn builtins_render_the_lane_and_iteration() {
    let r = render_many(
        &[],
        1,
        lane(1, 3),
        "a{{agent}} w{{ worker }} i{{iteration}}",
        3,
    );
    assert_eq!(r, ["a1 w3 i0", "a1 w3 i1", "a1 w3 i2"]);
}

#[test]
fn sequence_interleaves_lanes_without_overlap() {
    let g = one("[generator.s]\nkind = \"sequence\"\nstart = 10\nstep = 5\n");
    let gens = [g];
    let mut all = Vec::new();
    for agent in 0..2 {
        for worker in 0..4 {
            let vals = render_many(&gens, 1, lane(agent, worker), "{{s}}", 25);
            all.extend(vals.iter().map(|v| v.parse::<i64>().unwrap()));
        }
    }
    all.sort_unstable();
    let expected: Vec<i64> = (0..200).map(|k| 10 + 5 * k).collect();
    assert_eq!(all, expected);
    // One lane alone: start, start + step * lanes, ...
    assert_eq!(
        render_many(&gens, 1, ONE_LANE, "{{s}}", 3),
        ["10", "15", "20"]
    );
    let neg = one("[generator.s]\nkind = \"sequence\"\nstart = -1\nstep = -2\n");
    assert_eq!(
        render_many(&[neg], 1, ONE_LANE, "{{s}}", 3),
        ["-1", "-3", "-5"]
    );
}

#[test]
fn uniform_int_and_float_stay_in_range_with_the_right_mean() {
    let xs = samples("kind = \"uniform\"\nmin = -10\nmax = 10", 100_000);
    assert!(
        xs.iter()
            .all(|&x| (-10.0..=10.0).contains(&x) && x.fract() == 0.0)
    );
    assert!(xs.contains(&-10.0) && xs.contains(&10.0), "both ends drawn");
    // Mean 0, sd of the mean ~ 6.06/sqrt(1e5) = 0.019: tolerance 0.1 (5 sd).
    assert!(mean(&xs).abs() < 0.1, "{}", mean(&xs));
    let xs = samples(
        "kind = \"uniform\"\nmin = 1.0\nmax = 3.0\nprecision = 4",
        100_000,
    );
    assert!(xs.iter().all(|&x| (1.0..=3.0).contains(&x)));
    // Mean 2, sd of the mean 0.0018: tolerance 0.01.
    assert!((mean(&xs) - 2.0).abs() < 0.01, "{}", mean(&xs));
}

#[test]
fn normal_exponential_pareto_means() {
    // Normal(100, 15): sd of the mean over 1e5 samples is 0.047; tolerance 0.25.
    let xs = samples("kind = \"normal\"\nmean = 100\nstddev = 15", 100_000);
    assert!((mean(&xs) - 100.0).abs() < 0.25, "{}", mean(&xs));
    let var = xs.iter().map(|x| (x - 100.0).powi(2)).sum::<f64>() / xs.len() as f64;
    assert!((var.sqrt() - 15.0).abs() < 0.2, "sd {}", var.sqrt());
    // Exponential(20): sd of the mean 0.063; tolerance 0.35.
    let xs = samples("kind = \"exponential\"\nmean = 20", 100_000);
    assert!((mean(&xs) - 20.0).abs() < 0.35, "{}", mean(&xs));
    assert!(xs.iter().all(|&x| x >= 0.0));
    // Pareto(scale 2, shape 3): mean 3, variance 3; sd of the mean 0.0055;
    // tolerance 0.05 (the tail makes the sample mean converge slowly).
    let xs = samples("kind = \"pareto\"\nscale = 2\nshape = 3", 100_000);
    assert!((mean(&xs) - 3.0).abs() < 0.05, "{}", mean(&xs));
    assert!(xs.iter().all(|&x| x >= 2.0));
}

#[test]
fn float_precision_is_honoured() {
    let g = one("[generator.x]\nkind = \"normal\"\nmean = 5\nstddev = 1\nprecision = 2\n");
    for v in render_many(&[g], 3, lane(0, 0), "{{x}}", 100) {
        let (_, frac) = v.split_once('.').unwrap();
        assert_eq!(frac.len(), 2, "{v}");
    }
    let g = one("[generator.x]\nkind = \"exponential\"\nmean = 5\nprecision = 0\n");
    for v in render_many(&[g], 3, lane(0, 0), "{{x}}", 100) {
        assert!(!v.contains('.'), "{v}");
    }
}

#[test]
fn choice_weights_hold() {
    let g = one(
        "[generator.op]\nkind = \"choice\"\nvalues = [\"read\", \"write\", \"scan\", \"never\"]\nweights = [70, 20, 10, 0]\n",
    );
    let vals = render_many(&[g], 9, lane(0, 0), "{{op}}", 100_000);
    let share = |v: &str| vals.iter().filter(|x| *x == v).count() as f64 / 1e5;
    // Binomial sd at p = 0.7 over 1e5 draws is 0.0014; tolerance 0.01.
    assert!((share("read") - 0.7).abs() < 0.01, "{}", share("read"));
    assert!((share("write") - 0.2).abs() < 0.01, "{}", share("write"));
    assert!((share("scan") - 0.1).abs() < 0.01, "{}", share("scan"));
    assert_eq!(share("never"), 0.0);
    // Without weights: even; numbers are values too.
    let g = one("[generator.n]\nkind = \"choice\"\nvalues = [1, 2.5, true]\n");
    let vals = render_many(&[g], 9, lane(0, 0), "{{n}}", 30_000);
    for v in ["1", "2.5", "true"] {
        let s = vals.iter().filter(|x| *x == v).count() as f64 / 3e4;
        assert!((s - 1.0 / 3.0).abs() < 0.02, "{v}: {s}");
    }
}

#[test]
fn strings_bytes_uuids_and_timestamps() {
    let g = one(
        "[generator.s]\nkind = \"string\"\nlength = { min = 3, max = 5 }\nalphabet = \"hex\"\n",
    );
    for v in render_many(&[g], 1, lane(0, 0), "{{s}}", 500) {
        assert!((3..=5).contains(&v.len()), "{v}");
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{v}"
        );
    }
    let g = one("[generator.s]\nkind = \"string\"\nlength = 6\nchars = \"ab\u{e9}\"\n");
    for v in render_many(&[g], 1, lane(0, 0), "{{s}}", 100) {
        assert_eq!(v.chars().count(), 6);
        assert!(v.chars().all(|c| "ab\u{e9}".contains(c)), "{v}");
    }
    let g = one(
        "[generator.s]\nkind = \"string\"\nlength = { dist = \"normal\", mean = 40, stddev = 4 }\n",
    );
    let lens: Vec<f64> = render_many(&[g], 1, lane(0, 0), "{{s}}", 5000)
        .iter()
        .map(|v| v.len() as f64)
        .collect();
    assert!((mean(&lens) - 40.0).abs() < 0.5, "{}", mean(&lens));
    let g = one("[generator.b]\nkind = \"bytes\"\nlength = 13\n");
    let t = Template::compile("{{b}}", std::slice::from_ref(&g)).unwrap();
    let mut w = WorkerGen::new(std::slice::from_ref(&g), 1, lane(0, 0));
    let mut out = Vec::new();
    w.render(&t, &mut out);
    assert_eq!(out.len(), 13);
    let g = one("[generator.u]\nkind = \"uuid\"\n");
    let ids = render_many(&[g], 1, lane(0, 0), "{{u}}", 1000);
    for id in &ids {
        let u = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(u.get_version_num(), 4, "{id}");
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{id}");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let g = one("[generator.t]\nkind = \"timestamp\"\nformat = \"unix_ms\"\n");
    let ms: u64 = render_many(&[g], 1, lane(0, 0), "{{t}}", 1)[0]
        .parse()
        .unwrap();
    assert!(ms / 1000 >= now && ms / 1000 <= now + 5, "{ms}");
    let g = one("[generator.t]\nkind = \"timestamp\"\n");
    let text = &render_many(&[g], 1, lane(0, 0), "{{t}}", 1)[0];
    let parsed = humantime::parse_rfc3339(text).unwrap();
    let secs = parsed
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(secs >= now && secs <= now + 5, "{text}");
}

#[test]
fn zipf_through_the_template_is_in_range() {
    let g = one("[generator.k]\nkind = \"zipf\"\nn = 1_000_000_000\nexponent = 0.99\n");
    let vals = render_many(&[g], 1, lane(0, 0), "{{k}}", 20_000);
    let ks: Vec<u64> = vals.iter().map(|v| v.parse().unwrap()).collect();
    assert!(ks.iter().all(|&k| (1..=1_000_000_000).contains(&k)));
    assert!(
        ks.iter().filter(|&&k| k == 1).count() > 100,
        "rank 1 is frequent"
    );
    assert!(ks.iter().any(|&k| k > 1_000_000), "the tail is reached");
}

// ------------------------------------------------------------ templates

#[test]
fn templates_escape_and_constants() {
    let gens = parse(MANY).unwrap();
    let t = Template::compile("plain text, no holes", &gens).unwrap();
    assert!(t.is_constant());
    assert_eq!(t.literal(), Some(&b"plain text, no holes"[..]));
    let t = Template::compile("a \\{{key}} b", &gens).unwrap();
    assert_eq!(t.literal(), Some(&b"a {{key}} b"[..]));
    let t = Template::compile("back\\slash \\ {x}", &gens).unwrap();
    assert_eq!(t.literal(), Some(&b"back\\slash \\ {x}"[..]));
    let t = Template::compile("{{key}}", &gens).unwrap();
    assert!(!t.is_constant());
    assert_eq!(t.literal(), None);
    assert_eq!(
        t.generators().collect::<Vec<_>>(),
        [gens.iter().position(|g| g.name == "key").unwrap()]
    );
    let r = render_many(&[], 1, lane(0, 2), "é{{worker}}ü\\{{ñ", 1);
    assert_eq!(r[0], "é2ü{{ñ");
    let r = render_many(&[], 1, lane(0, 2), "[{{{worker}}}] {\"w\":{{worker}}}", 1);
    assert_eq!(r[0], "[{2}] {\"w\":2}");
}

#[test]
fn template_errors_say_what_is_wrong() {
    let gens = parse(MANY).unwrap();
    let e = Template::compile("/x/{{kye}}", &gens).unwrap_err();
    assert!(e.starts_with("`{{kye}}` in \"/x/{{kye}}\" names no generator; known: agent, worker, iteration, blob, "), "{e}");
    assert!(e.contains("key"), "{e}");
    let e = Template::compile("/x/{{key", &gens).unwrap_err();
    assert_eq!(
        e,
        "unclosed `{{` in \"/x/{{key\": close it with `}}`, or write `\\{{` for a literal `{{`"
    );
    let e = Template::compile("/x/{{ }}", &gens).unwrap_err();
    assert!(e.starts_with("empty `{{}}`"), "{e}");
}

#[test]
#[should_panic(expected = "template compiled against other generators")]
fn a_template_of_other_generators_is_refused() {
    let gens = parse(MANY).unwrap();
    let t = Template::compile("{{key}}", &gens).unwrap();
    let mut w = WorkerGen::new(&gens[..2], 1, lane(0, 0));
    w.render(&t, &mut Vec::new());
}

// ------------------------------------------------------------ files

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fleetbench-gen-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn csv_column_from_a_file_next_to_the_workload() {
    let dir = temp_dir("csv");
    std::fs::write(
        dir.join("users.csv"),
        "id,email\n1,\"a@x, inc\"\n2,b@x\n3,c@x\n",
    )
    .unwrap();
    let g = parse_in(
        &dir,
        "[generator.email]\nkind = \"file\"\nfile = \"users.csv\"\ncolumn = \"email\"\n",
    )
    .unwrap()
    .remove(0);
    let GenKind::File { rows, .. } = &g.kind else {
        panic!()
    };
    assert_eq!(rows.iter().collect::<Vec<_>>(), ["a@x, inc", "b@x", "c@x"]);
    assert_eq!(
        render_many(std::slice::from_ref(&g), 1, ONE_LANE, "{{email}}", 4),
        ["a@x, inc", "b@x", "c@x", "a@x, inc"]
    );
    let e = parse_in(
        &dir,
        "[generator.email]\nkind = \"file\"\nfile = \"users.csv\"\ncolumn = \"mail\"\n",
    )
    .unwrap_err();
    assert_eq!(
        e,
        "w.toml:4:10: generator \"email\": data file \"users.csv\" has no column \"mail\"; its header has: id, email"
    );
    let e = parse_in(
        &dir,
        "[generator.email]\nkind = \"file\"\nfile = \"users.csv\"\n",
    )
    .unwrap_err();
    assert!(
        e.starts_with(
            "w.toml:3:8: generator \"email\": \"users.csv\" looks like CSV: name the column"
        ),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lines_file_random_and_sequential_per_worker() {
    let dir = temp_dir("lines");
    let lines: Vec<String> = (0..12).map(|i| format!("row{i}")).collect();
    std::fs::write(dir.join("keys.txt"), lines.join("\n") + "\n\n").unwrap();
    let g = parse_in(
        &dir,
        "[generator.k]\nkind = \"file\"\nfile = \"keys.txt\"\n",
    )
    .unwrap()
    .remove(0);
    // Workers stride over the agent's rows: worker w takes w, w+W, ...
    let mut seen = Vec::new();
    for worker in 0..4 {
        let vals = render_many(std::slice::from_ref(&g), 1, lane(0, worker), "{{k}}", 3);
        seen.extend(vals);
    }
    seen.sort();
    let mut expected = lines.clone();
    expected.sort();
    assert_eq!(seen, expected, "one pass of 4 workers covers the rows once");
    let g = parse_in(
        &dir,
        "[generator.k]\nkind = \"file\"\nfile = \"keys.txt\"\norder = \"random\"\n",
    )
    .unwrap()
    .remove(0);
    let vals = render_many(&[g], 1, lane(0, 0), "{{k}}", 2000);
    assert!(vals.iter().all(|v| lines.contains(v)));
    for l in &lines {
        assert!(vals.contains(l), "{l} never drawn");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn split_file_slices_are_disjoint_and_cover_the_file() {
    let rows = Rows::new((0..103).map(|i| format!("r{i}")));
    let g = GenSpec {
        name: "k".into(),
        kind: GenKind::File {
            path: "k.txt".into(),
            column: None,
            order: Order::Sequential,
            split: true,
            rows,
        },
        seed: None,
    };
    for agents in [1u32, 2, 3, 7, 103] {
        let mut all: Vec<String> = Vec::new();
        for a in 0..agents {
            let pb = g.to_pb(a, agents);
            assert!(!pb.values.is_empty());
            let back = GenSpec::from_pb(&pb).unwrap();
            let GenKind::File { rows, .. } = &back.kind else {
                panic!()
            };
            all.extend(rows.iter().map(str::to_string));
        }
        let expected: Vec<String> = (0..103).map(|i| format!("r{i}")).collect();
        assert_eq!(all, expected, "{agents} agents");
    }
    assert!(g.check_split(103).is_ok());
    assert_eq!(
        g.check_split(104).unwrap_err(),
        "generator \"k\": \"k.txt\" has 103 rows, fewer than the 104 agents it is split across"
    );
    // Unsplit: every agent gets every row.
    let mut whole = g.clone();
    if let GenKind::File { split, .. } = &mut whole.kind {
        *split = false;
    }
    assert_eq!(whole.to_pb(2, 3).values.len(), 103);
}

#[test]
fn file_errors() {
    let dir = temp_dir("errors");
    let e = parse_in(
        &dir,
        "[generator.k]\nkind = \"file\"\nfile = \"nope.txt\"\n",
    )
    .unwrap_err();
    assert!(
        e.starts_with("w.toml:3:8: generator \"k\": cannot read data file \"nope.txt\" ("),
        "{e}"
    );
    assert!(e.contains("No such file"), "{e}");
    let big = std::fs::File::create(dir.join("big.txt")).unwrap();
    big.set_len(MAX_FILE_BYTES + 1).unwrap();
    let e = parse_in(&dir, "[generator.k]\nkind = \"file\"\nfile = \"big.txt\"\n").unwrap_err();
    assert_eq!(
        e,
        format!(
            "w.toml:3:8: generator \"k\": data file \"big.txt\" is {} bytes, more than the limit of 64 MiB; cut it down or split it across runs",
            MAX_FILE_BYTES + 1
        )
    );
    std::fs::write(dir.join("empty.txt"), "\n\n").unwrap();
    let e = parse_in(
        &dir,
        "[generator.k]\nkind = \"file\"\nfile = \"empty.txt\"\n",
    )
    .unwrap_err();
    assert_eq!(
        e,
        "w.toml:3:8: generator \"k\": data file \"empty.txt\" has no rows"
    );
    std::fs::write(dir.join("bin.txt"), b"ok\n\xff\xfe\n").unwrap();
    let e = parse_in(&dir, "[generator.k]\nkind = \"file\"\nfile = \"bin.txt\"\n").unwrap_err();
    assert_eq!(
        e,
        "w.toml:3:8: generator \"k\": data file \"bin.txt\" is not UTF-8 text (line 2)"
    );
    std::fs::write(dir.join("bad.csv"), "a,b\n1\n").unwrap();
    let e = parse_in(
        &dir,
        "[generator.k]\nkind = \"file\"\nfile = \"bad.csv\"\ncolumn = \"a\"\n",
    )
    .unwrap_err();
    assert_eq!(
        e,
        "w.toml:3:8: generator \"k\": data file \"bad.csv\": line 2 has 1 field, the header has 2"
    );
    let e = parse_in(&dir, "[generator.k]\nkind = \"file\"\nfile = \"bad.csv\"\ncolumn = \"a\"\norder = \"shuffled\"\n").unwrap_err();
    assert_eq!(
        e,
        "w.toml:5:9: generator \"k\": unknown order \"shuffled\"; expected sequential or random"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ------------------------------------------------------------ rejections

#[test]
fn every_rejection_names_the_place_and_what_is_expected() {
    let cases: &[(&str, &str)] = &[
        (
            "kind = \"zipff\"",
            "w.toml:2:8: generator \"g\": unknown kind \"zipff\"; expected one of: sequence, uniform, uniform_int, uniform_float, zipf, normal, exponential, pareto, choice, string, bytes, uuid, timestamp, file",
        ),
        (
            "kind = \"zipf\"",
            "w.toml:1:12: generator \"g\": zipf needs `n`, like n = 1000 (values 1 to n)",
        ),
        (
            "kind = \"zipf\"\nn = 0",
            "w.toml:3:5: generator \"g\": zipf needs n >= 1, a whole number up to 2^53, not 0",
        ),
        (
            "kind = \"zipf\"\nn = 10.5",
            "w.toml:3:5: generator \"g\": zipf needs n >= 1, a whole number up to 2^53, not 10.5",
        ),
        (
            "kind = \"zipf\"\nn = 10\nexponent = 0",
            "w.toml:4:12: generator \"g\": zipf needs exponent > 0, not 0",
        ),
        (
            "kind = \"zipf\"\nn = 10\nmin = 1",
            "w.toml:4:7: generator \"g\": zipf does not take `min`; it takes `n`, `exponent` (and `seed`)",
        ),
        (
            "kind = \"uuid\"\nn = 1",
            "w.toml:3:5: generator \"g\": uuid does not take `n`; it takes no keys but `seed`",
        ),
        (
            "kind = \"uniform\"\nmin = 1",
            "w.toml:1:12: generator \"g\": uniform needs `max`, like max = 100",
        ),
        (
            "kind = \"uniform\"\nmin = 5\nmax = 1",
            "w.toml:4:7: generator \"g\": uniform needs min <= max, not min 5 and max 1",
        ),
        (
            "kind = \"uniform\"\nmin = 5.5\nmax = 1.5",
            "w.toml:4:7: generator \"g\": uniform needs min <= max, not min 5.5 and max 1.5",
        ),
        (
            "kind = \"uniform_int\"\nmin = 0.5\nmax = 1",
            "w.toml:3:7: generator \"g\": uniform_int needs a whole min, not 0.5",
        ),
        (
            "kind = \"uniform\"\nmin = 0\nmax = 9007199254740993",
            "w.toml:4:7: generator \"g\": max must be between -2^53 and 2^53, not 9007199254740993",
        ),
        (
            "kind = \"uniform\"\nmin = 0\nmax = 1\nprecision = 20",
            "w.toml:5:13: generator \"g\": precision must be 0 to 12 digits after the point, not 20",
        ),
        (
            "kind = \"uniform\"\nmin = 0\nmax = inf",
            "w.toml:4:7: generator \"g\": max must be a finite number, not inf",
        ),
        (
            "kind = \"sequence\"\nstep = 0",
            "w.toml:3:8: generator \"g\": sequence needs a step other than 0",
        ),
        (
            "kind = \"normal\"\nmean = 1",
            "w.toml:1:12: generator \"g\": normal needs `stddev`, like stddev = 15",
        ),
        (
            "kind = \"normal\"\nmean = 1\nstddev = -1",
            "w.toml:4:10: generator \"g\": normal needs stddev >= 0, not -1",
        ),
        (
            "kind = \"exponential\"\nmean = 0",
            "w.toml:3:8: generator \"g\": exponential needs mean > 0, not 0",
        ),
        (
            "kind = \"pareto\"\nscale = 1",
            "w.toml:1:12: generator \"g\": pareto needs `shape`, like shape = 1.5",
        ),
        (
            "kind = \"pareto\"\nscale = 1\nshape = -2",
            "w.toml:4:9: generator \"g\": pareto needs shape > 0, not -2",
        ),
        (
            "kind = \"choice\"",
            "w.toml:1:12: generator \"g\": choice needs `values`, like values = [\"GET\", \"PUT\"]",
        ),
        (
            "kind = \"choice\"\nvalues = []",
            "w.toml:3:10: generator \"g\": choice needs at least one value",
        ),
        (
            "kind = \"choice\"\nvalues = [\"a\", \"b\"]\nweights = [1]",
            "w.toml:4:11: generator \"g\": choice has 2 values but 1 weight; give one weight per value",
        ),
        (
            "kind = \"choice\"\nvalues = [\"a\", \"b\"]\nweights = [1, -1]",
            "w.toml:4:15: generator \"g\": a weight must be a number >= 0, not -1",
        ),
        (
            "kind = \"choice\"\nvalues = [\"a\", \"b\"]\nweights = [0, 0]",
            "w.toml:4:11: generator \"g\": the weights add up to 0; give at least one a weight above 0",
        ),
        (
            "kind = \"string\"",
            "w.toml:1:12: generator \"g\": string needs `length`, like length = 16 or length = { min = 8, max = 32 }",
        ),
        (
            "kind = \"string\"\nlength = -1",
            "w.toml:3:10: generator \"g\": length length must be a whole number from 0 to 1048576, not -1; write 16, { min = 8, max = 32 }, { dist = \"normal\", mean = 100, stddev = 20 } or { dist = \"exponential\", mean = 100 }",
        ),
        (
            "kind = \"string\"\nlength = { min = 9, max = 3 }",
            "w.toml:3:10: generator \"g\": length needs min <= max, not min 9 and max 3",
        ),
        (
            "kind = \"string\"\nlength = { min = 1 }",
            "w.toml:3:10: generator \"g\": length uniform needs `max`; write 16, { min = 8, max = 32 }, { dist = \"normal\", mean = 100, stddev = 20 } or { dist = \"exponential\", mean = 100 }",
        ),
        (
            "kind = \"string\"\nlength = { dist = \"gamma\", mean = 1 }",
            "w.toml:3:10: generator \"g\": length has unknown dist \"gamma\"; expected uniform, normal or exponential",
        ),
        (
            "kind = \"string\"\nlength = { dist = \"exponential\", mean = 1, max = 3 }",
            "w.toml:3:10: generator \"g\": length exponential does not take `max`; write 16, { min = 8, max = 32 }, { dist = \"normal\", mean = 100, stddev = 20 } or { dist = \"exponential\", mean = 100 }",
        ),
        (
            "kind = \"string\"\nlength = 4\nalphabet = \"greek\"",
            "w.toml:4:12: generator \"g\": unknown alphabet \"greek\"; expected alnum, alpha, hex or numeric, or `chars = \"...\"` for your own",
        ),
        (
            "kind = \"string\"\nlength = 4\nchars = \"\"",
            "w.toml:4:9: generator \"g\": chars must hold at least one character",
        ),
        (
            "kind = \"string\"\nlength = 4\nchars = \"ab\"\nalphabet = \"hex\"",
            "w.toml:5:12: generator \"g\": string takes `alphabet` or `chars`, not both",
        ),
        (
            "kind = \"timestamp\"\nformat = \"iso\"",
            "w.toml:3:10: generator \"g\": unknown format \"iso\"; expected unix_s, unix_ms, unix_us or rfc3339",
        ),
        (
            "kind = \"file\"",
            "w.toml:1:12: generator \"g\": file needs `file`, like file = \"keys.csv\" (relative to the workload file)",
        ),
        (
            "kind = \"uuid\"\nseed = -1",
            "w.toml:3:8: generator \"g\": seed must be zero or more, not -1",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            &reject(&format!("[generator.g]\n{body}\n")),
            expected,
            "{body}"
        );
    }
    let e = reject("[generator.agent]\nkind = \"uuid\"\n");
    assert_eq!(
        e,
        "w.toml:1:12: generator name \"agent\" is built in ({{agent}} is always there); pick another name"
    );
    let e = reject("[generator.\"a b\"]\nkind = \"uuid\"\n");
    assert_eq!(
        e,
        "w.toml:1:12: generator name \"a b\" must be non-empty letters, digits, '-', '_' or '.'"
    );
    let e = reject("[generator.g]\nkind = \"uuid\"\nrats = 5\n");
    assert!(e.contains("unknown field `rats`"), "{e}");
}

#[test]
fn the_readme_example_parses_and_renders() {
    let readme = include_str!("../../../../README.md");
    let start = readme
        .find("```toml\n[generator.user]")
        .expect("README has the example")
        + 8;
    let block = &readme[start..];
    let block = &block[..block.find("```").unwrap()];
    let (gens_text, phase) = block.split_once("[phase.http]").unwrap();
    let dir = temp_dir("readme");
    std::fs::write(dir.join("users.csv"), "id,email\n1,a@x\n2,b@x\n").unwrap();
    let gens = parse_in(&dir, gens_text).unwrap();
    assert_eq!(gens.len(), 8);
    let body = phase
        .lines()
        .find_map(|l| l.strip_prefix("body = '"))
        .unwrap();
    let body = body.strip_suffix('\'').unwrap();
    let r = render_many(&gens, 1, lane(0, 0), body, 1);
    assert!(r[0].starts_with("{\"user\":"), "{}", r[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ------------------------------------------------------------ wire

#[test]
fn every_kind_round_trips_through_the_wire() {
    let dir = temp_dir("wire");
    std::fs::write(dir.join("k.csv"), "a,b\n1,x\n2,y\n").unwrap();
    let mut gens = parse_in(&dir, &format!("{MANY}\n[generator.t]\nkind = \"timestamp\"\nformat = \"unix_us\"\nseed = 9\n\n[generator.c]\nkind = \"string\"\nlength = {{ dist = \"exponential\", mean = 7.5 }}\nchars = \"xyz\u{e9}\"\n\n[generator.e]\nkind = \"bytes\"\nlength = {{ dist = \"normal\", mean = 7, stddev = 2 }}\n\n[generator.f]\nkind = \"file\"\nfile = \"k.csv\"\ncolumn = \"b\"\norder = \"random\"\nsplit = true\n\n[generator.u2]\nkind = \"uniform_float\"\nmin = 1\nmax = 2\n"))
        .unwrap();
    assert_eq!(gens.len(), 16);
    for g in &mut gens {
        let back = GenSpec::from_pb(&g.to_pb(0, 1)).unwrap();
        // The CSV column is not sent: the rows are its values.
        if let GenKind::File { column, .. } = &mut g.kind {
            *column = None;
        }
        assert_eq!(&back, g);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_wire_generators_are_refused() {
    let g = one("[generator.z]\nkind = \"zipf\"\nn = 10\n");
    let mut pb = g.to_pb(0, 1);
    pb.params.insert("n".into(), 0.0);
    assert_eq!(
        GenSpec::from_pb(&pb).unwrap_err(),
        "generator \"z\": zipf n 0 < 1"
    );
    pb.params.remove("n");
    assert_eq!(
        GenSpec::from_pb(&pb).unwrap_err(),
        "generator \"z\": zipf without `n`"
    );
    pb.kind = "gamma".into();
    assert_eq!(
        GenSpec::from_pb(&pb).unwrap_err(),
        "generator \"z\": unknown kind \"gamma\""
    );
}

#[test]
fn the_resolved_json_counts_rows_instead_of_listing_them() {
    let g = GenSpec {
        name: "k".into(),
        kind: GenKind::File {
            path: "k.txt".into(),
            column: None,
            order: Order::Random,
            split: false,
            rows: Rows::new(["a", "b"]),
        },
        seed: Some(3),
    };
    assert_eq!(
        serde_json::to_string(&g).unwrap(),
        r#"{"name":"k","kind":{"kind":"file","path":"k.txt","column":null,"order":"random","split":false,"rows":2},"seed":3}"#
    );
}
