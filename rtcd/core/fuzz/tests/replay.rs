//! The fuzz target's harness on stable Rust, without libFuzzer: the seeds,
//! whatever corpus and crash files exist locally, and a few hundred
//! pseudo-random inputs. `cargo test` in this folder; set
//! `RTCD_FUZZ_CASES=N` for more random inputs.

use std::path::Path;

#[test]
fn seeds_run_clean() {
    for (i, seed) in rtcd_core_fuzz::seeds().iter().enumerate() {
        eprintln!("seed {i}: {} bytes", seed.len());
        rtcd_core_fuzz::run(seed);
    }
}

/// Replays `seeds/`, `corpus/` and `artifacts/` (crashes cargo fuzz
/// found), so a fixed crash stays fixed.
#[test]
fn saved_inputs_run_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["seeds/datagram", "corpus/datagram", "artifacts/datagram"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let data = std::fs::read(&path).expect("readable input");
            eprintln!("{}", path.display());
            rtcd_core_fuzz::run(&data);
            n += 1;
        }
    }
    eprintln!("{n} saved inputs");
}

/// Structured random inputs: a setup byte, then records of every kind.
#[test]
fn random_inputs_run_clean() {
    let cases: u64 = std::env::var("RTCD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for case in 0..cases {
        let mut input = vec![rng.byte()];
        for _ in 0..rng.below(24) {
            let op = rng.byte() & !0x80;
            let len = if op & 7 == 6 {
                rng.below(40) as u8
            } else {
                rng.byte()
            };
            input.push(op);
            input.push(len);
            input.extend((0..len).map(|_| rng.byte()));
        }
        if std::env::var_os("RTCD_FUZZ_VERBOSE").is_some() {
            eprintln!("case {case}: {input:02x?}");
        }
        rtcd_core_fuzz::run(&input);
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes `rtcd_core_fuzz::seeds()` to `seeds/datagram/` (run with
/// `--ignored write_seeds` after changing them).
#[test]
#[ignore = "writes files; run by hand after changing the seeds"]
fn write_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/datagram");
    std::fs::create_dir_all(&dir).expect("creating seeds/datagram");
    for (i, seed) in rtcd_core_fuzz::seeds().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), seed).expect("writing a seed");
    }
}

/// The harness reaches what it means to: the publisher and the viewer
/// connect (ICE and DTLS on the fake clock), real packets are collected
/// for mutation, and a signed binding request from a new address is
/// answered while an unsigned one is not.
#[test]
fn harness_reaches_connected_sessions_and_signed_stun() {
    let r = rtcd_core_fuzz::reach(&[0x03]);
    assert_eq!(r.connected, [true, true], "{r:?}");
    assert!(r.pool > 4, "{r:?}");

    let stranger_signed: std::net::SocketAddr = "203.0.113.9:3479".parse().unwrap();
    let stranger_unsigned: std::net::SocketAddr = "203.0.113.9:3478".parse().unwrap();
    // op 5|8: signed, from a stranger; op 4|8: unsigned, from a stranger.
    let r = rtcd_core_fuzz::reach(&[0x00, 0x0d, 0x02, 0xaa, 0xbb, 0x0c, 0x02, 0xaa, 0xbb]);
    assert!(r.answered.contains(&stranger_signed), "{r:?}");
    assert!(!r.answered.contains(&stranger_unsigned), "{r:?}");

    // A repeated body (op high bit) reaches an oversized datagram.
    let r = rtcd_core_fuzz::reach(&[0x00, 0x80, 0xff, 0xab]);
    assert_eq!(
        r.stats.dropped(rtcd_core::DropReason::Oversized),
        1,
        "{r:?}"
    );
}
