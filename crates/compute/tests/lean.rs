//! The memory-lean multiplications agree with malachite's direct products.

use jetmill_compute::product::{lean_mul, lean_square, LEAN_BITS};
use jetmill_compute::progress::Meter;
use jetmill_compute::Control;
use malachite_base::num::arithmetic::traits::{Pow, Square};
use malachite_nz::natural::Natural;

fn big(base: u32, bits: u64) -> Natural {
    // base^e has about e * log2(base) bits; subtract 1 to get odd low limbs.
    Natural::from(base).pow((bits as f64 / f64::from(base).log2()) as u64) - Natural::from(1u32)
}

#[test]
fn lean_products_match_direct() {
    let ctl = Control::silent(2);
    let meter = Meter::new(&ctl, 1.0);
    let a = big(3, LEAN_BITS * 2 + 12_345);
    let b = big(7, LEAN_BITS + 777);
    let c = big(11, LEAN_BITS / 5);
    // Balanced Karatsuba path.
    assert!(lean_mul(a.clone(), b.clone(), &meter).expect("mul") == &a * &b);
    // Unbalanced path (split the long operand).
    assert!(lean_mul(c.clone(), a.clone(), &meter).expect("mul") == &a * &c);
    // Squaring path.
    assert!(lean_square(b.clone(), &meter).expect("square") == (&b).square());
}
