//! The AWS side of the Lambda tests: builder sources in moto's S3, repositories in moto's ECR
//! and the CreateRepository events EventBridge delivers for them, and the `docker-registry` that
//! serves ECR's registry API (behind moto's ECR token, as basic auth).

use omx_aws::testing::{emulator_config, REGION};
use omx_testenv::{moto_ecr_password, Moto, Registry, MOTO_ACCOUNT_ID};
use serde_json::{json, Value};

/// Creates repository `name` in moto's ECR.
pub async fn create_repository(moto: &Moto, name: &str) {
    let config = emulator_config(&moto.endpoint()).await;
    aws_sdk_ecr::Client::new(&config)
        .create_repository()
        .repository_name(name)
        .send()
        .await
        .unwrap();
}

/// What the EventBridge rule delivers when the pull-through cache created repository `name`
/// (a CloudTrail service event: the name is in `responseElements`).
pub fn pull_through_cache_created(name: &str) -> Value {
    json!({
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "source": "aws.ecr",
        "detail-type": "AWS Service Event via CloudTrail", "account": MOTO_ACCOUNT_ID,
        "region": REGION, "time": "2026-01-01T00:00:00Z", "resources": [],
        "detail": {"eventSource": "ecr.amazonaws.com", "eventName": "CreateRepository",
                   "eventType": "AwsServiceEvent",
                   "responseElements": {"repository": {"repositoryName": name}}}
    })
}

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
