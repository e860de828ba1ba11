//! Times the tasks `Task::is_tiny` accepts at its limits (`cargo run --release --example tiny`).
use jetmill_compute::{Control, Task};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn main() {
    let cancel = AtomicBool::new(false);
    let report = |_f: f64| {};
    let ctl = Control::new(&cancel, &report, 1);
    for task in [
        Task::Factorial { n: 1000 },
        Task::Factorial { n: 1500 },
        Task::Fibonacci { n: 20000 },
        Task::FibonacciMod {
            n: u64::MAX,
            modulus: u64::MAX - 58,
        },
        Task::Sum {
            terms: vec!["9".repeat(32); 256],
        },
    ] {
        assert!(task.is_tiny());
        let reps = 200;
        let t = Instant::now();
        for _ in 0..reps {
            if jetmill_compute::run(&task, &ctl).is_err() {
                eprintln!("{task:?} failed");
                return;
            }
        }
        let name = format!("{task:?}");
        println!(
            "{:<40} {:>8.1} us",
            &name[..name.len().min(40)],
            t.elapsed().as_secs_f64() * 1e6 / reps as f64
        );
    }
}
