//! Kernel benchmark against GMP (gmpy2, run through `python3` in the same run).
//!
//! `cargo bench -p jetmill-compute --bench kernels` (or
//! `scripts/bench-kernels.sh`, which installs gmpy2 first). Set
//! `JETMILL_BENCH_1E7=1` to include factorial(10^7) (GMP alone takes ~25 s)
//! and `JETMILL_BENCH_REPS` to change the repetitions (best of, default 3).
//! Every jetmill measurement runs in a child process (this binary re-run with
//! `JETMILL_BENCH_CHILD`), so the peak RSS it reports (`VmHWM`) is the
//! kernel's own.
//!
//! `JETMILL_BENCH_SPLIT=1` adds the split path at n = 10^7 (`JETMILL_BENCH_SPLIT_N`
//! to change it): 8 partials one after another on 1 thread each, then the
//! combine on 2 threads, against `factorial_decimal` on 2 threads.
//! `JETMILL_BENCH_MEM=1` adds peak RSS of `factorial_decimal` against
//! `estimated_peak_bytes` at 10^6 and 10^7. `JETMILL_BENCH_ONLY=1` runs only
//! those two (no GMP, no python3 needed).

use jetmill_compute::factorial::Partial;
use jetmill_compute::{factorial, fibonacci, run, task, Control, Task};
use malachite_nz::natural::Natural;
use sha2::{Digest, Sha256};
use std::process::Command;
use std::time::Instant;

const GMP_SCRIPT: &str = r#"
import sys, time, gmpy2
op, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
best_c = best_t = float("inf")
for _ in range(reps):
    t0 = time.perf_counter()
    x = gmpy2.fac(n) if op == "fac" else gmpy2.fib(n)
    t1 = time.perf_counter()
    s = x.digits()
    t2 = time.perf_counter()
    best_c, best_t = min(best_c, t1 - t0), min(best_t, t2 - t0)
    del x, s
print(best_c, best_t, gmpy2.version())
"#;

/// One measurement: compute-only and total seconds (best of the runs), peak RSS.
#[derive(Clone, Copy, Default)]
struct Times {
    compute: f64,
    total: f64,
    peak_mb: f64,
    digits: usize,
}

fn main() {
    if let Ok(spec) = std::env::var("JETMILL_BENCH_CHILD") {
        child(&spec);
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let reps: usize = std::env::var("JETMILL_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let big = std::env::var("JETMILL_BENCH_1E7").is_ok_and(|v| v == "1");
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    if flag("JETMILL_BENCH_MEM") {
        memory_case(reps);
    }
    if flag("JETMILL_BENCH_SPLIT") {
        let n = std::env::var("JETMILL_BENCH_SPLIT_N")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000_000);
        split_case(n, 8);
    }
    if flag("JETMILL_BENCH_ONLY") {
        return;
    }
    println!("jetmill-compute kernels vs GMP (gmpy2), best of {reps}, thread budget 2");
    println!("{}", rustc_and_machine());
    println!("load average at start: {}", load());
    let mut rows: Vec<String> = Vec::new();
    let header = "| case | jetmill compute | jetmill total | GMP compute | GMP total | ratio total (jetmill/GMP) | jetmill peak RSS |";
    let mut case = |name: &str, op: &str, n: u64, threads: usize, reps: usize| {
        let ours = measure(op, n, threads, reps);
        let (gc, gt, ver) = gmp(if op.starts_with("fib") { "fib" } else { "fac" }, n, reps);
        let row = format!(
            "| {name} ({} digits) | {:.3} s | {:.3} s | {gc:.3} s | {gt:.3} s | **{:.2}x** (compute {:.2}x) | {:.0} MB |",
            ours.digits,
            ours.compute,
            ours.total,
            ours.total / gt,
            ours.compute / gc,
            ours.peak_mb
        );
        println!("{row}    [gmpy2 {ver}]");
        rows.push(row);
    };
    case("factorial(10^6), 2 threads", "fac", 1_000_000, 2, reps);
    case("factorial(10^6), 1 thread", "fac", 1_000_000, 1, reps);
    case("fibonacci(10^7), 2 threads", "fib", 10_000_000, 2, reps);
    case("fibonacci(10^7), 1 thread", "fib", 10_000_000, 1, reps);
    if big {
        case("factorial(10^7), 2 threads", "fac", 10_000_000, 2, 1);
    } else {
        println!("(factorial(10^7) skipped: set JETMILL_BENCH_1E7=1)");
    }
    let fm = measure("fibmod", 1_000_000_000_000_000_000, 1, reps);
    let naive = measure("naive", 100_000, 1, 1);
    let fast = measure("fac", 100_000, 2, reps);
    let fast1 = measure("fac", 100_000, 1, reps);
    println!();
    println!("{header}");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    println!();
    println!("load average at end: {}", load());
    println!("fibonacci(10^18) mod (2^64 - 59): {:.1} us", fm.total * 1e6);
    println!(
        "naive loop (acc *= i, then to_string) at 10^5: {:.3} s; jetmill {:.4} s (2 threads) = {:.0}x faster, {:.4} s (1 thread) = {:.0}x",
        naive.total,
        fast.total,
        naive.total / fast.total,
        fast1.total,
        naive.total / fast1.total
    );
}

/// Run one kernel `reps` times in a child process; best times and peak RSS.
fn measure(op: &str, n: u64, threads: usize, reps: usize) -> Times {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => panic!("cannot find the benchmark binary: {e}"),
    };
    let out = Command::new(exe)
        .env("JETMILL_BENCH_CHILD", format!("{op}:{n}:{threads}:{reps}"))
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "child {op}({n}) failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run child: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    match v.as_slice() {
        [c, t, mb, d] => Times {
            compute: *c,
            total: *t,
            peak_mb: *mb,
            digits: *d as usize,
        },
        _ => panic!("unexpected child output {text:?}"),
    }
}

/// Where the split case keeps partial `i` of `n` between its child processes.
fn part_path(n: u64, i: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("jetmill-bench-partial-{n}-{i}.bin"))
}

/// Run one kernel once in a child; `(times, stderr)` (the child prints the SHA-256 there).
fn measure_text(op: &str, n: u64, threads: usize) -> (Times, String) {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => panic!("cannot find the benchmark binary: {e}"),
    };
    let out = Command::new(exe)
        .env("JETMILL_BENCH_CHILD", format!("{op}:{n}:{threads}:1"))
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "child {op}({n}) failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run child: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let t = match v.as_slice() {
        [c, t, mb, d] => Times {
            compute: *c,
            total: *t,
            peak_mb: *mb,
            digits: *d as usize,
        },
        _ => panic!("unexpected child output {text:?}"),
    };
    let sha = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("sha256 ").map(str::to_string))
        .unwrap_or_default();
    (t, sha)
}

/// Peak RSS of `factorial_decimal` against the planning estimate.
fn memory_case(reps: usize) {
    println!("peak RSS of factorial_decimal (VmHWM of a child), 2 threads, best time of {reps}:");
    println!("| n | digits | time | peak RSS | peak / text | estimate | estimate / peak |");
    println!("|---|---|---|---|---|---|---|");
    for n in [1_000_000u64, 10_000_000] {
        let t = measure("facd", n, 2, reps);
        let est = task::estimated_peak_bytes(&Task::Factorial { n }) as f64 / 1e6;
        println!(
            "| {n} | {} | {:.3} s | {:.0} MB | {:.2}x | {est:.0} MB | {:.2} |",
            t.digits,
            t.total,
            t.peak_mb,
            t.peak_mb * 1e6 / t.digits as f64,
            est / t.peak_mb
        );
    }
}

/// The split path (k partials on 1 thread each, one after another, then the
/// combine on 2 threads) against `factorial_decimal` on 2 threads.
fn split_case(n: u64, k: usize) {
    println!("split path at n = {n}, k = {k} (load average {}):", load());
    let (single, want) = measure_text("facd", n, 2);
    let (parts, _) = measure_text("parts", n, k);
    let (comb, got) = measure_text("comb", n, 2);
    for i in 0..k {
        let _ = std::fs::remove_file(part_path(n, i));
    }
    assert_eq!(
        got, want,
        "the split path's text differs from the single path's"
    );
    let est_part = factorial::split_ranges(n, k)
        .into_iter()
        .map(|(lo, hi)| factorial::partial_peak_bytes(lo, hi))
        .max()
        .unwrap_or(0) as f64
        / 1e6;
    let est_comb = factorial::combine_peak_bytes(n) as f64 / 1e6;
    let est_single = factorial::estimated_peak_bytes(n) as f64 / 1e6;
    let split = parts.total + comb.total;
    println!("| path | time | peak RSS | estimate |");
    println!("|---|---|---|---|");
    println!(
        "| factorial_decimal, 2 threads | {:.3} s | {:.0} MB | {est_single:.0} MB |",
        single.total, single.peak_mb
    );
    println!(
        "| {k} partials, 1 thread each, in turn | {:.3} s | {:.0} MB (all {k} in one process) | {est_part:.0} MB per partial |",
        parts.total, parts.peak_mb
    );
    println!(
        "| combine_decimal, 2 threads (from the bytes) | {:.3} s | {:.0} MB | {est_comb:.0} MB |",
        comb.total, comb.peak_mb
    );
    println!(
        "split total {split:.3} s = **{:.2}x** the single path; same SHA-256 {}",
        split / single.total,
        &want[..16.min(want.len())]
    );
}

/// In the child: time the kernel, then print `compute total peak_mb digits`.
fn child(spec: &str) {
    let p: Vec<u64> = spec
        .split(':')
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let op = spec.split(':').next().unwrap_or("");
    let [n, threads, reps] = p[..] else {
        panic!("bad spec {spec}")
    };
    let ctl = Control::silent(threads as usize);
    let (mut best_c, mut best_t, mut digits) = (f64::INFINITY, f64::INFINITY, 0);
    for _ in 0..reps {
        let t0 = Instant::now();
        let (c, d) = match op {
            "fac" => {
                let c = time(|| factorial::factorial_stripped(n, &ctl).map(|_| ()));
                let t = Instant::now();
                let o = run(&Task::Factorial { n }, &ctl).map(|o| o.digits());
                (c, (t, o))
            }
            "fib" => {
                let c = time(|| fibonacci::fibonacci(n, &ctl).map(|_| ()));
                let t = Instant::now();
                let o = run(&Task::Fibonacci { n }, &ctl).map(|o| o.digits());
                (c, (t, o))
            }
            "fibmod" => {
                let t = Instant::now();
                let o =
                    fibonacci::fibonacci_mod(n, u64::MAX - 58, &ctl).map(|v| v.to_string().len());
                (0.0, (t, o))
            }
            "facd" => {
                let t = Instant::now();
                let o = factorial::factorial_decimal(n, &ctl).map(|s| {
                    let d = s.len();
                    eprintln!("sha256 {}", hex::encode(Sha256::digest(s.as_bytes())));
                    d
                });
                (0.0, (t, o))
            }
            "parts" => {
                // The spec's thread field is k here: k partials, 1 thread each, in turn.
                let t = Instant::now();
                let one = Control::silent(1);
                let o = factorial::split_ranges(n, threads as usize)
                    .into_iter()
                    .enumerate()
                    .try_for_each(|(i, (lo, hi))| {
                        let p = factorial::partial(lo, hi, &one)?;
                        std::fs::write(part_path(n, i), p.to_bytes())
                            .map_err(|e| jetmill_compute::ComputeError::Resources(e.to_string()))
                    })
                    .map(|()| 0);
                (0.0, (t, o))
            }
            "part1" => {
                // Partial number `threads` of the 8-way plan alone, 1 thread.
                let t = Instant::now();
                let (lo, hi) = factorial::split_ranges(n, 8)[threads as usize];
                let o = factorial::partial(lo, hi, &Control::silent(1)).map(|p| p.to_bytes().len());
                (0.0, (t, o))
            }
            "comb" => {
                let t = Instant::now();
                let k = factorial::split_ranges(n, 8).len();
                let parts: Vec<Partial> = (0..k)
                    .map(|i| match std::fs::read(part_path(n, i)) {
                        Ok(b) => {
                            Partial::from_bytes(&b).unwrap_or_else(|e| panic!("part {i}: {e}"))
                        }
                        Err(e) => panic!("part {i}: {e}"),
                    })
                    .collect();
                let o = factorial::combine_decimal(n, parts, &ctl).map(|s| {
                    eprintln!("sha256 {}", hex::encode(Sha256::digest(s.as_bytes())));
                    s.len()
                });
                (0.0, (t, o))
            }
            "trace" => {
                // RSS timeline of factorial_decimal's two phases (stderr).
                let t = Instant::now();
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let st = std::sync::Arc::clone(&stop);
                let sampler = std::thread::spawn(move || {
                    let mut last = 0.0;
                    while !st.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = rss_mb();
                        if (r - last).abs() > 8.0 {
                            eprintln!("{:7.3} s {r:5.0} MB", t.elapsed().as_secs_f64());
                            last = r;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                });
                let o = factorial::factorial_stripped(n, &ctl).and_then(|(m, z)| {
                    eprintln!("{:7.3} s compute done", t.elapsed().as_secs_f64());
                    let meter = jetmill_compute::progress::Meter::new(&ctl, 1.0);
                    jetmill_compute::decimal::to_decimal(m, z as usize, &meter).map(|s| s.len())
                });
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = sampler.join();
                (0.0, (t, o))
            }
            "naive" => {
                let t = Instant::now();
                let mut acc = Natural::from(1u32);
                for i in 1..=n {
                    acc *= Natural::from(i);
                }
                (0.0, (t, Ok(acc.to_string().len())))
            }
            _ => panic!("unknown op {op}"),
        };
        let (t, o) = d;
        let total = t.elapsed().as_secs_f64();
        let _ = t0;
        digits = match o {
            Ok(d) => d,
            Err(e) => panic!("{op}({n}) failed: {e}"),
        };
        best_c = best_c.min(c);
        best_t = best_t.min(total);
    }
    println!("{best_c} {best_t} {} {digits}", peak_rss_mb());
}

fn time(f: impl FnOnce() -> Result<(), jetmill_compute::ComputeError>) -> f64 {
    let t = Instant::now();
    if let Err(e) = f() {
        panic!("kernel failed: {e}");
    }
    t.elapsed().as_secs_f64()
}

/// Peak resident set size of this process (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1000.0)
}

/// Current resident set size of this process (VmRSS), in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1000.0)
}

/// GMP through gmpy2: `(compute s, total s, gmpy2 version)`, best of `reps`.
fn gmp(op: &str, n: u64, reps: usize) -> (f64, f64, String) {
    let out = Command::new("python3")
        .args(["-c", GMP_SCRIPT, op, &n.to_string(), &reps.to_string()])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "gmpy2 failed (run scripts/bench-kernels.sh to install it): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("python3 is needed for the GMP baseline: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.split_whitespace();
    let c = it.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    let t = it.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    (c, t, it.next().unwrap_or("?").to_string())
}

fn rustc_and_machine() -> String {
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "rustc ?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{rustc}; {cores} cores")
}

/// The 1-minute load average: other work on the machine skews the ratios.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
