//! What a Dockerfile pulls: the registries of its base images, so the build engine can be given
//! the user's logins for exactly those (private base images anywhere work, and only the
//! credentials a build needs are written for it).

use std::collections::{BTreeMap, HashMap, HashSet};

use omx_core::Reference;

/// The registry hosts of the base images of `dockerfile` (`FROM` lines, `--platform` flags
/// skipped), in order of appearance. `ARG`s declared before the first `FROM` are substituted
/// (`$NAME`, `${NAME}`, `${NAME:-default}`), with `build_args` overriding their defaults.
/// `scratch`, earlier stages and names that cannot be resolved are left out.
pub fn base_image_registries(
    dockerfile: &str,
    build_args: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut args: HashMap<String, String> = HashMap::new();
    let mut stages: HashSet<String> = HashSet::new();
    let mut registries: Vec<String> = Vec::new();
    let mut seen_from = false;
    for line in logical_lines(dockerfile) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if instruction.eq_ignore_ascii_case("ARG") && !seen_from {
            for declaration in words {
                let (name, default) = declaration
                    .split_once('=')
                    .map_or((declaration, None), |(name, value)| (name, Some(value)));
                let value = build_args
                    .get(name)
                    .cloned()
                    .or_else(|| default.map(|d| d.trim_matches('"').to_string()));
                if let Some(value) = value {
                    args.insert(name.to_string(), value);
                }
            }
        } else if instruction.eq_ignore_ascii_case("FROM") {
            seen_from = true;
            let rest: Vec<&str> = words.filter(|word| !word.starts_with("--")).collect();
            let alias = match rest.as_slice() {
                [_, keyword, alias] if keyword.eq_ignore_ascii_case("AS") => {
                    Some(alias.to_ascii_lowercase())
                }
                _ => None,
            };
            let image = rest.first().and_then(|image| substitute(image, &args));
            // Checked before this stage's own alias is known: `FROM build AS build` names
            // an image, not itself.
            let pulled = image.filter(|image| {
                let lower = image.to_ascii_lowercase();
                lower != "scratch" && !stages.contains(&lower)
            });
            stages.extend(alias);
            if let Some(reference) = pulled.and_then(|image| Reference::parse(&image).ok()) {
                let host = reference.domain().to_string();
                if !registries.contains(&host) {
                    registries.push(host);
                }
            }
        }
    }
    registries
}

/// Lines with `\` continuations joined and comments dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// `word` with `$NAME`, `${NAME}` and `${NAME:-default}` replaced; `None` when a name is unknown.
fn substitute(word: &str, args: &HashMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (expression, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}')?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        let (name, default) = match expression.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expression, None),
        };
        let value = args
            .get(name)
            .filter(|value| !value.is_empty())
            .map(String::as_str)
            .or(default)?;
        out.push_str(value);
        rest = after;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registries(dockerfile: &str, args: &[(&str, &str)]) -> Vec<String> {
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        base_image_registries(dockerfile, &args)
    }

    #[test]
    fn finds_the_registries_of_every_stage() {
        let dockerfile = "\
# syntax=docker/dockerfile:1
ARG BASE=quay.io/org/base:1
ARG TAG
FROM --platform=linux/amd64 ${BASE} AS build
RUN make
FROM ghcr.io/org/runtime:$TAG AS runtime
FROM build AS again
FROM ubuntu:22.04
FROM scratch
COPY --from=build /out /out
FROM \\
  123456789012.dkr.ecr.us-east-1.amazonaws.com/tools/x:1
FROM ${MISSING}
FROM ${OTHER:-registry.example:5000/a:1}
";
        assert_eq!(
            registries(dockerfile, &[("TAG", "2")]),
            [
                "quay.io",
                "ghcr.io",
                "docker.io",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "registry.example:5000"
            ]
        );
        // A build argument wins over the ARG default.
        assert_eq!(
            registries(
                "ARG BASE=quay.io/a:1\nFROM $BASE\n",
                &[("BASE", "localhost:5000/b:1")]
            ),
            ["localhost:5000"]
        );
        // A tag that cannot be resolved leaves the image out rather than guessing.
        assert_eq!(
            registries("FROM ghcr.io/a:$TAG\n", &[]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn substitution_forms() {
        let args = HashMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(
            substitute("$A/${A}-${B:-y}", &args),
            Some("x/x-y".to_string())
        );
        assert_eq!(substitute("${B}", &args), None);
        assert_eq!(substitute("${A", &args), None);
        assert_eq!(substitute("plain", &args), Some("plain".to_string()));
    }
}
