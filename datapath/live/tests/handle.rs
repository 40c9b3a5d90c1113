//! The typed EngineHandle against a running engine (bridges without ports:
//! no devices, so no privileges needed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use xsw_datapath::clock::{Clock, MonotonicClock};
use xsw_datapath::flow::{parse_flow, parse_match_spec};
use xsw_datapath::pipeline::PipelineOptions;
use xsw_datapath::table::FlowTables;
use xsw_live::engine::{Bridge, BridgeDef, CallError, Engine};

fn bridge(name: &str) -> Bridge {
    Bridge::from_parts(
        BridgeDef {
            name: name.to_string(),
            ports: Vec::new(),
            rules: Vec::new(),
            meters: Vec::new(),
            options: PipelineOptions::default(),
        },
        Vec::new(),
    )
    .expect("bridge")
}

#[test]
fn each_command_answers_with_its_own_type() {
    let mut engine = Engine::new();
    let h = engine.handle().expect("handle");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let poller = std::thread::spawn(move || engine.run(&s));

    h.add_bridge(bridge("br0")).expect("add");
    match h.add_bridge(bridge("br0")) {
        Err(CallError::Refused(msg)) => assert_eq!(msg, "bridge br0 exists"),
        other => panic!("{other:?}"),
    }
    match h.fdb("nope") {
        Err(CallError::Refused(msg)) => assert_eq!(msg, "no bridge named nope"),
        other => panic!("{other:?}"),
    }

    let now = MonotonicClock.now();
    let rules = ["priority=10,udp,tp_dst=7,actions=drop", "actions=NORMAL"]
        .map(|r| parse_flow(r, &()).expect("rule"))
        .to_vec();
    let added = h.add_rules("br0", rules, now).expect("add rules");
    assert_eq!(added.count, 2);
    assert!(added.expired.rules.is_empty() && !added.expired.lost);

    let (snaps, stats) = h.snapshot(Some("br0"), true).expect("snapshot");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].n_rules, 2);
    assert_eq!(snaps[0].rules.as_ref().map(Vec::len), Some(2));
    assert!(stats.commands >= 3);

    let spec = parse_match_spec("udp", &()).expect("spec");
    assert_eq!(h.del_rules("br0", spec, false).expect("del").count, 1);

    let mut t = FlowTables::new();
    t.add(parse_flow("actions=drop", &()).expect("rule"), now);
    let replaced = h.replace_rules("br0", t).expect("replace");
    assert_eq!(replaced.count, 1);
    assert_eq!(replaced.old.len(), 1, "the old tables come back");

    assert_eq!(h.flush_fdb("br0").expect("flush"), 0);
    assert!(h.fdb("br0").expect("fdb").is_empty());
    assert!(!h.take_expired("br0").expect("expired").lost);
    h.set_meter("br0", 1, Some((1_000_000, 10_000)))
        .expect("meter");
    assert_eq!(h.snapshot(None, false).expect("all").0[0].meters.len(), 1);
    match h.trace("br0", "p1", vec![0; 60]) {
        Err(CallError::Refused(msg)) => assert_eq!(msg, "bridge br0 has no port p1"),
        other => panic!("{other:?}"),
    }
    h.del_bridge("br0").expect("del bridge");
    assert!(h.snapshot(None, false).expect("all").0.is_empty());

    stop.store(true, Ordering::SeqCst);
    poller.join().expect("polling thread");
    // The engine is gone with its thread: commands say so.
    assert!(matches!(h.flush_fdb("br0"), Err(CallError::Stopped)));
}
