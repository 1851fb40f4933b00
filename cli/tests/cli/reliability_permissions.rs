//! Access: every file the engine creates in a log folder is owner-only
//! (0600) and every folder 0700, whatever the umask, through the library
//! and the command line, including derived data (indexes, full-text).

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use auditlog::Log;
use support::*;

fn check_tree(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        if mode != 0o700 {
            bad.push(format!("folder {} is {mode:o}", d.display()));
        }
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let mode = md.permissions().mode() & 0o777;
                // tantivy's own files too: the indexer makes them 0600
                // after each commit.
                if mode != 0o600 {
                    bad.push(format!("file {} is {mode:o}", p.display()));
                }
            }
        }
    }
    assert!(files > 3, "too few files to mean anything");
    bad
}

fn cli(dir: &Path, args: &[&str], stdin: &str) {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_auditlog"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait().unwrap();
}

#[test]
fn files_are_0600_and_folders_0700() {
    // The usual umask (022): only the engine's own modes make files 0600.
    // SAFETY: umask(2) only swaps the process's file-mode mask; it cannot
    // fail or touch memory. Other tests of this binary creating files
    // meanwhile only get the usual 022 mask.
    let old = unsafe { libc_umask(0o022) };
    let (_t, dir) = scratch();
    let log = Log::open(config(&dir)).unwrap();
    for day in 0..3 {
        let batch: Vec<_> = (0..50)
            .map(|n| ev(n, DAY0 + day * DAY_US + n as i64))
            .collect();
        log.append_batch(&batch).unwrap().wait().unwrap();
    }
    log.seal().unwrap();
    log.retain(DAY0 + DAY_US / 2).unwrap();
    log.close().unwrap();
    // Derived data through the command line: full-text index, views.
    let more: String = (0..20)
        .map(|n| {
            format!(
                "{{\"kind\":\"run_finished\",\"run_id\":\"ev-{n}\",\"ts\":{},\"output\":\"text {n}\"}}\n",
                DAY0 + 3 * DAY_US + n
            )
        })
        .collect();
    cli(&dir, &["ingest", "-"], &more);
    cli(&dir, &["search", "text"], "");
    cli(&dir, &["runs"], "");
    cli(&dir, &["stats"], "");
    let bad = check_tree(&dir);
    // SAFETY: as above; the mask in place before the test comes back.
    unsafe { libc_umask(old) };
    assert!(bad.is_empty(), "not owner-only:\n{}", bad.join("\n"));
    let names: Vec<_> = walk_files(&dir)
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    eprintln!("checked: {names:?}");
    record_figure(&format!(
        "permissions files_checked={}",
        walk_files(&dir).len()
    ));
}

extern "C" {
    #[link_name = "umask"]
    fn libc_umask(mask: u32) -> u32;
}
