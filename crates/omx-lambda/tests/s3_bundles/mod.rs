//! Builder sources in moto's S3: a bucket holding a bundle's objects (path-style, as the
//! emulator is reached by address).

use omx_aws::testing::emulator_config;
use omx_testenv::Moto;

/// Creates `bucket` in `moto` and puts `objects` (`(key, body)`) into it.
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
