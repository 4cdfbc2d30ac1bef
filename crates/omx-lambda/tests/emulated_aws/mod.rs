//! The AWS side of the Lambda tests: builder sources in moto's S3, and the `docker-registry`
//! that serves ECR's registry API (behind moto's ECR token, as basic auth).

use omx_aws::testing::emulator_config;
use omx_testenv::{moto_ecr_password, Moto, Registry, MOTO_ACCOUNT_ID};

/// A registry standing in for ECR's registry API: it takes the password moto's
/// GetAuthorizationToken hands out for the account.
pub fn ecr_registry() -> Registry {
    Registry::builder()
        .basic_auth("AWS", moto_ecr_password(MOTO_ACCOUNT_ID))
        .start()
}

/// Creates `bucket` in `moto` and puts `objects` (`(key, body)`) into it, path-style (the
/// emulator is reached by address).
pub async fn put_bundle(moto: &Moto, bucket: &str, objects: &[(&str, &str)]) {
    let config = emulator_config(&moto.endpoint()).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    for (key, body) in objects {
        s3.put_object()
            .bucket(bucket)
            .key(*key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
}
