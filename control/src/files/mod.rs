//! Files: what members upload into a channel and attach to posts.
//!
//! # Writes are ordered so a crash loses nothing and strands nothing
//!
//! 1. The upload streams the bytes to the object store under a fresh
//!    random id (`<key_prefix><file id>/original`, and `thumbnail` and
//!    `preview` for images). A failed or oversized upload stores nothing.
//! 2. Then the `files` row is committed, not yet attached to a post.
//! 3. A post takes its files (`file_ids`) in the transaction that creates
//!    it: the post and its attachments commit together, and a file only
//!    ever belongs to one post.
//!
//! A crash after 1 leaves objects with no row; after 2, an upload no post
//! uses. No step can leave a row or a post naming a missing object.
//! [`cleanup`] removes both leftovers, on one node at a time.
//!
//! [`kind`] reads the type from the bytes, [`name`] makes file names safe,
//! [`thumbnail`] renders images, [`link`] signs short-lived download links
//! for the local store (S3 presigns its own).

pub mod cleanup;
pub mod kind;
pub mod link;
pub mod name;
pub mod thumbnail;

use std::sync::Arc;

use crate::config::Config;
use crate::storage::{LocalStore, ObjectKey, ObjectStore, S3Store, StorageError};

/// The store the configuration names. Touches neither disk nor network:
/// the local store makes its folders on first use.
pub fn store_from_config(config: &Config) -> Result<Arc<dyn ObjectStore>, StorageError> {
    Ok(match &config.storage.s3 {
        Some(s3) => Arc::new(S3Store::new(&s3.to_store_config())?),
        None => Arc::new(LocalStore::lazy(config.local_store_dir())),
    })
}

/// The objects of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Original,
    Thumbnail,
    Preview,
}

/// Where `part` of file `id` lives. Ids are control's own base32 and the
/// prefix is validated at start-up, so this cannot fail on a real id.
pub fn object_key(config: &Config, id: &str, part: Part) -> Result<ObjectKey, StorageError> {
    let leaf = match part {
        Part::Original => "original",
        Part::Thumbnail => "thumbnail",
        Part::Preview => "preview",
    };
    ObjectKey::new(format!("{}{id}/{leaf}", config.storage.key_prefix))
}
