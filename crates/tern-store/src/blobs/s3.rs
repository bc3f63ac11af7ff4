//! Bodies in an S3-compatible bucket, through the `object_store` crate.
//!
//! Each body is one object, `PREFIX/ab/cd/abcd…` (the layout of the files
//! backend, so either can be copied into the other). A
//! put returns when the service has acknowledged the PUT, which for S3 and
//! the services that copy its API means the object is stored durably.

use super::{Blobs, check_key};
use crate::{Result, StoreError};
use async_trait::async_trait;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use std::sync::Arc;
use std::time::SystemTime;
use tern_core::config::BlobsConfig;

/// Message bodies in an S3-compatible bucket.
pub struct S3Blobs {
    store: AmazonS3,
    prefix: String,
    describe: String,
}

impl S3Blobs {
    /// A client for the bucket `[blobs]` names (no request is made yet).
    /// Empty credentials are taken from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …).
    pub fn new(s: &BlobsConfig) -> Result<Self> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&s.bucket)
            .with_virtual_hosted_style_request(!s.path_style);
        if !s.region.is_empty() {
            b = b.with_region(&s.region);
        }
        if !s.endpoint.is_empty() {
            b = b
                .with_endpoint(&s.endpoint)
                .with_allow_http(s.endpoint.starts_with("http://"));
        }
        if !s.access_key_id.is_empty() {
            b = b.with_access_key_id(&s.access_key_id);
        }
        if !s.secret_access_key.is_empty() {
            b = b.with_secret_access_key(&s.secret_access_key);
        }
        let store = b
            .build()
            .map_err(|e| StoreError::Invalid(format!("[blobs] settings: {e}")))?;
        let prefix = match s.prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        let place = if s.endpoint.is_empty() {
            "AWS S3"
        } else {
            &s.endpoint
        };
        Ok(Self {
            store,
            describe: format!("bucket {} at {place}", s.bucket),
            prefix,
        })
    }

    fn path(&self, hash: &str) -> Result<ObjectPath> {
        check_key(hash)?;
        Ok(ObjectPath::from(format!(
            "{}{}",
            self.prefix,
            super::relative_name(hash)
        )))
    }
}

fn s3_error(what: &str, e: object_store::Error) -> StoreError {
    StoreError::Blob(format!("{what}: {e}"))
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(&self, hash: &str, data: Arc<Vec<u8>>) -> Result<()> {
        let path = self.path(hash)?;
        let payload = PutPayload::from(bytes::Bytes::from_owner(ArcBytes(data)));
        self.store
            .put(&path, payload)
            .await
            .map(|_| ())
            .map_err(|e| s3_error("storing a message body", e))
    }

    async fn get(&self, hash: &str) -> Result<Vec<u8>> {
        let path = self.path(hash)?;
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::NotFound(format!("message body {hash}")));
            }
            Err(e) => return Err(s3_error("reading a message body", e)),
        };
        got.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| s3_error("reading a message body", e))
    }

    async fn delete(&self, hash: &str) -> Result<()> {
        let path = self.path(hash)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error("deleting a message body", e)),
        }
    }

    async fn written_at(&self, hash: &str) -> Result<Option<SystemTime>> {
        let path = self.path(hash)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(SystemTime::from(meta.last_modified))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error("looking up a message body", e)),
        }
    }

    async fn list_shard(&self, shard: &str) -> Result<Vec<(String, SystemTime)>> {
        use futures_util::TryStreamExt;
        use object_store::ObjectStore;
        super::check_shard(shard)?;
        let prefix = ObjectPath::from(format!("{}{shard}", self.prefix));
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| s3_error("listing message bodies", e))?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                check_key(&name)
                    .is_ok()
                    .then(|| (name, SystemTime::from(m.last_modified)))
            })
            .collect())
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// Lets a shared body go out as the request's payload without a copy.
struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
