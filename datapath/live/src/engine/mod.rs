//! The live switch: bridges of real ports (AF_XDP interfaces, internal tap
//! devices) driven by one polling thread.
//!
//! The thread polls every port of every bridge for a burst, switches it
//! through the bridge's pipeline and sends what the pipeline queued. When
//! the rings stay empty for a while it sleeps in `poll(2)` on every port's
//! descriptor (and on the control plane's wakeup descriptor) until traffic,
//! a command or the next timer, so an idle switch costs next to no CPU.
//! Ports that vanish are taken down (NORMAL stops flooding to them) and the
//! others keep forwarding.
//!
//! The control plane talks to the thread through an [`EngineHandle`]
//! (typed methods, one per command): commands travel on a channel and are carried out
//! between two passes, never in the middle of a batch. Anything expensive
//! (parsing rules, building a whole new flow table, opening a device) is
//! done by the caller before it sends the command; what the thread replaces
//! (old tables, closed devices) goes back to the caller to be freed there.
//!
//! Drop rules that the XDP program can evaluate are pushed into every
//! AF_XDP port's program; the frames they drop in the kernel are credited
//! to the rule's counters here.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xsw_datapath::clock::{Clock, MonotonicClock};

use crate::error::Error;
use crate::sys::{self, EventFd, PollFd};

mod apply;
mod bridge;
mod device;
mod handle;
mod report;
mod xdp;

pub use bridge::{Bridge, BridgeDef};
pub use device::{Device, PortDef, PortKind};
pub use handle::{CallError, EngineHandle, Expired, ExpiredRule, FdbRow, Replaced, RulesChanged};
pub use report::{
    BridgeReport, BridgeSnapshot, EngineStats, PortReport, RuleReport, RuleSnapshot, TableReport,
};
pub use xdp::xdp_rules_for;

/// The control plane's way in: a command channel and an eventfd that wakes
/// the polling thread when it sleeps.
struct Link {
    rx: crossbeam_channel::Receiver<handle::Op>,
    wake: Arc<EventFd>,
}

/// The polling engine.
#[derive(Debug)]
pub struct Engine {
    bridges: Vec<Bridge>,
    clock: MonotonicClock,
    /// How long to keep polling after the last frame before sleeping: traffic
    /// that pauses for less than this (a ping every few milliseconds) never
    /// waits for a wakeup; an idle switch sleeps.
    pub spin_for: Duration,
    /// Longest sleep when idle.
    pub max_sleep: Duration,
    link: Option<Link>,
    started: Instant,
    idle: Duration,
    commands: u64,
    /// A sleep failed already (only the first failure is logged).
    sleep_failed: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Link")
    }
}

impl Engine {
    /// An engine with no bridges (add them through an [`EngineHandle`]).
    pub fn new() -> Engine {
        Engine {
            bridges: Vec::new(),
            clock: MonotonicClock,
            spin_for: Duration::from_millis(20),
            max_sleep: Duration::from_millis(200),
            link: None,
            started: Instant::now(),
            idle: Duration::ZERO,
            commands: 0,
            sleep_failed: false,
        }
    }

    /// Opens every port of every bridge. Fails on the first port that cannot
    /// be opened (ports already opened are closed again).
    pub fn start(defs: Vec<BridgeDef>) -> Result<Engine, Error> {
        let mut e = Engine::new();
        for b in defs {
            e.bridges.push(Bridge::build(b)?);
        }
        Ok(e)
    }

    /// Adds a built bridge (before the engine runs).
    pub fn push_bridge(&mut self, b: Bridge) {
        self.bridges.push(b);
    }

    /// The handle through which other threads command this engine. Calling
    /// it again replaces the previous link.
    pub fn handle(&mut self) -> Result<EngineHandle, Error> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let wake = Arc::new(EventFd::new().map_err(|source| Error::Sys {
            call: "eventfd",
            source,
        })?);
        self.link = Some(Link {
            rx,
            wake: wake.clone(),
        });
        Ok(EngineHandle::new(tx, wake))
    }

    /// One-line descriptions of the open ports, for logs.
    pub fn describe(&self) -> Vec<String> {
        let mut v = Vec::new();
        for b in &self.bridges {
            b.describe_ports(&mut v);
        }
        v
    }

    /// Runs until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        self.run_with(stop, |_| {});
    }

    /// Runs until `stop` is set, calling `tick` about once a second (after
    /// housekeeping) and once more at the end.
    pub fn run_with<F: FnMut(&Engine)>(&mut self, stop: &AtomicBool, mut tick: F) {
        let mut passes = 0u32;
        let mut last_check = Instant::now();
        self.started = Instant::now();
        // When the current stretch of empty passes began; None while busy.
        let mut idle_from: Option<Instant> = None;
        // Just woke from a sleep: sleep again at once if nothing is there.
        let mut woke = false;
        while !stop.load(Ordering::Relaxed) {
            self.commands_pending();
            let got = self.poll_once();
            passes = passes.wrapping_add(1);
            if got > 0 {
                if let Some(s) = idle_from.take() {
                    self.idle += s.elapsed();
                }
                woke = false;
                // Under load, look at the clock every 64 passes only.
                if !passes.is_multiple_of(64) {
                    continue;
                }
            }
            let now = Instant::now();
            if now.duration_since(last_check) >= Duration::from_secs(1) {
                self.housekeeping();
                tick(self);
                last_check = now;
            }
            if got > 0 || self.bridges.iter().any(Bridge::tx_pending) {
                continue;
            }
            // Frames QoS holds back: sleep no longer than until the first
            // may leave.
            let mut max_sleep = self.max_sleep;
            if let Some(d) = self.bridges.iter().filter_map(Bridge::next_departure).min() {
                let wait = d.0.saturating_sub(self.clock.now().0);
                if wait == 0 {
                    continue;
                }
                max_sleep = max_sleep.min(Duration::from_nanos(wait));
            }
            let since = *idle_from.get_or_insert(now);
            if woke || now.duration_since(since) >= self.spin_for.min(max_sleep) {
                self.idle += now.duration_since(since);
                self.sleep(max_sleep);
                let after = Instant::now();
                self.idle += after.duration_since(now);
                idle_from = Some(after);
                woke = true;
            } else {
                std::hint::spin_loop();
            }
        }
        self.housekeeping();
        tick(self);
    }

    /// Carries out the commands waiting on the link, if any.
    fn commands_pending(&mut self) {
        let Some(link) = &self.link else { return };
        if link.rx.is_empty() {
            return;
        }
        let rx = link.rx.clone();
        while let Ok(op) = rx.try_recv() {
            let now = self.clock.now();
            let stats = self.stats();
            apply::apply(&mut self.bridges, now, stats, op);
            self.commands += 1;
        }
    }

    /// Switches what every port has ready; returns frames received.
    pub fn poll_once(&mut self) -> usize {
        let mut total = 0;
        for b in &mut self.bridges {
            total += b.poll(&self.clock);
        }
        total
    }

    /// Once a second: timers without traffic, dead ports, XDP rule credits.
    pub fn housekeeping(&mut self) {
        let now = self.clock.now();
        for b in &mut self.bridges {
            b.housekeeping(now);
        }
    }

    fn sleep(&mut self, max: Duration) {
        let mut fds: Vec<PollFd> = Vec::new();
        if let Some(l) = &self.link {
            fds.push(PollFd::readable(l.wake.as_raw_fd()));
        }
        for b in &self.bridges {
            b.push_fds(&mut fds);
        }
        // A failed sleep only makes this pass shorter: the loop polls
        // again. Signals are expected; anything else is logged once.
        let mut failed = match sys::ppoll(&mut fds, max) {
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => Some(e),
            _ => None,
        };
        if let Some(l) = &self.link {
            // Resets the wakeup counter (nothing there is no error).
            if let Err(e) = l.wake.read() {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            if !self.sleep_failed {
                tracing::warn!("polling thread: sleeping failed ({e}); it polls instead");
            }
            self.sleep_failed = true;
        }
    }

    /// The polling thread's counters.
    pub fn stats(&self) -> EngineStats {
        let run = self.started.elapsed();
        EngineStats {
            run_seconds: run.as_secs_f64(),
            busy_seconds: run.saturating_sub(self.idle).as_secs_f64(),
            commands: self.commands,
        }
    }

    /// Every bridge's state, with its rules.
    pub fn snapshot(&mut self) -> Vec<BridgeSnapshot> {
        let now = self.clock.now();
        self.bridges
            .iter_mut()
            .map(|b| b.snapshot(now, true))
            .collect()
    }

    /// Reports for every bridge.
    pub fn report(&mut self) -> Vec<BridgeReport> {
        self.snapshot().iter().map(BridgeSnapshot::report).collect()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}
