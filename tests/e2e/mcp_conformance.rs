//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, the pinned
//! release and pre-release) runs every client scenario against `vtuber-mcp-conformance`,
//! the adapter around the daemon's own MCP client: `scripts/mcp-conformance.sh` prints a
//! table per suite version and fails on a scenario that neither passes nor is listed,
//! with its reason, in `tests/mcp-conformance/expected-failures.txt`.
//!
//! Needs what `scripts/setup.sh --for-tests` installs: Node 22 and the suites in
//! `tests/mcp-conformance/node_modules`.

use std::path::PathBuf;

use vtuber_test_support::daemon::bin;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

#[test]
fn mcp_conformance_client_scenarios() {
    let root = repo_root();
    if !root.join("tests/mcp-conformance/node_modules").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tests/mcp-conformance/node_modules missing: run scripts/setup.sh --for-tests"
        );
        eprintln!(
            "skipped: the MCP conformance suites are not installed (run scripts/setup.sh --for-tests)"
        );
        return;
    }
    let adapter = bin("vtuber-mcp-conformance");
    assert!(
        adapter.is_file(),
        "{} missing: run cargo build --workspace --bins",
        adapter.display()
    );
    let out = std::process::Command::new(root.join("scripts/mcp-conformance.sh"))
        .env("MCP_CONFORMANCE_ADAPTER", &adapter)
        .output()
        .expect("scripts/mcp-conformance.sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "MCP conformance failed (table above; logs in target/mcp-conformance/)"
    );
    // Both suite versions ran, each with its count.
    assert_eq!(
        stdout.matches("client scenarios passed").count(),
        2,
        "{stdout}"
    );
}
