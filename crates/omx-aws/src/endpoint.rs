//! Which AWS service an adapter talks to and where: what an error names when the endpoint cannot
//! be reached, and the IAM prefix of the actions its calls need.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_types::service_config::ServiceConfigKey;

/// One AWS service as this crate uses it.
#[derive(Debug)]
pub(crate) struct Service {
    /// The SDK's service id (`AWS_ENDPOINT_URL_<ID>`, a profile's `services` section).
    id: &'static str,
    /// The IAM action prefix (`ecr:CreateRepository`).
    pub(crate) iam_prefix: &'static str,
    /// The first label of the regional endpoint host (`api.ecr.<region>.amazonaws.com`).
    host_prefix: &'static str,
}

pub(crate) const ECR: Service = Service {
    id: "ECR",
    iam_prefix: "ecr",
    host_prefix: "api.ecr",
};
pub(crate) const STS: Service = Service {
    id: "STS",
    iam_prefix: "sts",
    host_prefix: "sts",
};
pub(crate) const S3: Service = Service {
    id: "S3",
    iam_prefix: "s3",
    host_prefix: "s3",
};
pub(crate) const CODEBUILD: Service = Service {
    id: "CodeBuild",
    iam_prefix: "codebuild",
    host_prefix: "codebuild",
};
pub(crate) const SECRETS_MANAGER: Service = Service {
    id: "Secrets Manager",
    iam_prefix: "secretsmanager",
    host_prefix: "secretsmanager",
};
pub(crate) const STEP_FUNCTIONS: Service = Service {
    id: "SFN",
    iam_prefix: "states",
    host_prefix: "states",
};

/// A service and the URL its requests go to.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) service: &'static Service,
    pub(crate) url: Arc<str>,
    /// The URL was configured (`AWS_ENDPOINT_URL*`, a profile), so it does not follow the region.
    pub(crate) configured: bool,
}

impl Endpoint {
    /// Where `config` sends `service`'s requests: the sources the SDK reads, in its order, else
    /// AWS's regional endpoint.
    pub(crate) fn from_config(service: &'static Service, config: &SdkConfig) -> Endpoint {
        let key = ServiceConfigKey::builder()
            .service_id(service.id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .expect("service id, env and profile are set");
        let configured = config
            .service_config()
            .and_then(|service_config| service_config.load_config(key))
            .or_else(|| config.endpoint_url().map(str::to_string));
        match configured {
            Some(url) => Endpoint {
                service,
                url: url.into(),
                configured: true,
            },
            None => Endpoint::regional(service, config.region().map(|region| region.as_ref())),
        }
    }

    /// AWS's endpoint of `service` in `region`.
    pub(crate) fn regional(service: &'static Service, region: Option<&str>) -> Endpoint {
        let url = match region {
            Some(region) => format!("https://{}.{region}.amazonaws.com", service.host_prefix),
            None => format!("the {} endpoint", service.id),
        };
        Endpoint {
            service,
            url: url.into(),
            configured: false,
        }
    }

    /// This endpoint for a client of another region: a configured URL stays.
    pub(crate) fn in_region(&self, region: &str) -> Endpoint {
        if self.configured {
            self.clone()
        } else {
            Endpoint::regional(self.service, Some(region))
        }
    }
}
