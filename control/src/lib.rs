//! Enclave's control plane (chat, identity, storage, calls signaling). Not built yet: this crate only reserves its place in the workspace.

pub mod storage;
