//! Exact values against naive references, thread budgets 1 and 2 agreeing.

use jetmill_compute::{run, ComputeError, Control, Task};
use malachite_nz::natural::Natural;

fn decimal(task: Task, threads: usize) -> String {
    match run(&task, &Control::silent(threads)) {
        Ok(o) => o.decimal,
        Err(e) => panic!("{task:?} failed: {e}"),
    }
}

#[test]
fn factorial_small_matches_naive_loop() {
    let mut acc = Natural::from(1u32);
    for n in 0..=300u64 {
        if n > 0 {
            acc *= Natural::from(n);
        }
        let want = acc.to_string();
        for threads in [1, 2] {
            assert_eq!(
                decimal(Task::Factorial { n }, threads),
                want,
                "{n}! threads {threads}"
            );
        }
    }
}

#[test]
fn factorial_medium_thread_budgets_agree() {
    // Large enough to take the parallel and multi-level conversion paths.
    for n in [20_000u64, 54_321, 100_000] {
        let a = decimal(Task::Factorial { n }, 1);
        let b = decimal(Task::Factorial { n }, 2);
        let c = decimal(Task::Factorial { n }, 3);
        assert_eq!(a, b, "{n}! threads 1 vs 2");
        assert_eq!(a, c, "{n}! threads 1 vs 3");
    }
}

#[test]
fn fibonacci_small_matches_iteration() {
    let (mut a, mut b) = (Natural::from(0u32), Natural::from(1u32));
    for n in 0..=500u64 {
        let want = a.to_string();
        for threads in [1, 2] {
            assert_eq!(
                decimal(Task::Fibonacci { n }, threads),
                want,
                "F({n}) threads {threads}"
            );
        }
        let next = &a + &b;
        a = b;
        b = next;
    }
}

#[test]
fn fibonacci_large_thread_budgets_agree() {
    let n = 1_234_567;
    assert_eq!(
        decimal(Task::Fibonacci { n }, 1),
        decimal(Task::Fibonacci { n }, 2)
    );
}

#[test]
fn sums_of_signed_integers() {
    let terms = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let big = "9".repeat(5000);
    let cases = [
        (terms(&["1", "2", "+3"]), "6".to_string()),
        (terms(&["-5", "3"]), "-2".to_string()),
        (terms(&["-0", "+0", "000"]), "0".to_string()),
        (terms(&[&big, "1"]), format!("1{}", "0".repeat(5000))),
        (terms(&[]), "0".to_string()),
    ];
    for (t, want) in cases {
        assert_eq!(decimal(Task::Sum { terms: t.clone() }, 1), want, "{t:?}");
    }
    for bad in ["", "+", "-", "+-1", "--1", "1.5", " 1", "1e3", "0x10", "١"] {
        let r = run(
            &Task::Sum {
                terms: terms(&["1", bad]),
            },
            &Control::silent(1),
        );
        assert!(
            matches!(r, Err(ComputeError::InvalidInput(_))),
            "{bad:?} gave {r:?}"
        );
    }
}
