//! Failure injection before the kernel runs (per job, or the worker's default).

use jetmill_proto::Chaos;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why injected chaos ended an attempt early.
#[derive(Debug, PartialEq, Eq)]
pub enum Injected {
    /// The injected delay was interrupted by the cancel flag.
    Cancelled,
    /// An injected failure (the attempt fails with this text).
    Failed(String),
}

/// Runs on the kernel's thread: sleep the injected delay (stopping early on
/// cancel), then fail, or panic, with the configured probability.
pub fn before_kernel(chaos: &Chaos, cancel: &AtomicBool) -> Result<(), Injected> {
    if chaos.delay_max_ms > 0 {
        let ms = fastrand::u64(chaos.delay_min_ms..=chaos.delay_max_ms.max(chaos.delay_min_ms));
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            if cancel.load(Ordering::Relaxed) {
                return Err(Injected::Cancelled);
            }
            std::thread::sleep(
                Duration::from_millis(10).min(until.saturating_duration_since(Instant::now())),
            );
        }
    }
    if chaos.fail_ppm > 0 && fastrand::u32(0..Chaos::PPM) < chaos.fail_ppm {
        let text = format!("chaos: injected failure (p = {})", chaos.fail_probability());
        if chaos.panic {
            panic!("{text}");
        }
        return Err(Injected::Failed(text));
    }
    Ok(())
}

/// Parse a worker flag like `100-500` or `250` (milliseconds) into a range.
pub fn parse_delay(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("invalid delay {s:?}: use MS or MIN-MAX in milliseconds, e.g. 100-500");
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ),
        None => {
            let d = s.trim().parse().map_err(|_| bad())?;
            (d, d)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_and_never_fail() {
        let never = AtomicBool::new(false);
        let always = Chaos {
            fail_ppm: Chaos::PPM,
            ..Chaos::default()
        };
        assert!(matches!(
            before_kernel(&always, &never),
            Err(Injected::Failed(_))
        ));
        assert_eq!(before_kernel(&Chaos::default(), &never), Ok(()));
    }

    #[test]
    fn a_delay_stops_on_cancel() {
        let cancelled = AtomicBool::new(true);
        let slow = Chaos {
            delay_min_ms: 60_000,
            delay_max_ms: 60_000,
            ..Chaos::default()
        };
        assert_eq!(before_kernel(&slow, &cancelled), Err(Injected::Cancelled));
    }

    #[test]
    #[should_panic(expected = "chaos: injected failure")]
    fn panics_when_asked() {
        let never = AtomicBool::new(false);
        let _ = before_kernel(
            &Chaos {
                fail_ppm: Chaos::PPM,
                panic: true,
                ..Chaos::default()
            },
            &never,
        );
    }

    #[test]
    fn parses_delay_flags() {
        assert_eq!(parse_delay("100-500"), Ok((100, 500)));
        assert_eq!(parse_delay("250"), Ok((250, 250)));
        assert!(parse_delay("5-1").is_err());
        assert!(parse_delay("soon").is_err());
    }
}
