//! Fibonacci identities on random large k; modular results vs a slow reference.

use jetmill_compute::fibonacci::{fibonacci, fibonacci_mod};
use jetmill_compute::Control;
use malachite_nz::integer::Integer;
use malachite_nz::natural::Natural;

/// splitmix64: a tiny deterministic generator, seeded from the clock.
struct Rng(u64);

impl Rng {
    fn from_clock() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42);
        println!("seed {seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn fib(n: u64, threads: usize) -> Natural {
    fibonacci(n, &Control::silent(threads)).expect("fibonacci")
}

#[test]
fn doubling_and_cassini_on_random_k() {
    let mut rng = Rng::from_clock();
    for round in 0..6 {
        let k = 1 + rng.next() % 400_000;
        let threads = 1 + round % 2;
        let (fkm1, fk, fkp1, f2k) = (
            fib(k - 1, threads),
            fib(k, threads),
            fib(k + 1, threads),
            fib(2 * k, threads),
        );
        assert_eq!(
            f2k,
            &fk * ((&fkp1 << 1u32) - &fk),
            "F(2k) identity, k = {k}"
        );
        let cassini = Integer::from(&fkm1 * &fkp1) - Integer::from(&fk * &fk);
        let want = if k.is_multiple_of(2) {
            Integer::from(1)
        } else {
            Integer::from(-1)
        };
        assert_eq!(cassini, want, "Cassini, k = {k}");
    }
}

fn slow_mod(n: u64, m: u64) -> u64 {
    let m = u128::from(m);
    let (mut a, mut b) = (0u128, 1u128 % m);
    for _ in 0..n {
        let c = (a + b) % m;
        a = b;
        b = c;
    }
    a as u64
}

#[test]
fn modular_matches_iteration() {
    let mut rng = Rng::from_clock();
    let moduli = [
        1u64,
        2,
        10,
        1_000_000_007,
        u64::MAX,
        u64::MAX - 58,
        (1 << 63) + 29,
        1 << 63,
    ];
    for &m in &moduli {
        for _ in 0..4 {
            let n = rng.next() % 200_000;
            let got = fibonacci_mod(n, m, &Control::silent(1)).expect("fibonacci_mod");
            assert_eq!(got, slow_mod(n, m), "F({n}) mod {m}");
        }
    }
    // Huge n: consistent with the exact value reduced mod m (n moderate) ...
    let exact = fib(100_000, 2);
    for &m in &moduli {
        let want = &exact % Natural::from(m);
        let got = fibonacci_mod(100_000, m, &Control::silent(1)).expect("fibonacci_mod");
        assert_eq!(Natural::from(got), want, "F(100000) mod {m}");
    }
    // ... and the Pisano period of 10 is 60, so F(10^18) mod 10 = F(10^18 mod 60).
    let n = 1_000_000_000_000_000_000u64;
    let got = fibonacci_mod(n, 10, &Control::silent(1)).expect("fibonacci_mod");
    assert_eq!(got, slow_mod(n % 60, 10));
    assert!(fibonacci_mod(5, 0, &Control::silent(1)).is_err());
}
