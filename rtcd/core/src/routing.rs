//! Media routing: from a publisher's RTP to its subscribers, keyframe
//! requests back, and simulcast layer choice.

use std::time::{Duration, Instant};

use signaling::SessionId;
use signaling::media::{TrackSource, VideoQuality};
use signaling::rtcd::FromRtcd;
use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaKind, Mid};
use str0m::rtp::StreamPaused;
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use str0m::stats::{MediaEgressStats, MediaIngressStats};

use crate::backlog::{FanoutSource, InProgress};
use crate::codec::is_keyframe_start;
use crate::demux::SessionKey;
use crate::session::{Layer, SessionKind};
use crate::sfu::{Action, CoreError, FLUSH_AFTER_FORWARDS, Forward, Sfu};
use crate::stats::{DropReason, MediaClass};

impl Sfu {
    /// Runs queued cross-session work until none is left.
    pub(crate) fn run_actions(&mut self, now: Instant) {
        while let Some(action) = self.actions.pop_front() {
            match action {
                Action::Forward(f) => self.forward(now, f),
                Action::Keyframe {
                    publisher,
                    track,
                    layer,
                    kind,
                } => self.request_keyframe(now, publisher, track, layer, kind),
                Action::Relayer { publisher, track } => self.relayer(publisher, track),
                Action::Renegotiate(key) => self.renegotiate(now, key),
                Action::BindPlayers(call) => self.bind_players(&call),
            }
        }
    }

    pub(crate) fn on_rtp(&mut self, now: Instant, key: SessionKey, p: RtpPacket) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let ssrc = p.header.ssrc;
        let (ti, li) = match s.ssrc_map.get(&ssrc) {
            Some(v) => *v,
            None => {
                let Some((mid, rid)) = s
                    .rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|rx| (rx.mid(), rx.rid()))
                else {
                    return;
                };
                let Some(ti) = s.inputs.iter().position(|t| t.mid == mid) else {
                    return;
                };
                let track = &mut s.inputs[ti];
                let li = match track.layers.iter().position(|l| l.rid == rid) {
                    Some(li) => li,
                    None => {
                        track.layers.push(Layer::new(rid));
                        track.layers.len() - 1
                    }
                };
                s.ssrc_map.insert(ssrc, (ti, li));
                if track.layers.len() > 1 {
                    self.actions.push_back(Action::Relayer {
                        publisher: key,
                        track: ti,
                    });
                }
                (ti, li)
            }
        };
        let track = &mut s.inputs[ti];
        let class = if track.kind == MediaKind::Audio {
            MediaClass::Audio
        } else {
            MediaClass::Video
        };
        let len = p.payload.len();
        self.stats.packets_in[class as usize] += 1;
        self.stats.bytes_in[class as usize] += len as u64;
        track.layers[li].observe(now, len);
        let source = track.source;

        if !s.may_forward(source) {
            let reason = if s.permissions_allow(source) {
                DropReason::Muted
            } else {
                DropReason::NotPermitted
            };
            self.stats.drop(reason);
            return;
        }
        let newly_flowing = !std::mem::replace(&mut s.inputs[ti].flowing, true);
        if source == TrackSource::Microphone
            && let Some(level) = p.header.ext_vals.audio_level
            && let Some(speaking) = s.vad.observe(now, level)
        {
            let session_id = s.id.clone();
            self.emit(FromRtcd::VoiceActivity {
                session_id,
                speaking,
            });
        }
        if newly_flowing {
            // Offered from now on; this first packet reaches no one. WHEP
            // players bind at once, others once they answer; `subscribe`
            // asks for a keyframe for video.
            let call = self.sessions[&key].call.clone();
            self.track_set_changed(key, &call);
        }
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let track = &mut s.inputs[ti];
        if track.subscribers.is_empty() {
            return;
        }
        let pt = p.header.payload_type;
        let codec = match track.formats.iter().find(|(x, _)| *x == pt) {
            Some((_, params)) => params.spec().codec,
            None => {
                let Some(params) = s.rtc.codec_config().find(|pp| pp.pt() == pt).copied() else {
                    self.stats.drop(DropReason::NoCodec);
                    return;
                };
                let codec = params.spec().codec;
                s.inputs[ti].formats.push((pt, params));
                codec
            }
        };
        let keyframe = class == MediaClass::Video && is_keyframe_start(codec, &p.payload);
        let f = Forward {
            from: key,
            track: ti,
            layer: li,
            seq: *p.seq_no,
            ts: p.header.timestamp,
            marker: p.header.marker,
            pt,
            payload: p.payload,
            audio_level: p.header.ext_vals.audio_level,
            voice_activity: p.header.ext_vals.voice_activity,
            arrival: p.timestamp,
            keyframe,
        };
        if class == MediaClass::Audio {
            self.actions.push_back(Action::Forward(f));
        } else {
            self.backlog.push(f);
        }
    }

    /// Sends an audio packet to all its subscribers at once.
    fn forward(&mut self, now: Instant, f: Forward) {
        self.forwarded_since_flush += 1;
        self.audio_unflushed_since.get_or_insert(now);
        // Reuse one buffer for the subscriber list: no allocation per packet.
        let mut subscribers = std::mem::take(&mut self.fanout_scratch);
        let Some(source) = self.begin_fanout(&f, &mut subscribers) else {
            self.fanout_scratch = subscribers;
            return;
        };
        for &(sub_key, mid) in &subscribers {
            self.write_one(now, &f, source, sub_key, mid);
        }
        self.fanout_scratch = subscribers;
    }

    /// Fans queued video out, oldest packet first, until `max_writes`
    /// subscribers have been handled (at least one) or nothing is left;
    /// a packet's fan-out may stop mid-list and resume on the next call.
    /// Returns whether video is still waiting.
    ///
    /// Audio is forwarded as it arrives, so a driver that calls this in
    /// small slices, and reads its socket in between, lets audio overtake
    /// a large video fan-out. What it writes is released by
    /// [`Sfu::flush`], as for [`Sfu::handle_datagram`], and at the latest
    /// every [`FLUSH_AFTER_FORWARDS`] packets.
    pub fn forward_backlog(&mut self, now: Instant, max_writes: usize) -> bool {
        let mut budget = max_writes.max(1);
        while budget > 0 {
            let mut current = match self.backlog.current.take() {
                Some(c) => c,
                None => {
                    let Some(f) = self.backlog.next_packet() else {
                        break;
                    };
                    let mut subscribers = std::mem::take(&mut self.backlog.subscribers);
                    let source = self.begin_fanout(&f, &mut subscribers);
                    self.backlog.subscribers = subscribers;
                    let Some(source) = source else {
                        // Its publisher, track or format is gone.
                        continue;
                    };
                    InProgress {
                        forward: f,
                        source,
                        next: 0,
                    }
                }
            };
            let subscribers = std::mem::take(&mut self.backlog.subscribers);
            let start = current.next;
            let end = subscribers.len().min(start.saturating_add(budget));
            for &(sub_key, mid) in &subscribers[start..end] {
                self.write_one(now, &current.forward, current.source, sub_key, mid);
            }
            self.backlog.subscribers = subscribers;
            // A packet with no subscriber left still costs a step.
            budget -= (end - start).max(1);
            if end < self.backlog.subscribers.len() {
                current.next = end;
                self.backlog.current = Some(current);
                break;
            }
            let took = now.saturating_duration_since(current.forward.arrival);
            self.stats.video_fanout.observe(took.as_secs_f64());
            self.forwarded_since_flush += 1;
            if self.forwarded_since_flush >= FLUSH_AFTER_FORWARDS {
                self.flush(now);
            }
        }
        self.backlog.len() > 0
    }

    /// The publisher's side of a packet's fan-out, with its subscribers
    /// as they are now copied into `subscribers`; `None` when its
    /// publisher, track or format is gone.
    fn begin_fanout(
        &self,
        f: &Forward,
        subscribers: &mut Vec<(SessionKey, Mid)>,
    ) -> Option<FanoutSource> {
        subscribers.clear();
        let track = self.sessions.get(&f.from)?.inputs.get(f.track)?;
        let in_params = track
            .formats
            .iter()
            .find(|(pt, _)| *pt == f.pt)
            .map(|(_, p)| *p)?;
        let class = if track.kind == MediaKind::Audio {
            MediaClass::Audio
        } else {
            MediaClass::Video
        };
        subscribers.extend_from_slice(&track.subscribers);
        Some(FanoutSource {
            class,
            simulcast: track.layers.len() > 1,
            in_params,
        })
    }

    /// Writes one packet to one subscriber's m-line, if that m-line still
    /// receives the packet's track and wants its layer.
    fn write_one(
        &mut self,
        now: Instant,
        f: &Forward,
        source: FanoutSource,
        sub_key: SessionKey,
        mid: Mid,
    ) {
        let Some(sub) = self.sessions.get_mut(&sub_key) else {
            return;
        };
        if !sub.connected() {
            return;
        }
        let Some(out) = sub.outputs.get_mut(&mid) else {
            return;
        };
        // A queued packet may meet an m-line that was unbound (its publisher
        // left) or bound to another track since the packet arrived.
        if out.publisher != Some((f.from, f.track)) {
            return;
        }
        let class = source.class;
        if source.simulcast {
            if out.current_layer != Some(f.layer) {
                if out.target_layer == Some(f.layer) && f.keyframe {
                    out.current_layer = Some(f.layer);
                    out.rewriter.switch(now, f.seq, f.ts);
                } else {
                    self.stats.drop(DropReason::LayerNotSelected);
                    return;
                }
            }
        } else if !out.rewriter.started() {
            out.current_layer = Some(f.layer);
            out.rewriter.switch(now, f.seq, f.ts);
        }
        let Some((seq, ts)) = out.rewriter.rewrite(now, f.seq, f.ts) else {
            return;
        };
        let out_pt = match out.pt_map {
            Some((i, o)) if i == f.pt => o,
            _ => {
                let Some(o) = sub.rtc.media(mid).and_then(|m| {
                    let remote = m.remote_pts();
                    sub.rtc
                        .codec_config()
                        .params()
                        .iter()
                        .filter(|p| remote.contains(&p.pt()))
                        .find(|p| same_format(p, &source.in_params))
                        .map(|p| p.pt())
                }) else {
                    self.stats.drop(DropReason::NoCodec);
                    return;
                };
                out.pt_map = Some((f.pt, o));
                o
            }
        };
        let ext = ExtensionValues {
            audio_level: f.audio_level,
            voice_activity: f.voice_activity,
            ..Default::default()
        };
        let mut api = sub.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        if class == MediaClass::Video && out.resend_window.is_none() {
            // str0m keeps 3 s per stream unless told otherwise (only
            // the packet cap is an `RtcConfig` setting); this drops
            // the (empty) cache once, before the first packet.
            let window = self.resend.initial();
            set_resend_window(tx, window, self.config.resend_window_packets);
            out.resend_window = Some(window);
        }
        tx.write_rtp(
            RtpWrite::new(out_pt, seq.into(), ts, f.arrival, f.payload.clone())
                .marker(f.marker)
                .ext_vals(ext)
                .nackable(class == MediaClass::Video),
        );
        self.stats.forwarded_packets[class as usize] += 1;
        self.stats.forwarded_bytes[class as usize] += f.payload.len() as u64;
        // str0m releases written packets on its next timeout: `flush`
        // gives each touched subscriber one per batch of input.
        if !sub.touched {
            sub.touched = true;
            self.touched.push(sub_key);
        }
    }

    pub(crate) fn on_keyframe_request(&mut self, key: SessionKey, r: KeyframeRequest) {
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        let Some(out) = s.outputs.get(&r.mid) else {
            return;
        };
        let Some((publisher, track)) = out.publisher else {
            return;
        };
        let layer = out.target_layer.or(out.current_layer).unwrap_or(0);
        self.actions.push_back(Action::Keyframe {
            publisher,
            track,
            layer,
            kind: r.kind,
        });
    }

    fn request_keyframe(
        &mut self,
        now: Instant,
        publisher: SessionKey,
        track: usize,
        layer: usize,
        kind: KeyframeRequestKind,
    ) {
        let interval = self.config.keyframe_request_interval;
        let Some(p) = self.sessions.get_mut(&publisher) else {
            return;
        };
        let Some(t) = p.inputs.get_mut(track) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        let mid = t.mid;
        let Some(l) = t.layers.get_mut(layer) else {
            // Nothing received yet: the first keyframe comes on its own.
            return;
        };
        if let Some(at) = l.last_keyframe_request
            && now.saturating_duration_since(at) < interval
        {
            // Coalesce: one request goes out when the interval ends, so a
            // subscriber asking just after another still gets its keyframe.
            self.stats.keyframe_requests_suppressed += 1;
            l.keyframe_pending = Some(kind);
            self.schedule_wake(publisher, at + interval);
            return;
        }
        l.keyframe_pending = None;
        l.last_keyframe_request = Some(now);
        let rid = l.rid;
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(kind);
            self.stats.keyframe_requests_forwarded += 1;
            self.drain(now, publisher);
        }
    }

    /// Sends the keyframe requests of `publisher` that waited for their
    /// interval to pass.
    pub(crate) fn flush_keyframe_requests(&mut self, now: Instant, publisher: SessionKey) {
        let Some(p) = self.sessions.get(&publisher) else {
            return;
        };
        let interval = self.config.keyframe_request_interval;
        let due: Vec<(usize, usize, KeyframeRequestKind)> = p
            .inputs
            .iter()
            .enumerate()
            .flat_map(|(ti, t)| {
                t.layers.iter().enumerate().filter_map(move |(li, l)| {
                    let kind = l.keyframe_pending?;
                    let ready = l
                        .last_keyframe_request
                        .is_none_or(|at| now.saturating_duration_since(at) >= interval);
                    ready.then_some((ti, li, kind))
                })
            })
            .collect();
        for (track, layer, kind) in due {
            self.request_keyframe(now, publisher, track, layer, kind);
        }
    }

    /// Asks every publisher this session receives video from for a keyframe.
    pub(crate) fn request_keyframes_for(&mut self, key: SessionKey, _now: Instant) {
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        for out in s.outputs.values() {
            if out.kind == MediaKind::Video
                && let Some((publisher, track)) = out.publisher
            {
                self.actions.push_back(Action::Keyframe {
                    publisher,
                    track,
                    layer: out.target_layer.or(out.current_layer).unwrap_or(0),
                    kind: KeyframeRequestKind::Pli,
                });
            }
        }
    }

    pub(crate) fn on_stream_paused(&mut self, key: SessionKey, p: StreamPaused) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(ti) = s.inputs.iter().position(|t| t.mid == p.mid) else {
            return;
        };
        if let Some(l) = s.inputs[ti].layers.iter_mut().find(|l| l.rid == p.rid) {
            l.active = !p.paused;
        }
        self.actions.push_back(Action::Relayer {
            publisher: key,
            track: ti,
        });
    }

    /// Re-picks the target layer of each subscriber of a track.
    fn relayer(&mut self, publisher: SessionKey, track: usize) {
        let Some(p) = self.sessions.get(&publisher) else {
            return;
        };
        let Some(t) = p.inputs.get(track) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        let picks: Vec<(SessionKey, str0m::media::Mid, Option<usize>)> = t
            .subscribers
            .iter()
            .map(|(k, mid)| {
                let q = self
                    .sessions
                    .get(k)
                    .and_then(|s| s.outputs.get(mid))
                    .map(|o| o.quality)
                    .unwrap_or_default();
                (*k, *mid, t.layer_for(q))
            })
            .collect();
        for (k, mid, target) in picks {
            let Some(out) = self
                .sessions
                .get_mut(&k)
                .and_then(|s| s.outputs.get_mut(&mid))
            else {
                continue;
            };
            if out.target_layer != target {
                out.target_layer = target;
                if let Some(layer) = target
                    && out.current_layer != Some(layer)
                {
                    self.actions.push_back(Action::Keyframe {
                        publisher,
                        track,
                        layer,
                        kind: KeyframeRequestKind::Pli,
                    });
                }
            }
        }
    }

    pub(crate) fn set_quality(
        &mut self,
        subscriber: &SessionId,
        publisher: &SessionId,
        source: TrackSource,
        quality: VideoQuality,
    ) -> Result<(), CoreError> {
        let sub = self.key_of(subscriber)?;
        let pubk = self.key_of(publisher)?;
        let tracks: Vec<usize> = self.sessions[&pubk]
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, t)| t.source == source)
            .map(|(i, _)| i)
            .collect();
        let s = self.sessions.get_mut(&sub).expect("key_of checked");
        for out in s.outputs.values_mut() {
            if let Some((p, t)) = out.publisher
                && p == pubk
                && tracks.contains(&t)
            {
                out.quality = quality;
            }
        }
        for t in tracks {
            self.actions.push_back(Action::Relayer {
                publisher: pubk,
                track: t,
            });
        }
        Ok(())
    }

    /// Binds a subscriber's m-line to a publisher's track.
    pub(crate) fn subscribe(
        &mut self,
        sub: SessionKey,
        mid: str0m::media::Mid,
        publisher: SessionKey,
        track: usize,
    ) {
        let Some(t) = self
            .sessions
            .get_mut(&publisher)
            .and_then(|p| p.inputs.get_mut(track))
        else {
            return;
        };
        if !t.subscribers.contains(&(sub, mid)) {
            t.subscribers.push((sub, mid));
        }
        let target = t.layer_for(VideoQuality::Auto);
        let is_video = t.kind == MediaKind::Video;
        if let Some(out) = self
            .sessions
            .get_mut(&sub)
            .and_then(|s| s.outputs.get_mut(&mid))
        {
            out.publisher = Some((publisher, track));
            out.target_layer = target;
        }
        if is_video {
            self.actions.push_back(Action::Keyframe {
                publisher,
                track,
                layer: target.unwrap_or(0),
                kind: KeyframeRequestKind::Pli,
            });
        }
    }

    /// WHEP players watch one publisher: the one they named, else the first
    /// in the call with media. Their audio m-line takes its microphone (or
    /// screen audio), their video m-line its camera (or screen).
    fn bind_players(&mut self, call: &signaling::CallId) {
        let Some(c) = self.calls.get(call) else {
            return;
        };
        let members = c.sessions.clone();
        let mut binds = Vec::new();
        for key in &members {
            let s = &self.sessions[key];
            let SessionKind::Whep { publisher } = &s.kind else {
                continue;
            };
            let chosen = match publisher {
                Some(id) => self.by_id.get(id).copied(),
                None => members
                    .iter()
                    .copied()
                    .find(|k| k != key && self.sessions[k].inputs.iter().any(|t| t.live())),
            };
            let Some(pk) = chosen else { continue };
            let p = &self.sessions[&pk];
            for (mid, out) in &s.outputs {
                if out.publisher.is_some() {
                    continue;
                }
                let preference: &[TrackSource] = if out.kind == MediaKind::Audio {
                    &[TrackSource::Microphone, TrackSource::ScreenAudio]
                } else {
                    &[TrackSource::Camera, TrackSource::ScreenVideo]
                };
                let found = preference.iter().find_map(|src| {
                    p.inputs
                        .iter()
                        .position(|t| t.live() && t.source == *src && t.kind == out.kind)
                });
                if let Some(ti) = found {
                    binds.push((*key, *mid, pk, ti));
                }
            }
        }
        for (sub, mid, pk, ti) in binds {
            self.subscribe(sub, mid, pk, ti);
        }
    }

    pub(crate) fn on_ingress_stats(&mut self, key: SessionKey, m: MediaIngressStats) {
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        if let Some(loss) = m.loss {
            self.stats.loss.observe(loss as f64);
        }
        if let Some(rtt) = m.rtt {
            self.stats.rtt.observe(rtt.as_secs_f64());
        }
        let clock = match s.inputs.iter().find(|t| t.mid == m.mid).map(|t| t.kind) {
            Some(MediaKind::Audio) => 48_000.0,
            _ => 90_000.0,
        };
        self.stats.jitter.observe(m.jitter as f64 / clock);
    }

    pub(crate) fn on_egress_stats(&mut self, key: SessionKey, m: MediaEgressStats) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let last = s.egress_nacks.insert(m.mid, m.nacks).unwrap_or(0);
        self.stats.nacks_received += m.nacks.saturating_sub(last);
        let Some(rtt) = m.rtt else {
            return;
        };
        self.stats.rtt.observe(rtt.as_secs_f64());
        let Some(out) = s.outputs.get_mut(&m.mid) else {
            return;
        };
        // Video only: audio is never kept for resends.
        let Some(current) = out.resend_window else {
            return;
        };
        let Some(window) = self.resend.adjust(current, rtt) else {
            return;
        };
        let mut api = s.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(m.mid, None) else {
            return;
        };
        set_resend_window(tx, window, self.config.resend_window_packets);
        out.resend_window = Some(window);
        self.stats.resend_window_changes += 1;
        tracing::debug!(
            session = %s.id,
            mid = %m.mid,
            rtt_ms = rtt.as_millis() as u64,
            window_ms = window.as_millis() as u64,
            "resend window follows the round trip"
        );
    }
}

/// Gives a subscriber's video stream a new, empty resend cache. 0.15 is
/// str0m's default cap on the share of resent bytes.
fn set_resend_window(tx: &mut str0m::rtp::StreamTx, window: Duration, packets: usize) {
    tx.set_rtx_cache(packets, window, Some(0.15));
}

/// Same codec and, where it matters for decoding, the same parameters.
fn same_format(a: &str0m::format::PayloadParams, b: &str0m::format::PayloadParams) -> bool {
    let (a, b) = (a.spec(), b.spec());
    if a.codec != b.codec || a.clock_rate != b.clock_rate {
        return false;
    }
    match a.codec {
        str0m::format::Codec::H264 => {
            a.format.packetization_mode.unwrap_or(0) == b.format.packetization_mode.unwrap_or(0)
                && a.format.profile_level_id.map(|p| p >> 8)
                    == b.format.profile_level_id.map(|p| p >> 8)
        }
        str0m::format::Codec::Vp9 => a.format.profile_id == b.format.profile_id,
        _ => true,
    }
}
