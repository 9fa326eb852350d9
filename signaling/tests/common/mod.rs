//! The golden-file check every wire test shares.

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes `value`, compares it with `tests/golden/<dir>/<name>.json` and
/// decodes the file back to the value. `UPDATE_GOLDEN=1` rewrites the file.
pub fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    dir: &str,
    name: &str,
    value: T,
) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(dir)
        .join(format!("{name}.json"));
    let encoded = serde_json::to_string_pretty(&value).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &encoded).unwrap();
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(
        encoded,
        golden,
        "{name}: encoding drifted from {}",
        path.display()
    );
    let decoded: T = serde_json::from_str(&golden).unwrap();
    assert_eq!(
        decoded, value,
        "{name}: golden file does not decode to the value"
    );
}
