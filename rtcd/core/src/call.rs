//! A call: the sessions that hear and see each other.

use crate::demux::SessionKey;

#[derive(Debug)]
pub(crate) struct Call {
    /// In join order; small (a call is tens to a thousand sessions).
    pub sessions: Vec<SessionKey>,
    /// Opened by a WHIP/WHEP request rather than by control: ends when its
    /// last session leaves.
    pub ephemeral: bool,
}

impl Call {
    pub fn new(ephemeral: bool) -> Self {
        Call {
            sessions: Vec::new(),
            ephemeral,
        }
    }
}
