//! Cancellation latency and progress behaviour (behavioural bounds, not benchmarks).

use jetmill_compute::{run, ComputeError, Control, Task};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Run `task`, raising the cancel flag once progress reaches `at` (or after
/// `after`, whichever comes first); return the result and the latency.
fn cancel_at(task: Task, at: f64, after: Duration) -> (Result<(), ComputeError>, Duration) {
    let cancel = AtomicBool::new(false);
    let raised: Mutex<Option<Instant>> = Mutex::new(None);
    let raise = || {
        let mut r = raised.lock().expect("lock");
        if r.is_none() {
            *r = Some(Instant::now());
            cancel.store(true, Ordering::SeqCst);
        }
    };
    let progress = |f: f64| {
        if f >= at {
            raise();
        }
    };
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            while !done.load(Ordering::SeqCst) && start.elapsed() < after {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !done.load(Ordering::SeqCst) {
                raise();
            }
        });
        let ctl = Control::new(&cancel, &progress, 2);
        let r = run(&task, &ctl).map(|_| ());
        done.store(true, Ordering::SeqCst);
        r
    });
    let end = Instant::now();
    let raised_at = raised
        .lock()
        .expect("lock")
        .expect("the flag was never raised");
    (result, end - raised_at)
}

#[test]
fn cancel_factorial_1e7_during_compute() {
    let (r, latency) = cancel_at(
        Task::Factorial { n: 10_000_000 },
        2.0,
        Duration::from_millis(600),
    );
    println!("cancel latency (compute phase): {latency:?}");
    assert_eq!(r, Err(ComputeError::Cancelled));
    assert!(latency < Duration::from_secs(1), "took {latency:?}");
}

#[test]
fn cancel_factorial_1e7_during_decimal_conversion() {
    // Progress past 0.3 means the conversion phase (compute is 20%).
    let (r, latency) = cancel_at(
        Task::Factorial { n: 10_000_000 },
        0.3,
        Duration::from_secs(60),
    );
    println!("cancel latency (conversion phase): {latency:?}");
    assert_eq!(r, Err(ComputeError::Cancelled));
    assert!(latency < Duration::from_secs(1), "took {latency:?}");
}

#[test]
fn cancel_before_start() {
    let cancel = AtomicBool::new(true);
    let ctl = Control::new(&cancel, &|_| {}, 1);
    assert_eq!(
        run(&Task::Fibonacci { n: 10 }, &ctl),
        Err(ComputeError::Cancelled)
    );
}

/// CPU time used by this process so far (all threads), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_comm = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the comm field, in
    // clock ticks of 10 ms (USER_HZ is 100 on Linux).
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

fn check_progress(task: Task, threads: usize) {
    let label = match &task {
        Task::Sum { terms } => format!("Sum of {} terms", terms.len()),
        other => format!("{other:?}"),
    };
    // Gaps are measured in this process's CPU time, not wall time: "every 100 ms of
    // work" is about work done, and a busy machine must not make the test fail.
    let calls: Mutex<Vec<(Duration, f64)>> = Mutex::new(Vec::new());
    let progress = |f: f64| calls.lock().expect("lock").push((cpu_time(), f));
    let cancel = AtomicBool::new(false);
    let wall = Instant::now();
    let start = cpu_time();
    let out = run(&task, &Control::new(&cancel, &progress, threads));
    let end = cpu_time();
    assert!(out.is_ok(), "{label}: {:?}", out.err());
    let calls = calls.into_inner().expect("lock");
    println!(
        "{label} threads {threads}: {} calls in {:?} CPU, {:?} wall",
        calls.len(),
        end - start,
        wall.elapsed()
    );
    assert!(
        !calls.is_empty() && calls.len() <= 500,
        "{} calls",
        calls.len()
    );
    let mut prev_t = start;
    let mut prev_v = 0.0;
    let mut max_gap = Duration::ZERO;
    for &(t, v) in &calls {
        assert!((0.0..=1.0).contains(&v), "value {v} out of range");
        assert!(v >= prev_v, "not monotone: {prev_v} then {v}");
        max_gap = max_gap.max(t - prev_t);
        prev_t = t;
        prev_v = v;
    }
    max_gap = max_gap.max(end - prev_t);
    println!("max gap {max_gap:?} CPU");
    assert_eq!(calls.last().map(|c| c.1), Some(1.0));
    // 100 ms of work per call is the contract; 250 ms per thread leaves room for the
    // 10 ms clock tick and a phase where only one of the threads is busy.
    let bound = Duration::from_millis(250) * threads as u32;
    assert!(
        max_gap <= bound,
        "max gap {max_gap:?} CPU (bound {bound:?})"
    );
}

#[test]
fn progress_factorial_about_one_second() {
    check_progress(Task::Factorial { n: 1_000_000 }, 2);
    check_progress(Task::Factorial { n: 1_000_000 }, 1);
}

#[test]
fn progress_fibonacci() {
    check_progress(Task::Fibonacci { n: 10_000_000 }, 2);
    check_progress(
        Task::Sum {
            terms: vec!["1".into(); 10_000],
        },
        1,
    );
}
