//! The capture log read back: torn tails, garbage, restarts.

use std::fs;
use std::io::Write;

use offloader::record::{
    CaptureError, CaptureWriter, Codec, MediaKind, Source, TrackMeta, read_capture,
};

fn meta(id: u32) -> TrackMeta {
    TrackMeta {
        id,
        kind: MediaKind::Audio,
        codec: Codec::Opus,
        clock_rate: 48_000,
        source: Source::Microphone,
        session_id: "s1".into(),
        speaker: "Ann".into(),
        started_us: 1_000,
    }
}

fn write_some(dir: &std::path::Path, first_id: u32, frames: u64) -> std::path::PathBuf {
    let mut w = CaptureWriter::open(dir).unwrap();
    w.track(meta(first_id)).unwrap();
    for i in 0..frames {
        w.frame(
            first_id,
            1_000 + i * 20_000,
            i * 960,
            i == 0,
            &[0xF8, 0xFF, 0xFE, i as u8],
        )
        .unwrap();
    }
    w.speaking(first_id, 5_000, true).unwrap();
    w.track_ended(first_id, 2_000_000).unwrap();
    w.flush().unwrap();
    w.segment_path().to_owned()
}

#[test]
fn round_trip_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    write_some(dir.path(), 0, 10);
    let cap = read_capture(dir.path()).unwrap();
    assert_eq!(cap.next_track_id(), 1);
    let seg2 = write_some(dir.path(), cap.next_track_id(), 5);
    assert!(seg2.ends_with("seg-000002.cap"));
    let cap = read_capture(dir.path()).unwrap();
    assert_eq!(cap.segments, 2);
    assert_eq!(cap.tracks.len(), 2);
    assert_eq!(cap.tracks[0].meta, meta(0));
    assert_eq!(cap.tracks[0].frames.len(), 10);
    assert_eq!(cap.tracks[1].frames.len(), 5);
    assert_eq!(cap.tracks[1].segment, 2);
    assert_eq!(cap.tracks[0].frames[3].data, vec![0xF8, 0xFF, 0xFE, 3]);
    assert_eq!(cap.tracks[0].frames[3].rtp_time, 3 * 960);
    assert!(cap.tracks[0].frames[0].keyframe);
    assert_eq!(cap.tracks[0].ended_us, Some(2_000_000));
    assert_eq!(cap.speaking.len(), 2);
    assert_eq!(cap.torn_records, 0);
}

#[test]
fn unflushed_records_are_lost_like_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = CaptureWriter::open(dir.path()).unwrap();
    w.track(meta(0)).unwrap();
    w.flush().unwrap();
    w.frame(0, 1, 0, true, b"\xF8\xFF\xFE").unwrap();
    drop(w);
    let cap = read_capture(dir.path()).unwrap();
    assert_eq!(cap.tracks.len(), 1);
    assert!(cap.tracks[0].frames.is_empty());
}

#[test]
fn torn_tail_is_dropped_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_some(dir.path(), 0, 10);
    let full = fs::read(&seg).unwrap();
    // Every cut inside the last record (the track's end, 21 bytes) reads
    // back without it.
    for cut in 1..21 {
        fs::write(&seg, &full[..full.len() - cut]).unwrap();
        let cap = read_capture(dir.path()).unwrap();
        assert_eq!(cap.torn_records, 1, "cut {cut}");
        assert_eq!(cap.tracks[0].frames.len(), 10);
        assert_eq!(
            cap.tracks[0].ended_us, None,
            "the torn record was the track's end"
        );
    }
    // A zeroed tail (file system after a power cut) is torn too.
    let mut zeroed = full.clone();
    zeroed.extend_from_slice(&[0; 64]);
    fs::write(&seg, &zeroed).unwrap();
    assert_eq!(read_capture(dir.path()).unwrap().torn_records, 1);
    // A torn tail in an earlier segment (the crash) and a later one intact.
    fs::write(&seg, &full[..full.len() - 3]).unwrap();
    write_some(dir.path(), 1, 3);
    let cap = read_capture(dir.path()).unwrap();
    assert_eq!(
        (cap.segments, cap.torn_records, cap.tracks.len()),
        (2, 1, 2)
    );
}

#[test]
fn garbage_in_the_middle_names_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_some(dir.path(), 0, 10);
    let mut bytes = fs::read(&seg).unwrap();
    // Flip a byte inside the third frame's data.
    let pos = bytes
        .windows(4)
        .position(|w| w == [0xF8, 0xFF, 0xFE, 2])
        .unwrap();
    bytes[pos + 3] ^= 0x55;
    fs::write(&seg, &bytes).unwrap();
    match read_capture(dir.path()) {
        Err(CaptureError::Corrupt {
            segment,
            offset,
            what,
        }) => {
            assert_eq!(segment, seg);
            assert!(offset > 8 && (offset as usize) < pos, "offset {offset}");
            assert!(what.contains("checksum"), "{what}");
        }
        other => panic!("expected a corrupt-record error, got {other:?}"),
    }
    // A length no record may have.
    let mut bytes = fs::read(&seg).unwrap();
    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&seg, &bytes).unwrap();
    let err = read_capture(dir.path()).unwrap_err();
    assert!(
        matches!(err, CaptureError::Corrupt { offset: 8, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("seg-000001.cap offset 8"), "{err}");
}

#[test]
fn bad_magic_and_misuse_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = fs::File::create(dir.path().join("seg-000001.cap")).unwrap();
    f.write_all(b"NOTACAPTUREFILE").unwrap();
    assert!(matches!(
        read_capture(dir.path()),
        Err(CaptureError::BadMagic { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let mut w = CaptureWriter::open(dir.path()).unwrap();
    assert!(matches!(
        w.frame(7, 0, 0, true, b"x"),
        Err(CaptureError::UnknownTrack(7))
    ));
    w.track(meta(0)).unwrap();
    assert!(matches!(
        w.track(meta(0)),
        Err(CaptureError::DuplicateTrack(0))
    ));
    assert!(matches!(
        w.track_ended(3, 0),
        Err(CaptureError::UnknownTrack(3))
    ));
    assert!(matches!(
        read_capture(&dir.path().join("missing")),
        Err(CaptureError::Io { .. })
    ));
}
