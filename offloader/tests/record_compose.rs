//! Composed recordings checked with FFmpeg: streams, decodability, duration,
//! and A/V sync (a click and a flash at the same wall time).

mod record_media;

use offloader::record::{ComposeOptions, compose, read_capture};
use record_media::{decode_errors, ffprobe, flash_and_click, scenario};
use signaling::jobs::{QualityProfile, RecordingFormat};

fn check(format: RecordingFormat, speaker_tracks: bool, file: &str, vcodec: &str, acodec: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cap_dir = dir.path().join("capture");
    scenario::write(&cap_dir, true);
    let cap = read_capture(&cap_dir).unwrap();
    let out = dir.path().join(file);
    let opts = ComposeOptions {
        format,
        profile: QualityProfile::Low,
        speaker_tracks,
    };
    let report = compose(&cap, &out, &opts).unwrap();
    assert!(
        report.bad_frames >= 1,
        "the garbage frames count as loss: {report:?}"
    );
    assert!(report.speaker_changes >= 1);

    let probe = ffprobe(&out);
    let streams = probe["streams"].as_array().unwrap();
    let want_audio = if speaker_tracks { 3 } else { 1 };
    assert_eq!(streams.len(), 1 + want_audio, "{probe}");
    let video: Vec<_> = streams
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .collect();
    let audio: Vec<_> = streams
        .iter()
        .filter(|s| s["codec_type"] == "audio")
        .collect();
    assert_eq!(video.len(), 1);
    assert_eq!(video[0]["codec_name"], vcodec);
    assert_eq!(audio.len(), want_audio);
    assert!(audio.iter().all(|a| a["codec_name"] == acodec), "{probe}");
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (duration - scenario::END_S).abs() < 0.5,
        "duration {duration}"
    );
    assert_eq!(decode_errors(&out), "", "every stream decodes cleanly");

    let (flash, click, lumas) = flash_and_click(&out);
    eprintln!("{file}: duration {duration} s, flash {flash} s, click {click} s, {report:?}");
    assert!(
        (flash - scenario::CLICK_S).abs() < 0.2,
        "the flash is where it was sent: {flash}"
    );
    assert!(
        (flash - click).abs() < 0.1,
        "A/V offset: flash {flash} s, click {click} s"
    );

    // While the bot was down nobody's picture is shown (dark, Y = 16);
    // before and after, Alice's camera is.
    let luma_at = |t: f64| lumas.iter().find(|l| l.0 >= t).unwrap().1;
    assert!(
        (luma_at(9.6) - 16.0).abs() < 3.0,
        "dark in the downtime: {}",
        luma_at(9.6)
    );
    assert!(luma_at(1.0) > 25.0 && luma_at(11.5) > 25.0, "camera shown");
}

#[test]
fn webm_vp8_opus_in_sync() {
    check(RecordingFormat::Webm, false, "call.webm", "vp8", "opus");
}

#[test]
fn mp4_h264_aac_in_sync_with_speaker_tracks() {
    check(RecordingFormat::Mp4, true, "call.mp4", "h264", "aac");
}

#[test]
fn audio_format_is_not_composed() {
    let dir = tempfile::tempdir().unwrap();
    scenario::write(dir.path(), false);
    let cap = read_capture(dir.path()).unwrap();
    let opts = ComposeOptions {
        format: RecordingFormat::Audio,
        profile: QualityProfile::Low,
        speaker_tracks: false,
    };
    let err = compose(&cap, &dir.path().join("x.webm"), &opts).unwrap_err();
    assert!(err.to_string().contains("write_audio_only"), "{err}");
}

#[test]
fn audio_only_capture_composes_a_dark_picture() {
    let dir = tempfile::tempdir().unwrap();
    scenario::write(dir.path(), false);
    let cap = read_capture(dir.path()).unwrap();
    let out = dir.path().join("dark.webm");
    let opts = ComposeOptions {
        format: RecordingFormat::Webm,
        profile: QualityProfile::Low,
        speaker_tracks: false,
    };
    compose(&cap, &out, &opts).unwrap();
    assert_eq!(decode_errors(&out), "");
    let duration: f64 = ffprobe(&out)["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (duration - scenario::END_S).abs() < 0.5,
        "duration {duration}"
    );
}
