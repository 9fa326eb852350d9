//! The Teams JavaScript library control serves (`control/web/vendor/`) is
//! the npm package pinned in `tests/browser/package.json`, byte for byte,
//! so the copy cannot drift from a published, integrity-checked release.
//!
//! Needs `tests/browser/node_modules` (`scripts/setup`); without it the
//! test says so and passes, unless ENCLAVE_REQUIRE_BROWSER=1.

use std::path::Path;

use serde_json::Value;
use tests::browser;

const PACKAGE: &str = "@microsoft/teams-js";

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn vendored_teams_js_is_the_pinned_package() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let vendor = root.join("control/web/vendor");
    let dir = browser::browser_dir();

    // Pinned exactly, in the manifest and the lock, and named in the
    // vendor README.
    let pinned = json(&dir.join("package.json"))["dependencies"][PACKAGE]
        .as_str()
        .expect("tests/browser/package.json lists @microsoft/teams-js")
        .to_owned();
    assert!(
        pinned.split('.').count() == 3 && pinned.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "an exact version, not a range: {pinned}"
    );
    let lock = json(&dir.join("package-lock.json"));
    assert_eq!(
        lock["packages"][format!("node_modules/{PACKAGE}")]["version"],
        pinned.as_str()
    );
    let readme = std::fs::read_to_string(vendor.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("`{PACKAGE}` {pinned}")),
        "control/web/vendor/README.md names {pinned}"
    );

    let installed = dir.join("node_modules").join(PACKAGE);
    if !installed.join("package.json").is_file() {
        let why = format!("{} missing (run scripts/setup)", installed.display());
        assert!(!browser::browser_required(), "{why}");
        eprintln!("m365_vendor: not compared: {why}");
        return;
    }
    assert_eq!(
        json(&installed.join("package.json"))["version"],
        pinned.as_str(),
        "node_modules is stale: npm ci in tests/browser"
    );
    for (ours, theirs) in [
        ("MicrosoftTeams.min.js", "dist/umd/MicrosoftTeams.min.js"),
        ("MicrosoftTeams.LICENSE", "LICENSE"),
    ] {
        let a = std::fs::read(vendor.join(ours)).unwrap();
        let b = std::fs::read(installed.join(theirs)).unwrap();
        assert!(
            a == b,
            "control/web/vendor/{ours} ({} bytes) differs from {PACKAGE}@{pinned}/{theirs} ({} bytes)",
            a.len(),
            b.len()
        );
    }
}
