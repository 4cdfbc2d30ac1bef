//! Property tests for [`RegistryHost`], which reads registry spellings from config files, command
//! lines and servers: arbitrary text never panics, and every decoration a spelling may carry
//! (scheme, case, trailing slash, path, surrounding whitespace) names the same registry.

use omx_core::RegistryHost;
use proptest::prelude::*;

/// `host[:port]` as references and settings name registries.
fn host() -> impl Strategy<Value = String> {
    ("[a-z0-9][a-z0-9.-]{0,20}", proptest::option::of(1u16..)).prop_map(|(name, port)| match port {
        Some(port) => format!("{name}:{port}"),
        None => name,
    })
}

proptest! {
    #[test]
    fn any_text_reads_as_one_lower_case_host_without_path(text in any::<String>()) {
        let parsed = RegistryHost::new(&text);
        let canonical = parsed.as_str();
        prop_assert!(!canonical.contains('/'), "{canonical:?}");
        prop_assert!(!canonical.chars().any(|c| c.is_ascii_uppercase()), "{canonical:?}");
        let _ = (parsed.is_loopback(), parsed.ecr(), parsed.credential_key(), parsed.api_host());
    }

    #[test]
    fn decorations_name_the_same_registry(
        host in host(),
        scheme in prop_oneof![Just(""), Just("https://"), Just("http://")],
        tail in prop_oneof![Just(""), Just("/"), Just("/v2/"), Just("/v1/")],
        upper in any::<bool>(),
    ) {
        let plain = RegistryHost::new(&host);
        let cased = if upper { host.to_ascii_uppercase() } else { host.clone() };
        let decorated = RegistryHost::new(&format!(" {scheme}{cased}{tail} "));
        prop_assert_eq!(&decorated, &plain);
        prop_assert_eq!(RegistryHost::new(plain.as_str()), plain.clone());
        prop_assert_eq!(decorated.to_string(), plain.to_string());
    }
}
