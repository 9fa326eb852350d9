//! SDP negotiation of signaled sessions.
//!
//! The client makes the first offer (a receive-only client offers a data
//! channel). Afterwards rtcd offers whenever the set of tracks a session
//! should receive changes. On glare (a client offer while rtcd's offer is
//! outstanding) rtcd yields: str0m rolls its pending offer back, rtcd
//! answers the client, then offers its changes again. Offers are numbered;
//! an answer to a superseded offer is ignored.

use std::time::Instant;

use signaling::SessionId;
use signaling::media::{Sdp, TrackDeclaration};
use signaling::rtcd::FromRtcd;
use str0m::change::SdpAnswer;
use str0m::ice::IceCreds;
use str0m::media::{Direction, MediaAdded, MediaChanged, MediaKind};

use crate::demux::{SessionKey, new_ice_password, new_ufrag};
use crate::session::{InTrack, Layer, OutTrack, PendingOffer, SessionKind};
use crate::sfu::{Action, CoreError, Sfu, parse_offer};

impl Sfu {
    pub(crate) fn client_offer(
        &mut self,
        now: Instant,
        id: &SessionId,
        sdp: &str,
        tracks: &[TrackDeclaration],
    ) -> Result<(), CoreError> {
        let key = self.key_of(id)?;
        let offer = parse_offer(&without_send_side_extensions(sdp, "recvonly"))?;
        let s = self.sessions.get_mut(&key).expect("key_of checked");
        if s.kind != SessionKind::Signaled {
            return Err(CoreError::BadSdp(
                "WHIP/WHEP sessions are not renegotiated".into(),
            ));
        }
        for t in tracks {
            s.declared.insert(t.mid.clone(), t.source);
        }
        if s.pending.take().is_some() {
            s.dirty = true;
        }
        let answer = s
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| CoreError::BadSdp(e.to_string()))?;
        let first = !s.remote_described;
        s.remote_described = true;
        let mut sdp = answer.to_sdp_string();
        // The client restarted ICE (its network changed): str0m answered
        // with fresh random credentials; swap in ones that name this worker.
        let current = s.rtc.direct_api().local_ice_credentials();
        if current.ufrag != s.ufrag {
            sdp = self.adopt_worker_credentials(key, &current, sdp);
        }
        self.emit(FromRtcd::Answer {
            session_id: id.clone(),
            answer: Sdp {
                sdp,
                negotiation: 0,
            },
        });
        self.drain(now, key);
        let s = self
            .sessions
            .get_mut(&key)
            .expect("drain keeps live sessions");
        if first || s.dirty {
            self.actions.push_back(Action::Renegotiate(key));
        }
        Ok(())
    }

    pub(crate) fn client_answer(
        &mut self,
        now: Instant,
        id: &SessionId,
        sdp: &str,
        negotiation: u64,
    ) -> Result<(), CoreError> {
        let key = self.key_of(id)?;
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| CoreError::BadSdp(e.to_string()))?;
        let s = self.sessions.get_mut(&key).expect("key_of checked");
        let Some(pending) = s.pending.take_if(|p| p.negotiation == negotiation) else {
            tracing::debug!(session = %id, negotiation, "ignoring answer to a superseded offer");
            return Ok(());
        };
        let restart = pending.ice_restart.clone();
        if let Err(e) = s.rtc.sdp_api().accept_answer(pending.offer, answer) {
            // The offer is gone either way; offer the changes again.
            s.dirty = true;
            self.actions.push_back(Action::Renegotiate(key));
            return Err(CoreError::BadSdp(e.to_string()));
        }
        if let Some(creds) = restart {
            // str0m applied its own restart credentials; ours were offered.
            s.rtc.direct_api().set_local_ice_credentials(creds);
        }
        let unbound: Vec<_> = pending
            .stopped
            .iter()
            .filter_map(|mid| {
                s.outputs
                    .remove(mid)
                    .and_then(|o| o.publisher)
                    .map(|p| (*mid, p))
            })
            .collect();
        for (mid, (p, t)) in unbound {
            if let Some(track) = self.sessions.get_mut(&p).and_then(|p| p.inputs.get_mut(t)) {
                track.subscribers.retain(|(k, m)| !(*k == key && *m == mid));
            }
        }
        for (mid, publisher, track) in pending.added {
            let Some(s) = self.sessions.get_mut(&key) else {
                break;
            };
            let kind = s
                .rtc
                .media(mid)
                .map(|m| m.kind())
                .unwrap_or(MediaKind::Video);
            s.outputs.insert(mid, OutTrack::new(kind, None, true));
            self.subscribe(key, mid, publisher, track);
        }
        self.drain(now, key);
        if self.sessions.get(&key).is_some_and(|s| s.dirty) {
            self.actions.push_back(Action::Renegotiate(key));
        }
        Ok(())
    }

    /// Offers the session the tracks it should receive and stops the ones
    /// it should not, unless a negotiation is already under way (then it
    /// runs when that one completes).
    pub(crate) fn renegotiate(&mut self, _now: Instant, key: SessionKey) {
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        if s.kind != SessionKind::Signaled || !s.remote_described {
            return;
        }
        if s.pending.is_some() {
            self.sessions.get_mut(&key).expect("present").dirty = true;
            return;
        }
        let mut wanted = Vec::new();
        if s.permissions.subscribe
            && let Some(call) = self.calls.get(&s.call)
        {
            for pk in &call.sessions {
                if *pk == key {
                    continue;
                }
                let p = &self.sessions[pk];
                for (ti, t) in p.inputs.iter().enumerate() {
                    if t.live() {
                        wanted.push((*pk, ti, t.kind, p.id.clone(), t.source));
                    }
                }
            }
        }
        let have: Vec<(str0m::media::Mid, Option<(SessionKey, usize)>)> = s
            .outputs
            .iter()
            .filter(|(_, o)| o.ours)
            .map(|(m, o)| (*m, o.publisher))
            .collect();
        let to_add: Vec<_> = wanted
            .iter()
            .filter(|(pk, ti, ..)| !have.iter().any(|(_, p)| *p == Some((*pk, *ti))))
            .cloned()
            .collect();
        let to_stop: Vec<str0m::media::Mid> = have
            .iter()
            .filter(|(_, p)| match p {
                None => true,
                Some((pk, ti)) => !wanted.iter().any(|(k, t, ..)| k == pk && t == ti),
            })
            .map(|(m, _)| *m)
            .collect();
        let s = self.sessions.get_mut(&key).expect("present");
        s.dirty = false;
        if to_add.is_empty() && to_stop.is_empty() {
            return;
        }
        let mut api = s.rtc.sdp_api();
        let mut added = Vec::new();
        for (pk, ti, kind, pid, source) in to_add {
            let track_id = serde_source(source);
            let mid = api.add_media(
                kind,
                Direction::SendOnly,
                Some(pid.to_string()),
                Some(format!("{pid}-{track_id}")),
                None,
            );
            added.push((mid, pk, ti));
        }
        for mid in &to_stop {
            api.stop_media(*mid);
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        let negotiation = s.next_negotiation;
        s.next_negotiation += 1;
        s.pending = Some(PendingOffer {
            negotiation,
            offer: pending,
            added,
            stopped: to_stop,
            ice_restart: None,
        });
        let session_id = s.id.clone();
        self.emit(FromRtcd::Offer {
            session_id,
            offer: Sdp {
                sdp: without_send_side_extensions(&offer.to_sdp_string(), "sendonly"),
                negotiation,
            },
        });
    }

    pub(crate) fn ice_restart(&mut self, _now: Instant, id: &SessionId) -> Result<(), CoreError> {
        let key = self.key_of(id)?;
        let s = self.sessions.get_mut(&key).expect("key_of checked");
        if s.kind != SessionKind::Signaled || !s.remote_described {
            return Err(CoreError::BadSdp(
                "ICE restart needs a negotiated, signaled session".into(),
            ));
        }
        // A pending offer is replaced: its changes are offered again below.
        if s.pending.take().is_some() {
            s.dirty = true;
        }
        let mut api = s.rtc.sdp_api();
        let theirs = api.ice_restart(true);
        let Some((offer, pending)) = api.apply() else {
            return Ok(());
        };
        // str0m picks random credentials; offer ones that name this worker
        // instead, and install them once the client answers.
        let ours = self.worker_credentials(key);
        let sdp = offer
            .to_sdp_string()
            .replace(&theirs.ufrag, &ours.ufrag)
            .replace(&theirs.pass, &ours.pass);
        let s = self.sessions.get_mut(&key).expect("present");
        let negotiation = s.next_negotiation;
        s.next_negotiation += 1;
        s.pending = Some(PendingOffer {
            negotiation,
            offer: pending,
            added: Vec::new(),
            stopped: Vec::new(),
            ice_restart: Some(ours),
        });
        self.emit(FromRtcd::Offer {
            session_id: id.clone(),
            offer: Sdp { sdp, negotiation },
        });
        Ok(())
    }

    /// New local ICE credentials whose ufrag names this worker, registered
    /// for routing.
    fn worker_credentials(&mut self, key: SessionKey) -> IceCreds {
        let creds = IceCreds {
            ufrag: new_ufrag(self.config.worker),
            pass: new_ice_password(),
        };
        self.register_ufrag(creds.ufrag.clone(), key);
        if let Some(s) = self.sessions.get_mut(&key) {
            s.ufrags.push(creds.ufrag.clone());
            s.ufrag = creds.ufrag.clone();
        }
        creds
    }

    /// Replaces the credentials str0m chose (`current`) in its SDP and in
    /// the ICE agent with worker-named ones.
    fn adopt_worker_credentials(
        &mut self,
        key: SessionKey,
        current: &IceCreds,
        sdp: String,
    ) -> String {
        let ours = self.worker_credentials(key);
        if let Some(s) = self.sessions.get_mut(&key) {
            s.rtc.direct_api().set_local_ice_credentials(ours.clone());
        }
        sdp.replace(&current.ufrag, &ours.ufrag)
            .replace(&current.pass, &ours.pass)
    }

    pub(crate) fn on_media_added(&mut self, key: SessionKey, m: MediaAdded) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        if m.direction.is_receiving() {
            if s.inputs.iter().any(|t| t.mid == m.mid) {
                return;
            }
            let source = s.source_for(m.mid, m.kind);
            let layers = match &m.simulcast {
                Some(sim) if !sim.recv.is_empty() => {
                    sim.recv.iter().map(|l| Layer::new(Some(l.rid))).collect()
                }
                _ => Vec::new(),
            };
            s.inputs.push(InTrack {
                mid: m.mid,
                kind: m.kind,
                source,
                layers,
                subscribers: Vec::new(),
                active: true,
                flowing: false,
                formats: Vec::new(),
            });
            let session_id = s.id.clone();
            let call = s.call.clone();
            self.emit(FromRtcd::Track {
                session_id,
                source,
                active: true,
            });
            self.track_set_changed(key, &call);
        } else if m.direction.is_sending() && matches!(s.kind, SessionKind::Whep { .. }) {
            s.outputs.insert(m.mid, OutTrack::new(m.kind, None, false));
            let call = s.call.clone();
            self.actions.push_back(Action::BindPlayers(call));
        }
    }

    pub(crate) fn on_media_changed(&mut self, key: SessionKey, m: MediaChanged) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let Some(track) = s.inputs.iter_mut().find(|t| t.mid == m.mid) else {
            return;
        };
        let active = m.direction.is_receiving();
        if track.active == active {
            return;
        }
        track.active = active;
        let source = track.source;
        let session_id = s.id.clone();
        let call = s.call.clone();
        self.emit(FromRtcd::Track {
            session_id,
            source,
            active,
        });
        self.track_set_changed(key, &call);
    }

    /// Everyone else in the call may now receive a different set of tracks.
    pub(crate) fn track_set_changed(&mut self, key: SessionKey, call: &signaling::CallId) {
        if let Some(c) = self.calls.get(call) {
            for other in &c.sessions {
                if *other != key {
                    self.actions.push_back(Action::Renegotiate(*other));
                }
            }
        }
        self.actions.push_back(Action::BindPlayers(call.clone()));
    }
}

/// Header extensions that only feed the sender's bandwidth estimation:
/// rtcd runs none, yet str0m stamps every packet it sends on an m-line that
/// negotiated one (and counts each for transport-wide feedback).
const SEND_SIDE_ONLY_EXTENSIONS: [&str; 2] = [
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
];

/// `sdp` without the `a=extmap` lines of [`SEND_SIDE_ONLY_EXTENSIONS`] in
/// the m-sections marked `a={direction}`: the ones on which rtcd sends and
/// never receives ("recvonly" in a client's offer, "sendonly" in rtcd's).
/// The answer can only repeat what the offer holds, so such m-lines never
/// negotiate them and str0m writes neither on their packets. Where rtcd
/// receives, transport-wide feedback stays: a browser's own bandwidth
/// estimate for what it publishes depends on it.
pub(crate) fn without_send_side_extensions(sdp: &str, direction: &str) -> String {
    let marker = format!("a={direction}");
    let mut out = String::with_capacity(sdp.len());
    let mut rest = sdp;
    while !rest.is_empty() {
        // One section: up to the next line that starts an m-section.
        let end = rest.find("\nm=").map_or(rest.len(), |i| i + 1);
        let (section, tail) = rest.split_at(end);
        rest = tail;
        let sends_only =
            section.starts_with("m=") && section.lines().any(|l| l.trim_end() == marker);
        if !sends_only {
            out.push_str(section);
            continue;
        }
        for line in section.split_inclusive('\n') {
            let dropped = line.starts_with("a=extmap:")
                && SEND_SIDE_ONLY_EXTENSIONS
                    .iter()
                    .any(|uri| line.trim_end().ends_with(uri));
            if !dropped {
                out.push_str(line);
            }
        }
    }
    out
}

fn serde_source(source: signaling::media::TrackSource) -> &'static str {
    use signaling::media::TrackSource::*;
    match source {
        Microphone => "microphone",
        Camera => "camera",
        ScreenVideo => "screen_video",
        ScreenAudio => "screen_audio",
    }
}

#[cfg(test)]
mod tests {
    use super::without_send_side_extensions;

    const OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendonly\r\n\
a=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:1\r\n\
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=recvonly\r\n\
a=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn only_the_marked_sections_lose_only_the_send_side_extensions() {
        let out = without_send_side_extensions(OFFER, "recvonly");
        let (audio, video) = out.split_at(out.find("m=video").unwrap());
        assert!(audio.starts_with("v=0\r\n") && audio.contains("a=group:BUNDLE 0 1\r\n"));
        assert_eq!(audio, &OFFER[..OFFER.find("m=video").unwrap()]);
        assert_eq!(
            video,
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:1\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=recvonly\r\n\
a=rtpmap:96 VP8/90000\r\n"
        );
        let out = without_send_side_extensions(OFFER, "sendonly");
        assert!(!out[..out.find("m=video").unwrap()].contains("abs-send-time"));
        assert!(out.contains("a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"));
        assert_eq!(
            out.matches("transport-wide-cc").count(),
            1,
            "video keeps it"
        );
    }

    #[test]
    fn text_without_sections_is_left_alone() {
        for s in ["", "\n", "m=", "x\nm=\n", "é\nm=audio\na=recvonly\n"] {
            assert_eq!(without_send_side_extensions(s, "recvonly"), s);
        }
    }
}
