//! The posting lists of an image (KEYS → POST for runs, CKEYS → CPOST for
//! tool calls), written flat since the idx41 round (each key's length
//! counted first, then every position written once at its key's place):
//! every list holds exactly the positions a scan of the records finds for
//! its key, ascending, whatever the mix of keys.

use proptest::prelude::*;

use super::calls::{self, CallRec};
use super::image::*;
use super::{Builder, Older};
use crate::chain::Digest;
use crate::event::{Event, RunFinished, RunStarted, ToolCall};
use crate::segment::HEADER_SIZE;

/// Older images start every id whose number is a multiple of 5 (so some
/// of this image's starts are shadowed).
pub(super) struct SomeOlder;

impl Older for SomeOlder {
    fn start(&self, id: &str) -> Option<(u64, u32)> {
        let n: u32 = id.trim_start_matches("r-").parse().ok()?;
        n.is_multiple_of(5).then_some((1, 0))
    }
    fn has_log(&self, _: &str, _: u64) -> bool {
        false
    }
}

/// A word of a small alphabet, so keys repeat (and "" among them).
fn word(i: u8) -> String {
    ["", "a", "b", "ab", "web.search", "0123456789abcdef-long"][usize::from(i) % 6].to_string()
}

#[derive(Debug, Clone)]
pub(super) enum Op {
    Start {
        run: u8,
        skill: u8,
        caller: u8,
        channel: u8,
        parent: u8,
        dry: bool,
        ts: u8,
    },
    Finish {
        run: u8,
        status: u8,
    },
    Call {
        run: u8,
        f: [u8; 6],
        ts: u8,
    },
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0u8..40,
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<bool>(),
            any::<u8>()
        )
            .prop_map(|(run, skill, caller, channel, parent, dry, ts)| Op::Start {
                run,
                skill,
                caller,
                channel,
                parent,
                dry,
                ts
            }),
        (0u8..40, any::<u8>()).prop_map(|(run, status)| Op::Finish { run, status }),
        (0u8..40, any::<[u8; 6]>(), any::<u8>()).prop_map(|(run, f, ts)| Op::Call { run, f, ts }),
    ]
}

/// The events of `ops`, in order.
pub(super) fn events(ops: &[Op]) -> Vec<Event> {
    ops.iter()
        .map(|op| match op {
            Op::Start {
                run,
                skill,
                caller,
                channel,
                parent,
                dry,
                ts,
            } => Event::run_started(
                format!("r-{run}"),
                1_000 + i64::from(*ts),
                RunStarted {
                    skill_id: word(*skill),
                    caller_id: word(*caller),
                    channel_id: word(*channel),
                    parent_run_id: word(*parent),
                    dry_run: *dry,
                    ..RunStarted::default()
                },
            ),
            Op::Finish { run, status } => Event::run_finished(
                format!("r-{run}"),
                2_000,
                RunFinished {
                    status: word(*status),
                    ..RunFinished::default()
                },
            ),
            Op::Call { run, f, ts } => Event::tool_call(
                format!("r-{run}"),
                3_000 + i64::from(*ts),
                ToolCall {
                    tool: word(f[0]),
                    engine: word(f[1]),
                    channel_id: word(f[2]),
                    caller_id: word(f[3]),
                    workspace_id: word(f[4]),
                    status: word(f[5]),
                    error_type: word(f[5] / 6),
                    ..ToolCall::default()
                },
            ),
        })
        .collect()
}

fn build(ops: &[Op]) -> Image {
    let mut b = Builder::new(KIND_SEALED, 2, 0, HEADER_SIZE as u64);
    for (i, ev) in events(ops).iter().enumerate() {
        let off = HEADER_SIZE as u64 + 10 * i as u64;
        b.add(i as u64, off, off + 10, ev);
    }
    Image::open(Backing::Vec(b.finish(Digest([0; 32]), &SomeOlder))).expect("opens")
}

/// A call's key of `kind`, as the builder keys it ("" is no key).
fn call_key(c: &CallRec<'_>, kind: u32) -> Vec<u8> {
    match kind {
        calls::CK_TOOL => c.tool.to_vec(),
        calls::CK_ENGINE => c.engine.to_vec(),
        calls::CK_CHANNEL => c.channel.to_vec(),
        calls::CK_CALLER => c.caller.to_vec(),
        calls::CK_WORKSPACE => c.workspace.to_vec(),
        calls::CK_STATUS => c.status.to_vec(),
        calls::CK_ERROR_TYPE => c.error_type.to_vec(),
        calls::CK_RUN => c.run_id.to_vec(),
        _ if c.engine.is_empty() && c.tool.is_empty() => Vec::new(),
        _ => calls::engine_tool_key(c.engine, c.tool),
    }
}

proptest! {
    #[test]
    fn every_posting_list_is_what_a_scan_finds(ops in proptest::collection::vec(op(), 0..120)) {
        let img = build(&ops);
        // Runs: each key's list is the ORDER positions with that key.
        let all = img.all();
        let mut total = 0u64;
        for kind in [K_SKILL, K_CALLER, K_CHANNEL, K_PARENT, K_STATUS] {
            let keys = img.keys(kind);
            for w in keys.windows(2) {
                prop_assert!(w[0].0 < w[1].0, "keys in byte order");
            }
            for (key, len) in &keys {
                let list = img.posting(kind, key);
                let got: Vec<u32> = (0..list.len()).map(|i| img.at(&list, i)).collect();
                let want: Vec<u32> = (0..all.len())
                    .map(|i| img.at(&all, i))
                    .filter(|&p| {
                        let r = img.run_lazy(p);
                        let v = match kind {
                            K_SKILL => r.skill(),
                            K_CALLER => r.caller(),
                            K_CHANNEL => r.channel(),
                            K_PARENT => r.parent(),
                            _ => r.status(),
                        };
                        v == *key
                    })
                    .collect();
                prop_assert_eq!(&got, &want, "kind {} key {:?}", kind, key);
                prop_assert_eq!(*len as usize, want.len());
                total += u64::from(*len);
            }
            // Every run is under one key of each kind.
            prop_assert_eq!(keys.iter().map(|k| u64::from(k.1)).sum::<u64>(), u64::from(all.len()));
        }
        prop_assert_eq!(total, 5 * u64::from(all.len()));
        prop_assert_eq!(img.count(S_POST) as u64, total);
        // Calls: each key's list is the CALLS positions with that key, ascending.
        let n = img.n_calls();
        let mut total = 0u64;
        for kind in [
            calls::CK_TOOL,
            calls::CK_ENGINE_TOOL,
            calls::CK_CHANNEL,
            calls::CK_CALLER,
            calls::CK_WORKSPACE,
            calls::CK_STATUS,
            calls::CK_ERROR_TYPE,
            calls::CK_RUN,
            calls::CK_ENGINE,
        ] {
            let keys = img.call_keys(kind);
            let mut want_keys: Vec<Vec<u8>> =
                (0..n).map(|i| call_key(&img.call(i), kind)).filter(|k| !k.is_empty()).collect();
            want_keys.sort();
            want_keys.dedup();
            let got_keys: Vec<Vec<u8>> = keys.iter().map(|k| k.0.to_vec()).collect();
            prop_assert_eq!(&got_keys, &want_keys, "call keys of kind {}", kind);
            for (key, list) in &keys {
                let got: Vec<u32> = (0..list.len()).map(|i| img.call_at(list, i)).collect();
                let want: Vec<u32> =
                    (0..n).filter(|&i| call_key(&img.call(i), kind) == *key).collect();
                prop_assert_eq!(&got, &want, "call kind {} key {:?}", kind, key);
                total += u64::from(list.len());
            }
        }
        prop_assert_eq!(img.count(S_CPOST) as u64, total);
        prop_assert!(!img.poisoned());
    }
}
