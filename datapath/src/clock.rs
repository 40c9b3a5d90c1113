//! Time, passed in: the pipeline never reads the wall clock itself.
//!
//! Live ports stamp frames from a [`Clock`]; replay stamps them with their pcap
//! timestamps, so learning, aging and flow timeouts follow the capture's clock.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Nanoseconds since the Unix epoch (or since any fixed origin in tests).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// One second.
    pub const SECOND: u64 = 1_000_000_000;

    /// From whole seconds.
    pub const fn from_secs(s: u64) -> Self {
        Timestamp(s.saturating_mul(Self::SECOND))
    }
    /// Whole seconds (rounded down).
    pub const fn secs(self) -> u64 {
        self.0 / Self::SECOND
    }
    /// Nanoseconds within the second.
    pub const fn subsec_nanos(self) -> u32 {
        (self.0 % Self::SECOND) as u32
    }
    /// `self + s` seconds, saturating.
    pub const fn add_secs(self, s: u64) -> Self {
        Timestamp(self.0.saturating_add(s.saturating_mul(Self::SECOND)))
    }
    /// Time from `earlier` to `self` in nanoseconds (0 if `earlier` is later).
    pub const fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.secs(), self.subsec_nanos())
    }
}

/// A source of the current time.
pub trait Clock {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_nanos() as u64)
    }
}

/// The monotonic clock (`CLOCK_MONOTONIC`): what the live switch runs on,
/// so rule timeouts, MAC aging and QoS shapers are immune to the wall
/// clock being set back or forward. Timestamps count from boot.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Timestamp {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into `ts`, which we
        // own and borrow mutably for the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        // With a valid pointer, CLOCK_MONOTONIC cannot fail on Linux (it
        // always exists; the vDSO answers without a syscall). Debug builds
        // check it; should it ever fail, `ts` keeps its zeroes and the time
        // reads as 0, the start of the clock.
        debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
        Timestamp((ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64)
    }
}

/// A clock that only moves when told to (tests, replay).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `t`.
    pub fn new(t: Timestamp) -> Self {
        ManualClock(AtomicU64::new(t.0))
    }
    /// Sets the time.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::Relaxed))
    }
}
