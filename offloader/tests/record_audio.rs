//! Audio-only recordings: one Opus stream per speaker, packets copied.

mod record_media;

use ffmpeg_next as ff;
use offloader::record::{OpusDecoder, RecordError, read_capture, speaker_pcm16k, write_audio_only};
use record_media::{decode_errors, ffprobe, scenario};

/// The Opus packets of each stream of an audio-only file, as stored.
fn packets_per_stream(path: &std::path::Path) -> Vec<Vec<Vec<u8>>> {
    let mut ictx = ff::format::input(path).unwrap();
    let mut out = vec![Vec::new(); ictx.streams().count()];
    for (stream, packet) in ictx.packets() {
        out[stream.index()].push(packet.data().unwrap_or(&[]).to_vec());
    }
    out
}

#[test]
fn audio_only_ogg_copies_every_packet_per_speaker() {
    let dir = tempfile::tempdir().unwrap();
    let cap_dir = dir.path().join("capture");
    let written = scenario::write(&cap_dir, false);
    let cap = read_capture(&cap_dir).unwrap();
    assert_eq!(cap.segments, 2);
    assert_eq!(
        cap.torn_records, 1,
        "the record cut by the crash is dropped"
    );

    let out = dir.path().join("audio.ogg");
    let report = write_audio_only(&cap, &out).unwrap();
    assert_eq!(report.streams.len(), 2);
    assert_eq!(
        report.streams[0].bad_packets, 1,
        "the garbage frame is left out"
    );

    let probe = ffprobe(&out);
    let streams = probe["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "one stream per speaker: {probe}");
    for s in streams {
        assert_eq!(s["codec_name"], "opus");
    }
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (duration - scenario::END_S).abs() < 0.5,
        "duration {duration}"
    );
    assert_eq!(decode_errors(&out), "");

    // Copied, not re-encoded: every durable captured packet, byte for byte,
    // in order; only silence packets in between.
    let silence = [0xF8u8, 0xFF, 0xFE];
    let stored = packets_per_stream(&out);
    for (i, want) in [&written.alice_opus, &written.bob_opus]
        .into_iter()
        .enumerate()
    {
        let got: Vec<&Vec<u8>> = stored[i].iter().filter(|p| p[..] != silence[..]).collect();
        assert_eq!(got.len(), want.len(), "stream {i}");
        assert!(
            got.iter().zip(want.iter()).all(|(a, b)| *a == b),
            "stream {i} bytes differ"
        );
    }
    // Bob joined at 2 s: his stream starts with 2 s of silence packets.
    let lead = stored[1]
        .iter()
        .take_while(|p| p[..] == silence[..])
        .count();
    assert!((95..=105).contains(&lead), "Bob's lead-in {lead} packets");
    // Alice's crash gap (8.5 s → 10.5 s, plus frames lost since the last
    // flush) is silence, and what follows sits at its wall time.
    assert_eq!(
        stored[0].len(),
        600,
        "Alice's stream is 12 s of 20 ms packets"
    );

    // The same in WebM, and a name that says no format is an error.
    let webm = dir.path().join("audio.webm");
    write_audio_only(&cap, &webm).unwrap();
    let probe = ffprobe(&webm);
    assert_eq!(probe["streams"].as_array().unwrap().len(), 2, "{probe}");
    assert_eq!(decode_errors(&webm), "");
    let err = write_audio_only(&cap, &dir.path().join("audio.mp3")).unwrap_err();
    assert!(matches!(err, RecordError::Unsupported(_)), "{err}");
}

#[test]
fn speaker_pcm_is_on_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    scenario::write(dir.path(), false);
    let cap = read_capture(dir.path()).unwrap();
    let pcm = speaker_pcm16k(&cap).unwrap();
    assert_eq!(pcm.len(), 2);
    let alice = &pcm[0];
    assert_eq!(alice.speaker, "Alice");
    let secs = alice.pcm16k.len() as f64 / 16_000.0;
    assert!((secs - 12.0).abs() < 0.1, "Alice's PCM lasts {secs} s");
    // The click at 4 s is where it was heard: the wall clock is the bot's,
    // so it is late by the least network delay (30 ms), within 20 ms.
    let peak = alice.pcm16k.iter().position(|x| x.abs() > 0.6).unwrap();
    let at = alice.start_us as f64 / 1e6 - scenario::T0 as f64 / 1e6 + peak as f64 / 16_000.0;
    assert!(
        (at - scenario::CLICK_S - 0.03).abs() < 0.02,
        "click at {at}"
    );
    // During the downtime there is silence.
    let s = 9 * 16_000;
    assert!(alice.pcm16k[s..s + 16_000].iter().all(|x| x.abs() < 1e-3));
    // Before the crash and after the restart, her tone is there: the gap is
    // no longer than the downtime plus what was not yet flushed (1 s).
    let loud = |from_s: f64| {
        let i = (from_s * 16_000.0) as usize;
        let w = &alice.pcm16k[i..i + 1600];
        (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt() > 0.1
    };
    assert!(loud(7.4) && loud(10.6) && loud(11.5));
    let quiet: Vec<usize> = (0..120)
        .filter(|k| {
            let i = k * 1600;
            alice.pcm16k[i..i + 1600].iter().all(|x| x.abs() < 1e-3)
        })
        .collect();
    let gap_s = quiet.len() as f64 * 0.1;
    let downtime = scenario::RESTART_S - scenario::CRASH_S;
    assert!(
        gap_s >= downtime - 0.2 && gap_s <= downtime + 1.1,
        "gap {gap_s} s"
    );
    let bob = &pcm[1];
    let start = bob.start_us as f64 / 1e6 - scenario::T0 as f64 / 1e6;
    assert!((start - 2.0).abs() < 0.06, "Bob starts at {start}");
    let secs = bob.pcm16k.len() as f64 / 16_000.0;
    assert!((secs - 5.0).abs() < 0.1, "Bob's PCM lasts {secs} s");
}

#[test]
fn live_opus_decoder_gives_16k_mono_and_rejects_garbage() {
    let packets = record_media::opus_tone(440.0, 1.0, &[]);
    let mut dec = OpusDecoder::new(16_000).unwrap();
    let mut pcm = Vec::new();
    for p in &packets {
        pcm.extend(dec.decode(p).unwrap());
    }
    assert_eq!(pcm.len(), 16_000, "20 ms packets give 320 samples each");
    // The tone is there at its level (0.2 amplitude: RMS ~0.14).
    let rms = (pcm[4000..].iter().map(|x| x * x).sum::<f32>() / (pcm.len() - 4000) as f32).sqrt();
    assert!((rms - 0.141).abs() < 0.03, "rms {rms}");
    for bad in [&[][..], &scenario::GARBAGE_OPUS[..]] {
        assert!(matches!(dec.decode(bad), Err(RecordError::BadFrame(_))));
    }
    // The decoder goes on after garbage.
    assert_eq!(dec.decode(&packets[10]).unwrap().len(), 320);
    assert!(matches!(
        OpusDecoder::new(44_100),
        Err(RecordError::Unsupported(_))
    ));
}
