//! The engine's integration tests, linked into one binary.

#[path = "../support/fuzz_shared.rs"]
mod fuzz_shared;
#[cfg(feature = "search")]
#[path = "../support/search_fixture.rs"]
mod search_fixture;
#[path = "../support/mod.rs"]
mod support;

mod amend;
mod bulk_load;
mod calls_query;
mod core_log;
mod cross_finishes;
mod event_json;
mod format_upgrade;
mod frames_in_place;
mod gateway_api;
mod integrity;
mod integrity_reads;
mod layering;
mod limits;
mod parallel_index;
mod proofs;
mod query_index;
mod reliability_faults;
mod reliability_fuzz_regressions;
mod replay_pipeline;
mod roll_crashes;
mod store_healing;
mod store_retention;
mod tiles;
mod tiles_retention;
mod trusted_builds;
