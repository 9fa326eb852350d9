//! A call: the sessions that hear and see each other.

use crate::demux::SessionKey;

#[derive(Debug)]
pub(crate) struct Call {
    /// In join order; small (a call is tens to a thousand sessions).
    pub sessions: Vec<SessionKey>,
}

impl Call {
    pub fn new() -> Self {
        Call {
            sessions: Vec::new(),
        }
    }
}
