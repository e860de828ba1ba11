//! Digit counts, trailing zeros (Legendre) and an independent SHA-256 of 10^5!.

use jetmill_compute::factorial::{legendre, trailing_zeros};
use jetmill_compute::{run, Control, Task};
use sha2::{Digest, Sha256};
use std::process::Command;

fn factorial_text(n: u64) -> String {
    match run(&Task::Factorial { n }, &Control::silent(2)) {
        Ok(o) => o.decimal,
        Err(e) => panic!("{n}! failed: {e}"),
    }
}

#[test]
fn digit_counts_and_trailing_zeros() {
    for (n, digits) in [
        (10_000u64, 35_660usize),
        (100_000, 456_574),
        (1_000_000, 5_565_709),
    ] {
        let s = factorial_text(n);
        assert_eq!(s.len(), digits, "digits of {n}!");
        let zeros = s.bytes().rev().take_while(|&c| c == b'0').count() as u64;
        // Legendre: the exponent of 5 in n! (always below the exponent of 2).
        let mut want = 0;
        let mut p = 5;
        while p <= n {
            want += n / p;
            p *= 5;
        }
        assert_eq!(zeros, want, "trailing zeros of {n}!");
        assert_eq!(zeros, trailing_zeros(n));
        assert!(legendre(n, 2) > zeros);
    }
}

#[test]
fn sha256_of_100000_factorial_matches_python() {
    let script = "import sys, math, hashlib\n\
                  sys.set_int_max_str_digits(0)\n\
                  print(hashlib.sha256(str(math.factorial(100000)).encode()).hexdigest())";
    // Python runs concurrently with our own computation.
    let child = Command::new("python3").args(["-c", script]).output();
    let ours = hex::encode(Sha256::digest(factorial_text(100_000).as_bytes()));
    let out = match child {
        Ok(o) => o,
        Err(e) => panic!("this test needs python3 on PATH for an independent reference: {e}"),
    };
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(theirs.len(), 64, "unexpected python output {theirs:?}");
    assert_eq!(ours, theirs);
}
