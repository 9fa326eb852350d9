//! Transcription with the real tiny.en model on espeak-ng speech.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use offloader::transcribe::{
    Engine, LiveCaptions, SpeakerAudio, TranscribeError, plain_text, transcribe_call, webvtt,
};

const SENTENCE: &str = "hello world this is a test of the transcription system";
const SENTENCE_2: &str = "the weather today is sunny and warm";

fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(Engine::load(&common::ggml_model(), 1).expect("load model")))
        .clone()
}

fn silence(ms: usize) -> Vec<f32> {
    vec![0.0; ms * 16]
}

#[test]
fn transcribes_a_spoken_sentence() {
    let pcm = common::speak(SENTENCE);
    let started = Instant::now();
    let segs = engine().transcribe(&pcm, Some("en")).expect("transcribe");
    let took = started.elapsed();
    let text: Vec<&str> = segs.iter().map(|s| s.text.as_str()).collect();
    let text = text.join(" ");
    let overlap = common::word_overlap(SENTENCE, &text);
    println!(
        "{:.2} s of speech → {text:?} in {took:?}, word overlap {:.0} %",
        pcm.len() as f64 / 16_000.0,
        overlap * 100.0
    );
    assert!(overlap >= 0.6, "{text:?}");
}

#[test]
fn two_speakers_in_order_with_names() {
    let mut alice = silence(500);
    alice.extend(common::speak(SENTENCE));
    alice.extend(silence(500));
    let mut bob = common::speak(SENTENCE_2);
    bob.extend(silence(500));
    let alice_len_ms = (alice.len() / 16) as u64;
    let tracks = [
        // Bob's track starts after Alice finished.
        SpeakerAudio {
            speaker: "Bob".into(),
            start_ms: alice_len_ms + 1_000,
            pcm16k: bob,
        },
        SpeakerAudio {
            speaker: "Alice".into(),
            start_ms: 2_000,
            pcm16k: alice,
        },
    ];
    let cues = transcribe_call(&engine(), &tracks, None).expect("transcribe");
    println!("{}", plain_text(&cues));
    assert!(!cues.is_empty());
    let first_bob = cues
        .iter()
        .position(|c| c.speaker == "Bob")
        .expect("a Bob cue");
    assert!(first_bob > 0, "Alice speaks first: {cues:?}");
    assert!(cues[..first_bob].iter().all(|c| c.speaker == "Alice"));
    assert!(cues[first_bob..].iter().all(|c| c.speaker == "Bob"));
    assert!(cues.windows(2).all(|w| w[0].start_ms <= w[1].start_ms));
    assert!(cues[0].start_ms >= 2_000, "{cues:?}");
    assert!(cues[first_bob].start_ms >= alice_len_ms + 1_000, "{cues:?}");
    let said = |who: &str| {
        cues.iter()
            .filter(|c| c.speaker == who)
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        common::word_overlap(SENTENCE, &said("Alice")) >= 0.6,
        "{cues:?}"
    );
    assert!(
        common::word_overlap(SENTENCE_2, &said("Bob")) >= 0.6,
        "{cues:?}"
    );

    // WebVTT: header, then blocks of id, timing line, voice-tagged text.
    let vtt = webvtt(&cues);
    let mut blocks = vtt.split("\n\n");
    assert_eq!(blocks.next(), Some("WEBVTT"));
    let mut n = 0;
    for block in blocks {
        let lines: Vec<&str> = block.trim_end().lines().collect();
        assert_eq!(lines.len(), 3, "{block:?}");
        assert_eq!(lines[0], (n + 1).to_string());
        let (from, to) = lines[1].split_once(" --> ").expect("timing line");
        for t in [from, to] {
            assert_eq!(t.len(), 12, "{t}");
            assert_eq!(&t[2..3], ":");
            assert_eq!(&t[8..9], ".");
        }
        assert!(from <= to);
        let c = &cues[n];
        assert_eq!(lines[2], format!("<v {}>{}", c.speaker, c.text));
        n += 1;
    }
    assert_eq!(n, cues.len());
}

#[test]
fn silence_gives_no_cue() {
    let mut quiet = silence(10_000);
    // Faint noise, as a muted-but-open microphone gives.
    let mut x = 12345u32;
    for s in &mut quiet {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *s = ((x >> 16) as f32 / 32768.0 - 1.0) * 0.001;
    }
    let tracks = [SpeakerAudio {
        speaker: "Carol".into(),
        start_ms: 0,
        pcm16k: quiet,
    }];
    let cues = transcribe_call(&engine(), &tracks, Some("en")).expect("transcribe");
    assert!(cues.is_empty(), "{cues:?}");
}

#[test]
fn unknown_language_and_missing_model_are_errors() {
    assert!(matches!(
        engine().transcribe(&silence(100), Some("xx-nope")),
        Err(TranscribeError::Language(_))
    ));
    assert!(matches!(
        Engine::load(std::path::Path::new("/nonexistent/model.bin"), 1),
        Err(TranscribeError::Load { .. })
    ));
    // A file that is not a model.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"not a model at all").unwrap();
    assert!(matches!(
        Engine::load(&junk, 1),
        Err(TranscribeError::Load { .. })
    ));
    assert!(LiveCaptions::new(engine(), Some("xx-nope")).is_err());
}

#[test]
fn live_captions_arrive_soon_after_the_words() {
    let speech = common::speak(SENTENCE);
    let mut live = LiveCaptions::new(engine(), Some("en")).expect("live captions");
    let chunk = 320; // 20 ms
    let mut audio = silence(300);
    audio.extend(&speech);
    // The words end at the last sample above −40 dBFS (espeak-ng's file
    // ends with some quiet of its own).
    let speech_end = audio.iter().rposition(|s| s.abs() > 0.01).expect("speech");
    audio.extend(silence(4_000));
    let started = Instant::now();
    let mut captions = Vec::new();
    let mut words_ended_at = None;
    let mut last_caption_at = None;
    for (i, c) in audio.chunks(chunk).enumerate() {
        // Real time: chunk i is due at i·20 ms.
        let due = started + Duration::from_millis(20 * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at_ms = (i * chunk / 16) as u64 + 10_000;
        let got = live.push("Alice", at_ms, c).expect("push");
        if (i + 1) * chunk > speech_end && words_ended_at.is_none() {
            words_ended_at = Some(Instant::now());
        }
        for cap in got {
            println!("caption at {:?}: {cap:?}", started.elapsed());
            last_caption_at = Some(Instant::now());
            captions.push(cap);
        }
    }
    let words_ended_at = words_ended_at.expect("speech ended");
    assert!(!captions.is_empty(), "no caption arrived");
    let last = captions.last().unwrap();
    assert!(!last.continues, "{captions:?}");
    let delay = last_caption_at.unwrap().duration_since(words_ended_at);
    let text: Vec<&str> = captions.iter().map(|c| c.text.as_str()).collect();
    let text = text.join(" ");
    println!(
        "live captions: {} pieces, delay from the end of the words to the last caption: {} ms; text {text:?}",
        captions.len(),
        delay.as_millis()
    );
    assert!(
        captions
            .iter()
            .all(|c| c.speaker == "Alice" && c.start_ms >= 10_000)
    );
    assert!(common::word_overlap(SENTENCE, &text) >= 0.5, "{text:?}");
    assert!(delay < Duration::from_secs(3), "caption delay {delay:?}");
    assert_eq!(live.dropped(), 0);
    assert!(live.finish().expect("finish").is_empty());
}
