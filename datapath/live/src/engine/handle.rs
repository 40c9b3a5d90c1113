//! The typed way into a running [`Engine`](super::Engine): an
//! [`EngineHandle`] method per command, the command ([`Op`]) each sends to
//! the polling thread, the answer it waits for and the result types.
//! The handlers that carry the commands out are [`super::apply`], which
//! depends on this module and never the other way round.
//!
//! Every command is prepared completely by the caller (rules parsed and
//! checked, a replacement table built, a device opened) so that carrying it
//! out between two batches is quick; whatever the thread lets go of (old
//! tables, a deleted port's device, a refused bridge) travels back with the
//! answer as garbage and is dropped inside the handle's method, on the
//! caller's thread.
//!
//! Each command carries the sender for its own answer type, so a reply can
//! never be of the wrong kind.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use xsw_datapath::clock::Timestamp;
use xsw_datapath::flow::{MatchSpec, Rule};
use xsw_datapath::packet::PacketBuf;
use xsw_datapath::pipeline::PortConfig;
use xsw_datapath::qos::QosConfig;
use xsw_datapath::table::{FlowTables, RuleStats};
use xsw_datapath::trace::TraceReport;

use super::bridge::Bridge;
use super::device::Device;
use super::report::{BridgeSnapshot, EngineStats};
use crate::sys::EventFd;

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The polling thread refused it (no such bridge or port, a bridge
    /// that exists, ...); nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The command could not be sent: the polling thread has stopped, and
    /// nothing will carry the command out.
    #[error("the switch's polling thread has stopped")]
    Stopped,
    /// The command was sent but no answer came: none within
    /// [`EngineHandle::TIMEOUT`], or the thread dropped the command
    /// unanswered (it stopped while the caller waited). Whether the
    /// command took effect is not known.
    #[error("the switch's polling thread did not answer in time")]
    NoAnswer,
}

/// A rule the polling thread removed by a timeout.
#[derive(Clone, Debug)]
pub struct ExpiredRule {
    /// The rule.
    pub rule: Rule,
    /// When it was installed (which tells it from a newer rule with the
    /// same match).
    pub installed: Timestamp,
}

/// Rules the polling thread removed by timeouts since it was last asked.
#[derive(Debug, Default)]
pub struct Expired {
    /// The rules, oldest removal first.
    pub rules: Vec<ExpiredRule>,
    /// Some removals were lost from the log: take every rule afresh.
    pub lost: bool,
}

/// A rule change that is in effect.
#[derive(Debug)]
pub struct RulesChanged {
    /// Rules added or deleted.
    pub count: usize,
    /// Rules removed by timeouts before the change.
    pub expired: Expired,
}

/// A replacement of all rules that is in effect.
#[derive(Debug)]
pub struct Replaced {
    /// Rules installed.
    pub count: usize,
    /// Rules removed by timeouts before the change.
    pub expired: Expired,
    /// The old tables, to work out what to carry over, then to free.
    pub old: Box<FlowTables>,
}

/// One learned MAC.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FdbRow {
    /// VLAN.
    pub vlan: u16,
    /// MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Port name.
    pub port: String,
    /// Seconds since it was last learned or refreshed.
    pub age: u64,
}

/// Something the polling thread let go of, dropped by whoever receives it
/// (dropping it closes devices and frees tables).
pub(super) struct Garbage(#[allow(dead_code)] Box<dyn Send>);

pub(super) fn garbage<T: Send + 'static>(x: T) -> Option<Garbage> {
    Some(Garbage(Box::new(x)))
}

/// What the polling thread answers: the result and what it let go of.
pub(super) struct Answer<T> {
    result: Result<T, String>,
    garbage: Option<Garbage>,
}

impl<T> Answer<T> {
    pub(super) fn ok(v: T) -> Self {
        Answer {
            result: Ok(v),
            garbage: None,
        }
    }

    pub(super) fn ok_with(v: T, garbage: Option<Garbage>) -> Self {
        Answer {
            result: Ok(v),
            garbage,
        }
    }

    pub(super) fn refused(msg: String, garbage: Option<Garbage>) -> Self {
        Answer {
            result: Err(msg),
            garbage,
        }
    }
}

/// Where an answer of type `T` goes.
pub(super) type Tx<T> = Sender<Answer<T>>;

/// A command for the polling thread, with the sender for its answer.
pub(super) enum Op {
    AddBridge {
        bridge: Box<Bridge>,
        tx: Tx<()>,
    },
    DelBridge {
        bridge: String,
        tx: Tx<()>,
    },
    AddPort {
        bridge: String,
        cfg: Box<PortConfig>,
        dev: Device,
        /// Buffers for its QoS queues ([`QosConfig::buffers`]).
        buffers: Vec<PacketBuf>,
        tx: Tx<()>,
    },
    SetPortQos {
        bridge: String,
        port: String,
        qos: Option<Box<QosConfig>>,
        /// Buffers for queues deeper than before.
        buffers: Vec<PacketBuf>,
        tx: Tx<()>,
    },
    SetMeter {
        bridge: String,
        id: u32,
        /// (rate bits/s, burst bits); None deletes it.
        meter: Option<(u64, u64)>,
        tx: Tx<()>,
    },
    DelPort {
        bridge: String,
        port: String,
        tx: Tx<()>,
    },
    AddRules {
        bridge: String,
        rules: Vec<Rule>,
        now: Timestamp,
        tx: Tx<RulesChanged>,
    },
    DelRules {
        bridge: String,
        spec: MatchSpec,
        strict: bool,
        tx: Tx<RulesChanged>,
    },
    ReplaceRules {
        bridge: String,
        tables: Box<FlowTables>,
        tx: Tx<Replaced>,
    },
    Carry {
        bridge: String,
        list: Vec<(u32, RuleStats)>,
        tx: Tx<()>,
    },
    TakeExpired {
        bridge: String,
        tx: Tx<Expired>,
    },
    FlushFdb {
        bridge: String,
        tx: Tx<usize>,
    },
    Snapshot {
        bridge: Option<String>,
        rules: bool,
        tx: Tx<(Vec<BridgeSnapshot>, EngineStats)>,
    },
    Fdb {
        bridge: String,
        tx: Tx<Vec<FdbRow>>,
    },
    Trace {
        bridge: String,
        in_port: String,
        frame: Vec<u8>,
        tx: Tx<TraceReport>,
    },
}

/// Commands a running [`Engine`](super::Engine) from another thread, one
/// method per command. Each waits until the polling thread has carried the
/// command out: when it returns, the next batch sees the change. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    tx: Sender<Op>,
    wake: Arc<EventFd>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Op")
    }
}

impl EngineHandle {
    /// How long a command may take before the caller gives up.
    pub const TIMEOUT: Duration = Duration::from_secs(30);

    pub(super) fn new(tx: Sender<Op>, wake: Arc<EventFd>) -> EngineHandle {
        EngineHandle { tx, wake }
    }

    /// Sends the command `make` builds around its answer's sender, wakes
    /// the polling thread and waits for the answer; drops what the thread
    /// let go of here, on the caller's thread.
    fn call<T>(&self, make: impl FnOnce(Tx<T>) -> Op) -> Result<T, CallError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        // On failure the unsent command, and whatever it carries, is
        // dropped here.
        self.tx.send(make(tx)).map_err(|_| CallError::Stopped)?;
        if let Err(e) = self.wake.write(1) {
            // The command is queued all the same: the thread carries it out
            // after its current sleep (at most `Engine::max_sleep`).
            tracing::warn!("waking the switch's polling thread: {e}");
        }
        // A timeout and a disconnect (the thread dropped the command
        // unanswered) are the same to the caller: no answer.
        let answer = rx
            .recv_timeout(Self::TIMEOUT)
            .map_err(|_| CallError::NoAnswer)?;
        drop(answer.garbage);
        answer.result.map_err(CallError::Refused)
    }

    /// Adds a bridge (built, its ports open). A bridge of that name must
    /// not exist; a refused bridge is closed here.
    pub fn add_bridge(&self, bridge: Bridge) -> Result<(), CallError> {
        self.call(|tx| Op::AddBridge {
            bridge: Box::new(bridge),
            tx,
        })
    }

    /// Deletes a bridge; its ports are closed here.
    pub fn del_bridge(&self, bridge: &str) -> Result<(), CallError> {
        self.call(|tx| Op::DelBridge {
            bridge: bridge.to_string(),
            tx,
        })
    }

    /// Adds an opened port to a bridge, with the buffers its QoS queues
    /// need ([`QosConfig::buffers`]); a refused device is closed here.
    pub fn add_port(
        &self,
        bridge: &str,
        cfg: PortConfig,
        dev: Device,
        buffers: Vec<PacketBuf>,
    ) -> Result<(), CallError> {
        self.call(|tx| Op::AddPort {
            bridge: bridge.to_string(),
            cfg: Box::new(cfg),
            dev,
            buffers,
            tx,
        })
    }

    /// Changes a port's QoS (`None`: none), with buffers for queues deeper
    /// than before; buffers no longer needed are freed here.
    pub fn set_port_qos(
        &self,
        bridge: &str,
        port: &str,
        qos: Option<QosConfig>,
        buffers: Vec<PacketBuf>,
    ) -> Result<(), CallError> {
        self.call(|tx| Op::SetPortQos {
            bridge: bridge.to_string(),
            port: port.to_string(),
            qos: qos.map(Box::new),
            buffers,
            tx,
        })
    }

    /// Adds or changes (keeping its counters) meter `id`: (rate bits/s,
    /// burst bits); `None` deletes it.
    pub fn set_meter(
        &self,
        bridge: &str,
        id: u32,
        meter: Option<(u64, u64)>,
    ) -> Result<(), CallError> {
        self.call(|tx| Op::SetMeter {
            bridge: bridge.to_string(),
            id,
            meter,
            tx,
        })
    }

    /// Deletes a port; its device is closed here.
    pub fn del_port(&self, bridge: &str, port: &str) -> Result<(), CallError> {
        self.call(|tx| Op::DelPort {
            bridge: bridge.to_string(),
            port: port.to_string(),
            tx,
        })
    }

    /// Installs rules, all at once (each replaces a rule with the same
    /// table, priority and match), installed at `now` (the caller's copy
    /// of the tables uses the same time).
    pub fn add_rules(
        &self,
        bridge: &str,
        rules: Vec<Rule>,
        now: Timestamp,
    ) -> Result<RulesChanged, CallError> {
        self.call(|tx| Op::AddRules {
            bridge: bridge.to_string(),
            rules,
            now,
            tx,
        })
    }

    /// Deletes the rules `spec` selects (`strict`: exact match and
    /// priority only).
    pub fn del_rules(
        &self,
        bridge: &str,
        spec: MatchSpec,
        strict: bool,
    ) -> Result<RulesChanged, CallError> {
        self.call(|tx| Op::DelRules {
            bridge: bridge.to_string(),
            spec,
            strict,
            tx,
        })
    }

    /// Replaces all rules at once with tables the caller built; the old
    /// tables come back.
    pub fn replace_rules(&self, bridge: &str, tables: FlowTables) -> Result<Replaced, CallError> {
        self.call(|tx| Op::ReplaceRules {
            bridge: bridge.to_string(),
            tables: Box::new(tables),
            tx,
        })
    }

    /// Hands rules older rules' counters and times, after a replace (see
    /// [`FlowTables::carry_list`]).
    pub fn carry(&self, bridge: &str, list: Vec<(u32, RuleStats)>) -> Result<(), CallError> {
        self.call(|tx| Op::Carry {
            bridge: bridge.to_string(),
            list,
            tx,
        })
    }

    /// The rules removed by timeouts since the last time this was asked.
    pub fn take_expired(&self, bridge: &str) -> Result<Expired, CallError> {
        self.call(|tx| Op::TakeExpired {
            bridge: bridge.to_string(),
            tx,
        })
    }

    /// Forgets the learned MACs; returns how many there were.
    pub fn flush_fdb(&self, bridge: &str) -> Result<usize, CallError> {
        self.call(|tx| Op::FlushFdb {
            bridge: bridge.to_string(),
            tx,
        })
    }

    /// The state of one bridge or all (`None`), with every rule when
    /// `rules` (a copy of each), and the polling thread's counters.
    pub fn snapshot(
        &self,
        bridge: Option<&str>,
        rules: bool,
    ) -> Result<(Vec<BridgeSnapshot>, EngineStats), CallError> {
        self.call(|tx| Op::Snapshot {
            bridge: bridge.map(str::to_string),
            rules,
            tx,
        })
    }

    /// The learned MACs of a bridge.
    pub fn fdb(&self, bridge: &str) -> Result<Vec<FdbRow>, CallError> {
        self.call(|tx| Op::Fdb {
            bridge: bridge.to_string(),
            tx,
        })
    }

    /// Traces `frame` arriving on port `in_port` through the live tables,
    /// without changing anything.
    pub fn trace(
        &self,
        bridge: &str,
        in_port: &str,
        frame: Vec<u8>,
    ) -> Result<TraceReport, CallError> {
        self.call(|tx| Op::Trace {
            bridge: bridge.to_string(),
            in_port: in_port.to_string(),
            frame,
            tx,
        })
    }
}

// Commands cross threads: everything they carry must be Send.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Op>();
    send::<EngineHandle>();
};
