//! Times the nesting pre-scan against the whole parse, interleaved (machine load hits both alike):
//! `cargo run --release --no-default-features --example scan_only -- FILE`
use std::time::Instant;

fn main() {
    let data = std::fs::read(std::env::args().nth(1).expect("FILE")).expect("read");
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let (mut scan, mut parse) = (0.0, 0.0);
    for _ in 0..5 {
        let t = Instant::now();
        let ok = lines
            .iter()
            .filter(|l| hopscope_otlp_native::otlp_json::nesting_within(l, 64))
            .count();
        scan += t.elapsed().as_secs_f64();
        assert_eq!(ok, lines.len());
        let t = Instant::now();
        hopscope_otlp_native::otlp_json::parse(&data, 1).expect("parse");
        parse += t.elapsed().as_secs_f64();
    }
    let mb = data.len() as f64 / 1e6 * 5.0;
    println!(
        "scan {:.0} MB/s, whole parse (scan included) {:.0} MB/s: the scan is {:.1} % of the parse",
        mb / scan,
        mb / parse,
        100.0 * scan / parse
    );
}
