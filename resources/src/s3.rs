//! The S3 object store (aws-sdk-s3): outputs at `s3://{bucket}/{prefix}/{key}`.
//!
//! Transient errors (timeouts, 5xx, throttling) are retried by the SDK's standard retry mode
//! with exponential backoff; what still fails becomes an [`ObjectStoreError::Remote`] that names
//! the operation and the object, never a credential. Custom endpoints (S3-compatible servers)
//! get path-style addressing and checksums only when required, which most S3 clones need.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::object_store::{ObjectStore, ObjectStoreError, validate_key};

/// Where and how to reach S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket (`S3_BUCKET_NAME`).
    pub bucket: String,
    /// A key prefix inside the bucket (`ROBO_ASSETS_S3_PREFIX`, default `robo-assets`).
    pub prefix: String,
    /// The region (`AWS_REGION`, default `us-east-1`).
    pub region: String,
    /// A custom endpoint for S3-compatible servers (`AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Attempts per request, the first included (transient errors only).
    pub max_attempts: u32,
}

impl S3Config {
    /// A configuration for `bucket` with the defaults.
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            prefix: "robo-assets".to_owned(),
            region: "us-east-1".to_owned(),
            endpoint: None,
            max_attempts: 4,
        }
    }
}

/// Objects in an S3 bucket under a prefix.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3ObjectStore {
    /// Builds a client from the standard AWS settings (credentials from the environment, profile,
    /// web identity, ECS or IMDS) and `config`.
    pub async fn connect(config: &S3Config) -> S3ObjectStore {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(config.region.clone()));
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        S3ObjectStore::with_sdk_config(aws_sdk_s3::config::Builder::from(&shared), config)
    }

    /// Builds the client from an SDK config builder (tests pass static credentials here).
    pub fn with_sdk_config(builder: aws_sdk_s3::config::Builder, config: &S3Config) -> S3ObjectStore {
        let mut builder = builder.retry_config(
            RetryConfig::standard()
                .with_max_attempts(config.max_attempts.max(1))
                .with_initial_backoff(Duration::from_millis(100)),
        );
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .endpoint_url(endpoint)
                .force_path_style(true)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        S3ObjectStore {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            prefix: config.prefix.trim_matches('/').to_owned(),
        }
    }

    fn full_key(&self, key: &str) -> Result<String, ObjectStoreError> {
        validate_key(key)?;
        Ok(if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) })
    }

    fn remote(&self, op: &'static str, key: &str, err: impl std::error::Error) -> ObjectStoreError {
        ObjectStoreError::Remote { op, uri: self.uri(key), message: DisplayErrorContext(&err).to_string() }
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<String, ObjectStoreError> {
        let full = self.full_key(key)?;
        // One PUT: S3 makes the object visible only once it is complete (atomic replace).
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.remote("put", key, e))?;
        Ok(self.uri(key))
    }

    async fn get(&self, key: &str) -> Result<Bytes, ObjectStoreError> {
        let full = self.full_key(key)?;
        let out = match self.client.get_object().bucket(&self.bucket).key(&full).send().await {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key) =>
            {
                return Err(ObjectStoreError::NotFound { uri: self.uri(key) });
            }
            Err(e) => return Err(self.remote("get", key, e)),
        };
        let data = out.body.collect().await.map_err(|e| self.remote("get", key, e))?;
        Ok(data.into_bytes())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectStoreError> {
        let root = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{root}{prefix}"))
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.remote("list", prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(&root)) {
                    keys.push(key.to_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn uri(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}/{key}", self.bucket)
        } else {
            format!("s3://{}/{}/{key}", self.bucket, self.prefix)
        }
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests;
