//! ECR private registry hosts: the standard, FIPS and dual-stack forms of
//! `<account>.dkr.ecr.<region>...`, parsed and generated.

/// True for an ECR private registry host (see [`parse_ecr_registry_host`] for the forms).
pub fn is_ecr_private_host(host: &str) -> bool {
    parse_ecr_private_host(host).is_some()
}

/// The account and region of an ECR private registry host.
pub fn parse_ecr_private_host(host: &str) -> Option<(String, String)> {
    parse_ecr_registry_host(host).map(|parsed| (parsed.account, parsed.region))
}

/// Which of ECR's registry endpoints a host is (AWS General Reference, "Amazon ECR endpoints and
/// quotas"; ECR user guide, "Getting started with IPv6" for the dual-stack `on.aws` hosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EcrEndpoint {
    /// `<account>.dkr.ecr.<region>.amazonaws.com[.cn]`
    #[default]
    Standard,
    /// `<account>.dkr.ecr-fips.<region>.amazonaws.com`
    Fips,
    /// `<account>.dkr-ecr.<region>.on.aws`: IPv4 and IPv6.
    DualStack,
    /// `<account>.dkr-ecr-fips.<region>.on.aws`
    FipsDualStack,
}

impl EcrEndpoint {
    /// The endpoint the AWS SDKs' `use_fips_endpoint` / `use_dualstack_endpoint` settings ask for.
    pub fn of_settings(fips: bool, dual_stack: bool) -> EcrEndpoint {
        match (fips, dual_stack) {
            (false, false) => EcrEndpoint::Standard,
            (true, false) => EcrEndpoint::Fips,
            (false, true) => EcrEndpoint::DualStack,
            (true, true) => EcrEndpoint::FipsDualStack,
        }
    }

    /// The registry host of `account` in `region` on this endpoint.
    pub fn host(self, account: &str, region: &str) -> String {
        let suffix = crate::policy::Partition::of_region(region).dns_suffix();
        match self {
            EcrEndpoint::Standard => format!("{account}.dkr.ecr.{region}.{suffix}"),
            EcrEndpoint::Fips => format!("{account}.dkr.ecr-fips.{region}.{suffix}"),
            EcrEndpoint::DualStack => format!("{account}.dkr-ecr.{region}.on.aws"),
            EcrEndpoint::FipsDualStack => format!("{account}.dkr-ecr-fips.{region}.on.aws"),
        }
    }
}

/// An ECR private registry host, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRegistryHost {
    pub account: String,
    pub region: String,
    pub endpoint: EcrEndpoint,
}

/// Parses `<12 digits>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]` and the dual-stack
/// `<12 digits>.dkr-ecr[-fips].<region>.on.aws`, end-anchored and case-insensitive.
pub fn parse_ecr_registry_host(host: &str) -> Option<EcrRegistryHost> {
    let host = host.to_ascii_lowercase();
    let (rest, dual_stack) = match host.strip_suffix(".on.aws") {
        Some(rest) => (rest, true),
        None => (
            host.strip_suffix(".amazonaws.com")
                .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?,
            false,
        ),
    };
    let (account, rest) = rest.split_once('.')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (plain, fips) = if dual_stack {
        ("dkr-ecr.", "dkr-ecr-fips.")
    } else {
        ("dkr.ecr.", "dkr.ecr-fips.")
    };
    let (region, is_fips) = match rest.strip_prefix(plain) {
        Some(region) => (region, false),
        None => (rest.strip_prefix(fips)?, true),
    };
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    region_ok.then(|| EcrRegistryHost {
        account: account.to_string(),
        region: region.to_string(),
        endpoint: EcrEndpoint::of_settings(is_fips, dual_stack),
    })
}

/// The registry host of an ECR private registry: `<account>.dkr.ecr.<region>.<partition DNS suffix>`.
pub fn ecr_registry_host(account: &str, region: &str) -> String {
    EcrEndpoint::Standard.host(account, region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fips_and_dual_stack_hosts_are_ecr_hosts_that_round_trip() {
        for (host, endpoint) in [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                EcrEndpoint::Standard,
            ),
            (
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                EcrEndpoint::Fips,
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.on.aws",
                EcrEndpoint::DualStack,
            ),
            (
                "123456789012.DKR-ECR-FIPS.us-east-2.on.aws",
                EcrEndpoint::FipsDualStack,
            ),
        ] {
            let parsed = parse_ecr_registry_host(host).unwrap_or_else(|| panic!("{host}"));
            assert_eq!(parsed.endpoint, endpoint, "{host}");
            assert_eq!(
                endpoint.host(&parsed.account, &parsed.region),
                host.to_ascii_lowercase()
            );
        }
        for not_ecr in [
            "123456789012.dkr-ecr.eu-west-1.on.aws.evil.io",
            "123456789012.dkr.ecr.eu-west-1.on.aws",
            "123456789012.ecr.eu-west-1.on.aws",
            "12345678901.dkr-ecr.eu-west-1.on.aws",
        ] {
            assert!(!is_ecr_private_host(not_ecr), "{not_ecr}");
        }
    }
}
