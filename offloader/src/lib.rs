//! Enclave's recording, transcription and live-caption job service. Not built yet: this crate only reserves its place in the workspace.
