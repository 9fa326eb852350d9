//! A synthetic call written through `CaptureWriter` as a bot would: Alice
//! talks (440 Hz) with her camera on the whole time and shares her screen
//! from 3 s; Bob (660 Hz) joins at 2 s and leaves at 7 s. One of Alice's
//! audio frames is lost, two arrive swapped, one is garbage; one of Bob's
//! video frames is garbage. The bot crashes at 8.5 s (no flush, a torn
//! record) and is back at 10.5 s; the call ends at 12 s. At 4 s there is a
//! click in Alice's audio and a white flash in every picture.

use std::path::Path;

use offloader::record::{CaptureWriter, Codec, MediaKind, Source, TrackMeta, read_capture};

use super::{opus_tone, vp8_pattern};

/// Unix µs of the call's time 0.
pub const T0: u64 = 1_700_000_000_000_000;
pub const END_S: f64 = 12.0;
pub const CLICK_S: f64 = 4.0;
pub const CRASH_S: f64 = 8.5;
pub const RESTART_S: f64 = 10.5;
/// Bytes that are no Opus packet (a frame count of 0).
pub const GARBAGE_OPUS: [u8; 12] = [0xFF, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

struct Ev {
    arrival_us: u64,
    track: usize,
    rtp: u64,
    key: bool,
    data: Vec<u8>,
}

struct Plan {
    meta: TrackMeta,
    /// Which bot run declares it (0 before the crash, 1 after).
    run: usize,
}

/// Packets the scenario wrote, per session, in the order they were sent.
pub struct Written {
    pub alice_opus: Vec<Vec<u8>>,
    pub bob_opus: Vec<Vec<u8>>,
}

fn jitter(i: usize) -> u64 {
    // Deterministic 0–24 ms of jitter on top of 30 ms of delay.
    30_000 + ((i as u64 * 7919) % 25) * 1000
}

/// Writes the scenario into `dir`. With `video` false only the audio tracks.
pub fn write(dir: &Path, video: bool) -> Written {
    let us = |s: f64| T0 + (s * 1e6) as u64;
    let mut plans: Vec<Plan> = Vec::new();
    let mut evs: Vec<Ev> = Vec::new();
    let meta =
        |kind, codec, clock_rate, source, session: &str, speaker: &str, start_s: f64| TrackMeta {
            id: 0,
            kind,
            codec,
            clock_rate,
            source,
            session_id: session.into(),
            speaker: speaker.into(),
            started_us: us(start_s),
        };
    let add_audio = |plans: &mut Vec<Plan>,
                     evs: &mut Vec<Ev>,
                     run: usize,
                     m: TrackMeta,
                     packets: &[Vec<u8>],
                     from_s: f64,
                     to_s: f64,
                     rtp_base: u64| {
        let t = plans.len();
        plans.push(Plan { meta: m, run });
        let first = (from_s / 0.02).round() as usize;
        let last = (to_s / 0.02).round() as usize;
        for (k, packet) in packets.iter().enumerate().take(last).skip(first) {
            let send_s = k as f64 * 0.02;
            evs.push(Ev {
                arrival_us: us(send_s) + jitter(k + t * 13),
                track: t,
                rtp: rtp_base + (k - first) as u64 * 960,
                key: true,
                data: packet.clone(),
            });
        }
    };
    let alice = opus_tone(440.0, END_S as f32, &[CLICK_S as f32]);
    let bob_local = opus_tone(660.0, 5.0, &[]);
    let mut bob = vec![Vec::new(); 100];
    bob.extend(bob_local);
    let m = meta(
        MediaKind::Audio,
        Codec::Opus,
        48_000,
        Source::Microphone,
        "sa",
        "Alice",
        0.0,
    );
    add_audio(
        &mut plans,
        &mut evs,
        0,
        m.clone(),
        &alice,
        0.0,
        CRASH_S,
        4_294_000_000,
    );
    let m_b = meta(
        MediaKind::Audio,
        Codec::Opus,
        48_000,
        Source::Microphone,
        "sb",
        "Bob",
        2.0,
    );
    add_audio(&mut plans, &mut evs, 0, m_b, &bob, 2.0, 7.0, 77_000);
    let mut m2 = m;
    m2.started_us = us(RESTART_S);
    add_audio(
        &mut plans,
        &mut evs,
        1,
        m2,
        &alice,
        RESTART_S,
        END_S,
        1_000_000_000,
    );

    if video {
        let add_video = |plans: &mut Vec<Plan>,
                         evs: &mut Vec<Ev>,
                         run: usize,
                         m: TrackMeta,
                         (w, h, fps): (u32, u32, u32),
                         from_s: f64,
                         to_s: f64| {
            let t = plans.len();
            plans.push(Plan { meta: m, run });
            let frames = vp8_pattern(
                w,
                h,
                fps,
                (to_s - from_s) as f32,
                &[(CLICK_S - from_s) as f32],
            );
            for (i, (data, key)) in frames.into_iter().enumerate() {
                let send_s = from_s + i as f64 / fps as f64;
                evs.push(Ev {
                    arrival_us: us(send_s) + jitter(i + t * 31),
                    track: t,
                    rtp: 5_000 + i as u64 * (90_000 / fps as u64),
                    key,
                    data,
                });
            }
        };
        let cam = |s: &str, n: &str, at| {
            meta(
                MediaKind::Video,
                Codec::Vp8,
                90_000,
                Source::Camera,
                s,
                n,
                at,
            )
        };
        add_video(
            &mut plans,
            &mut evs,
            0,
            cam("sa", "Alice", 0.0),
            (320, 240, 15),
            0.0,
            CRASH_S,
        );
        add_video(
            &mut plans,
            &mut evs,
            0,
            cam("sb", "Bob", 2.0),
            (320, 240, 15),
            2.0,
            7.0,
        );
        let screen = meta(
            MediaKind::Video,
            Codec::Vp8,
            90_000,
            Source::Screen,
            "sa",
            "Alice",
            3.0,
        );
        add_video(&mut plans, &mut evs, 0, screen, (640, 360, 5), 3.0, CRASH_S);
        add_video(
            &mut plans,
            &mut evs,
            1,
            cam("sa", "Alice", RESTART_S),
            (320, 240, 15),
            RESTART_S,
            END_S,
        );
    }

    // Damage: Alice's frame at 1.0 s lost, 2.5 s garbage; Bob's picture at 5 s garbage.
    evs.retain(|e| !(e.track == 0 && e.rtp == 4_294_000_000 + 50 * 960));
    for e in evs.iter_mut() {
        if e.track == 0 && e.rtp == 4_294_000_000 + 125 * 960 {
            e.data = GARBAGE_OPUS.to_vec();
        }
        if video
            && plans[e.track].meta.session_id == "sb"
            && plans[e.track].meta.kind == MediaKind::Video
            && e.rtp == 5_000 + 45 * 6000
        {
            e.data = (0..900u32).map(|i| (i * 131 % 251) as u8).collect();
        }
    }
    evs.sort_by_key(|e| e.arrival_us);
    // Two of Alice's frames (1.5 s, 1.52 s) arrive swapped.
    let a = evs
        .iter()
        .position(|e| e.track == 0 && e.rtp == 4_294_000_000 + 75 * 960)
        .unwrap();
    let b = evs
        .iter()
        .position(|e| e.track == 0 && e.rtp == 4_294_000_000 + 76 * 960)
        .unwrap();
    evs.swap(a, b);

    // Run 0 until the crash, run 1 after the restart.
    let mut ids = vec![u32::MAX; plans.len()];
    let mut writer = CaptureWriter::open(dir).unwrap();
    let declare = |w: &mut CaptureWriter, run: usize, ids: &mut Vec<u32>, next: &mut u32| {
        for (i, p) in plans.iter().enumerate() {
            if p.run == run {
                let mut m = p.meta.clone();
                m.id = *next;
                *next += 1;
                ids[i] = m.id;
                w.track(m).unwrap();
            }
        }
    };
    let mut next_id = 0;
    declare(&mut writer, 0, &mut ids, &mut next_id);
    let mut next_flush = us(1.0);
    let mut crashed = false;
    let mut bob_left = false;
    for e in &evs {
        if !bob_left && e.arrival_us >= us(7.1) {
            bob_left = true;
            for (i, p) in plans.iter().enumerate() {
                if p.meta.session_id == "sb" {
                    writer.track_ended(ids[i], us(7.0)).unwrap();
                }
            }
        }
        if !crashed && e.arrival_us >= us(CRASH_S) {
            // The crash: no flush; half a record left at the end of the file.
            let seg = writer.segment_path().to_owned();
            drop(writer);
            let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
            std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 2, 1, 2, 3]).unwrap();
            crashed = true;
            let cap = read_capture(dir).unwrap();
            let mut next = cap.next_track_id();
            writer = CaptureWriter::open(dir).unwrap();
            declare(&mut writer, 1, &mut ids, &mut next);
        }
        if crashed && e.arrival_us < us(RESTART_S) {
            continue;
        }
        if e.arrival_us >= next_flush {
            writer.flush().unwrap();
            next_flush += 1_000_000;
        }
        writer
            .frame(ids[e.track], e.arrival_us, e.rtp, e.key, &e.data)
            .unwrap();
    }
    writer.flush().unwrap();
    drop(writer);

    // What is durable, per session in the order it was sent.
    let cap = read_capture(dir).unwrap();
    let per = |session: &str| {
        let mut v: Vec<(u32, u64, Vec<u8>)> = cap
            .tracks
            .iter()
            .filter(|t| t.meta.session_id == session && t.meta.kind == MediaKind::Audio)
            .flat_map(|t| {
                t.frames
                    .iter()
                    .map(move |f| (t.segment, f.rtp_time, f.data.clone()))
            })
            .collect();
        v.sort_by_key(|(s, r, _)| (*s, *r));
        v.into_iter()
            .map(|(_, _, d)| d)
            .filter(|d| d[..] != GARBAGE_OPUS[..])
            .collect::<Vec<_>>()
    };
    Written {
        alice_opus: per("sa"),
        bob_opus: per("sb"),
    }
}
