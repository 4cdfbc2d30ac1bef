//! S3, read side: listing a prefix and streaming objects, for build bundles kept in a bucket.

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::endpoint::{self, Endpoint};
use crate::error::AwsError;

/// An S3 client of one region.
///
/// Credentials and endpoints come from the SDK configuration (`AWS_ENDPOINT_URL_S3` or
/// `AWS_ENDPOINT_URL`, or a profile's `endpoint_url`). When an endpoint is overridden, requests use
/// path-style addressing (`http://endpoint/bucket/key`): emulators and most S3-compatible stores
/// have no per-bucket DNS names.
#[derive(Debug, Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    endpoint: Endpoint,
}

/// One object found under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    /// The full key (prefix included).
    pub key: String,
    /// Size in bytes as listed.
    pub size: u64,
}

impl S3 {
    /// A client for `config`'s region, credentials and endpoint.
    pub fn new(config: &SdkConfig) -> S3 {
        let endpoint = Endpoint::from_config(&endpoint::S3, config);
        let mut builder = aws_sdk_s3::config::Builder::from(config);
        if endpoint.configured {
            builder = builder.force_path_style(true);
        }
        S3 {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            endpoint,
        }
    }

    /// Wraps an existing SDK client.
    pub fn from_client(client: aws_sdk_s3::Client) -> S3 {
        let region = client.config().region().map(|region| region.to_string());
        S3 {
            endpoint: Endpoint::regional(&endpoint::S3, region.as_deref()),
            client,
        }
    }

    /// Every object whose key starts with `prefix`, in key order, following `ListObjectsV2`
    /// continuation tokens through all pages.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<S3Object>, AwsError> {
        self.list_objects_in_pages(bucket, prefix, None).await
    }

    /// [`S3::list_objects`] asking for at most `page_size` keys per page (S3's default: 1000).
    async fn list_objects_in_pages(
        &self,
        bucket: &str,
        prefix: &str,
        page_size: Option<i32>,
    ) -> Result<Vec<S3Object>, AwsError> {
        const OPERATION: &str = "ListObjectsV2";
        let target = format!("s3://{bucket}/{prefix}");
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_max_keys(page_size)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(|error| AwsError::from_sdk(&self.endpoint, OPERATION, &target, error))?;
            for object in page.contents() {
                let key = object.key().ok_or_else(|| {
                    AwsError::unexpected(OPERATION, &target, "an object without key")
                })?;
                let size = object.size().unwrap_or(0);
                let size = u64::try_from(size).map_err(|_| {
                    AwsError::unexpected(OPERATION, &target, format!("{key} has size {size}"))
                })?;
                objects.push(S3Object {
                    key: key.to_string(),
                    size,
                });
            }
        }
        Ok(objects)
    }

    /// Starts downloading an object; the body is read chunk by chunk with
    /// [`ObjectReader::next_chunk`], so any size streams through flat memory.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<ObjectReader, AwsError> {
        let target = format!("s3://{bucket}/{key}");
        let output = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(&self.endpoint, "GetObject", &target, error))?;
        Ok(ObjectReader {
            size: output
                .content_length()
                .and_then(|length| u64::try_from(length).ok()),
            body: output.body,
            target,
        })
    }
}

/// The body of an object being downloaded.
#[derive(Debug)]
pub struct ObjectReader {
    body: ByteStream,
    size: Option<u64>,
    target: String,
}

impl ObjectReader {
    /// The `Content-Length` S3 announced (what arrives is what counts: callers enforcing limits
    /// count the chunks).
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The next piece of the body, `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, AwsError> {
        match self.body.next().await {
            None => Ok(None),
            Some(Ok(chunk)) => Ok(Some(chunk)),
            Some(Err(error)) => Err(AwsError::Request {
                operation: "GetObject",
                target: self.target.clone(),
                reason: format!("the download broke: {error}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::{BehaviorVersion, Region};
    use omx_testenv::Moto;

    async fn moto_config(moto: &Moto) -> SdkConfig {
        crate::testing::emulator_config(&moto.endpoint()).await
    }

    async fn put(s3: &S3, bucket: &str, key: &str, body: Vec<u8>) {
        s3.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("PutObject");
    }

    #[tokio::test]
    async fn an_endpoint_override_means_path_style() {
        let plain = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .load()
            .await;
        let overridden = plain
            .to_builder()
            .endpoint_url("http://127.0.0.1:1")
            .build();
        assert!(Endpoint::from_config(&endpoint::S3, &overridden).configured);
        // Only when nothing in the environment names an endpoint is the plain config plain.
        if std::env::var_os("AWS_ENDPOINT_URL").is_none()
            && std::env::var_os("AWS_ENDPOINT_URL_S3").is_none()
        {
            assert!(!Endpoint::from_config(&endpoint::S3, &plain).configured);
        }
    }

    #[tokio::test]
    async fn lists_every_page_and_streams_objects_from_moto() {
        let Some(moto) = Moto::try_start() else {
            return;
        };
        // Path-style addressing is what makes these requests reach moto at all: a virtual-hosted
        // request would go to `bundles.127.0.0.1`.
        let s3 = S3::new(&moto_config(&moto).await);
        s3.client
            .create_bucket()
            .bucket("bundles")
            .send()
            .await
            .unwrap();
        let big: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        put(&s3, "bundles", "tool/Dockerfile", b"FROM x\n".to_vec()).await;
        put(&s3, "bundles", "tool/data/big.bin", big.clone()).await;
        put(&s3, "bundles", "tool/data/small.txt", b"s".to_vec()).await;
        put(&s3, "bundles", "toolbox/other", b"o".to_vec()).await;

        let listed = s3
            .list_objects_in_pages("bundles", "tool/", Some(1))
            .await
            .unwrap();
        let keys: Vec<(&str, u64)> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
        assert_eq!(
            keys,
            [
                ("tool/Dockerfile", 7),
                ("tool/data/big.bin", big.len() as u64),
                ("tool/data/small.txt", 1)
            ]
        );
        assert_eq!(s3.list_objects("bundles", "tool/").await.unwrap(), listed);

        let mut reader = s3.get_object("bundles", "tool/data/big.bin").await.unwrap();
        assert_eq!(reader.size(), Some(big.len() as u64));
        let mut received = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = reader.next_chunk().await.unwrap() {
            received.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert_eq!(received, big);
        assert!(chunks > 1, "the body arrives in pieces");
    }

    #[tokio::test]
    async fn missing_buckets_and_keys_are_errors_naming_them() {
        let Some(moto) = Moto::try_start() else {
            return;
        };
        let s3 = S3::new(&moto_config(&moto).await);
        let error = s3.list_objects("nowhere", "x/").await.unwrap_err();
        assert_eq!(error.code(), Some("NoSuchBucket"), "{error}");
        assert!(error.to_string().contains("s3://nowhere/x/"), "{error}");
        s3.client
            .create_bucket()
            .bucket("here")
            .send()
            .await
            .unwrap();
        let error = s3.get_object("here", "missing.zip").await.unwrap_err();
        assert_eq!(error.code(), Some("NoSuchKey"), "{error}");
        assert!(
            error.to_string().contains("s3://here/missing.zip"),
            "{error}"
        );
    }
}
