//! Telling a quiet follower of a stream from a stalled one.
//!
//! async-nats 0.51's ordered consumers repair themselves after a missed heartbeat, but
//! slowly (retries 10 s apart once four have failed) or, for pull consumers, not at
//! all when no timer is armed; after a stream leader dies a follower may stop receiving
//! without an error. A follower that has been quiet for a while compares its position
//! with the stream's head: still behind a head it had already seen at the previous
//! quiet check, it is stalled and should follow again from its position.

/// Two quiet checks in a row that find the stream ahead mean a stall; a delivery in
/// between clears it.
#[derive(Debug, Default)]
pub struct StallCheck {
    /// The head seen at the last quiet check, while it was ahead of the position.
    behind: Option<u64>,
}

impl StallCheck {
    /// Something was delivered: whatever was seen before no longer counts.
    pub fn delivered(&mut self) {
        self.behind = None;
    }

    /// A quiet check: the stream's `head` and the follower's position `at` (the last
    /// sequence it handled). `true` when it is stalled: the head seen at the previous
    /// check is still not reached.
    pub fn quiet(&mut self, head: u64, at: u64) -> bool {
        match self.behind {
            Some(seen) if at < seen => true,
            _ => {
                self.behind = (head > at).then_some(head);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_head_seen_twice_ahead_is_a_stall() {
        let mut s = StallCheck::default();
        // Quiet and caught up: never a stall.
        assert!(!s.quiet(10, 10));
        assert!(!s.quiet(10, 10));
        // Ahead once: could be in flight.
        assert!(!s.quiet(12, 10));
        // Still short of what was seen last time: stalled.
        assert!(s.quiet(12, 10));
        // A delivery in between forgives it.
        let mut s = StallCheck::default();
        assert!(!s.quiet(12, 10));
        s.delivered();
        assert!(!s.quiet(12, 11));
        // Past the head seen before, though behind a newer one: moving, not stalled.
        let mut s = StallCheck::default();
        assert!(!s.quiet(12, 10));
        assert!(!s.quiet(15, 12));
        assert!(s.quiet(16, 14));
    }
}
