//! Times the parser alone on files of OTLP JSON lines:
//! `cargo run --release --no-default-features --example parse_files -- FILE... [--threads N]`
use std::time::Instant;

fn main() {
    let mut threads = 1;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--threads" {
            threads = args.next().and_then(|n| n.parse().ok()).expect("--threads N");
        } else {
            files.push(a);
        }
    }
    let data: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("read")).collect();
    let bytes: usize = data.iter().map(Vec::len).sum();
    let t = Instant::now();
    let mut spans = 0;
    for d in &data {
        spans += hopscope_otlp_native::otlp_json::parse(d, threads)
            .expect("parse")
            .len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "{spans} spans, {:.0} MB in {s:.3} s: {:.0} spans/s, {:.0} MB/s ({threads} thread(s) per file)",
        bytes as f64 / 1e6,
        spans as f64 / s,
        bytes as f64 / 1e6 / s
    );
}
