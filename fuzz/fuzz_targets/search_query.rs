//! The search query path: arbitrary text (and filters) against a small
//! full-text index built once. Parsing may refuse a query with an error;
//! it must never panic, and a search that parses must answer.
#![no_main]

use std::sync::{Mutex, OnceLock};

use auditlog::fulltext::{Filters, FullText};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/search_fixture.rs"]
mod search_fixture;

struct Fixture {
    _dir: tempfile::TempDir,
    ft: FullText,
}

fn fixture() -> &'static Mutex<Fixture> {
    static F: OnceLock<Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        // libfuzzer-sys aborts on every panic, even one the search path
        // catches on purpose (tantivy's phrase-scorer debug assertion on
        // negated phrases, turned into a query error in src/fulltext/
        // search.rs). Print panics instead; one that escapes `search` still
        // aborts through libfuzzer-sys's catch_unwind around the target.
        std::panic::set_hook(Box::new(|info| {
            let known = info
                .location()
                .is_some_and(|l| l.file().contains("phrase_query/phrase_scorer.rs"));
            if !known {
                eprintln!("{info}");
            }
        }));
        let dir = tempfile::tempdir().unwrap();
        let ft = search_fixture::search_fixture(dir.path());
        Mutex::new(Fixture { _dir: dir, ft })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // First line: the query; further lines, if any: filter values.
    let mut parts = text.splitn(3, '\n');
    let query = parts.next().unwrap_or("");
    let filters = Filters {
        skill: parts.next().map(str::to_string),
        status: parts.next().map(str::to_string),
        since: (data.len() % 3 == 0).then_some(i64::MIN),
        until: (data.len() % 5 == 0).then_some(i64::MAX),
        ..Filters::default()
    };
    let f = fixture().lock().unwrap();
    let _ = f.ft.parse_query(query);
    let _ = f.ft.search(query, &filters, 5);
});
