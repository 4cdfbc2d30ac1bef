//! Which pipeline each file belongs to, and what the pipeline sets for all its files: the
//! registry, the parameter defaults, and the profiles only some configs apply under.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use crate::resolve_relative;

use super::params::{pipeline_params, ParamSetting, PipelineParams};
use super::parse::{Include, ParsedFile, PIPELINE_CONFIG};

/// The pipeline directory each file belongs to. Nextflow reads only the `nextflow.config` of
/// the pipeline it launches, and the configs that one includes: a `nextflow.config` that
/// another config includes (nf-core modules and subworkflows keep their `withName` settings
/// in one) or that sits below another pipeline's directory (nf-test's `tests/nextflow.config`)
/// does not make a pipeline of its folder. Configs reached by `includeConfig` from a
/// pipeline's `nextflow.config` belong to it; any other file to the nearest enclosing
/// pipeline directory.
pub(super) fn pipelines<'a>(
    parsed: &BTreeMap<&'a Path, ParsedFile>,
) -> HashMap<&'a Path, &'a Path> {
    let graph = IncludeGraph::new(parsed);
    let included = graph.included_by_another();
    let unincluded_roots: HashSet<&Path> = parsed
        .keys()
        .filter(|p| p.file_name().is_some_and(|name| name == PIPELINE_CONFIG))
        .filter(|p| !included.contains(*p))
        .map(|p| p.parent().unwrap_or(Path::new("")))
        .collect();
    let roots: HashSet<&Path> = unincluded_roots
        .iter()
        .filter(|root| {
            !root
                .ancestors()
                .skip(1)
                .any(|dir| unincluded_roots.contains(dir))
        })
        .copied()
        .collect();
    let mut pipeline_of: HashMap<&Path, &Path> = HashMap::new();
    let mut sorted_roots: Vec<&Path> = roots.iter().copied().collect();
    sorted_roots.sort();
    for root in sorted_roots {
        let mut queue = VecDeque::from([graph.by_path[&root.join(PIPELINE_CONFIG)]]);
        while let Some(config) = queue.pop_front() {
            if pipeline_of.contains_key(config) {
                continue;
            }
            pipeline_of.insert(config, root);
            queue.extend(graph.targets(config).map(|(_, target)| target));
        }
    }
    for path in parsed.keys() {
        if pipeline_of.contains_key(path) {
            continue;
        }
        if let Some(root) = path.ancestors().skip(1).find(|dir| roots.contains(dir)) {
            pipeline_of.insert(path, root);
        }
    }
    pipeline_of
}

/// The `docker.registry` of a pipeline: a setting outside profiles wins over one inside a
/// profile, and the pipeline's own `nextflow.config` over the configs it includes.
pub(super) fn pipeline_registry(
    root: &Path,
    parsed: &BTreeMap<&Path, ParsedFile>,
    pipeline_of: &HashMap<&Path, &Path>,
) -> Option<String> {
    let main_config = root.join(PIPELINE_CONFIG);
    let mut members: Vec<&Path> = parsed
        .keys()
        .filter(|p| pipeline_of.get(*p) == Some(&root))
        .copied()
        .collect();
    members.sort_by_key(|p| *p != main_config.as_path());
    for in_profile in [false, true] {
        let chosen = members.iter().find_map(|path| {
            parsed[path]
                .registries
                .iter()
                .rev()
                .find(|setting| setting.in_profile == in_profile)
        });
        if let Some(setting) = chosen {
            return Some(setting.registry.clone());
        }
    }
    None
}

/// The parameter defaults of a pipeline: its scripts' assignments, then its included
/// configs', then its own `nextflow.config`'s, each later one winning.
pub(super) fn params_of<'a>(
    root: &Path,
    parsed: &'a BTreeMap<&'a Path, ParsedFile>,
    pipeline_of: &HashMap<&Path, &Path>,
    profile_only: &'a HashMap<&'a Path, String>,
) -> PipelineParams<'a> {
    let main_config = root.join(PIPELINE_CONFIG);
    let strength = |path: &Path| {
        if path == main_config {
            2
        } else if path.extension().is_some_and(|e| e == "config") {
            1
        } else {
            0
        }
    };
    let mut members: Vec<(&Path, &[ParamSetting], Option<&str>)> = parsed
        .iter()
        .filter(|(path, _)| pipeline_of.get(*path) == Some(&root))
        .map(|(path, file)| {
            let profile = profile_only.get(path).map(String::as_str);
            (*path, file.params.as_slice(), profile)
        })
        .collect();
    members.sort_by_key(|(path, _, _)| strength(path));
    pipeline_params(members)
}

/// The configs that apply only under a profile: those every include chain reaching them
/// passes through an `includeConfig` inside `profiles { NAME { ... } }` (nf-core's
/// `arm { includeConfig 'conf/arm.config' }`), with the first such profile.
pub(super) fn profile_only_configs<'a>(
    parsed: &BTreeMap<&'a Path, ParsedFile>,
) -> HashMap<&'a Path, String> {
    let graph = IncludeGraph::new(parsed);
    let included = graph.included_by_another();
    // None: reached outside any profile, which wins over any profile.
    let mut reached: HashMap<&Path, Option<String>> = HashMap::new();
    let mut queue: VecDeque<(&Path, Option<String>)> = parsed
        .keys()
        .filter(|p| !included.contains(*p))
        .map(|p| (*p, None))
        .collect();
    while let Some((config, profile)) = queue.pop_front() {
        match reached.get(config) {
            Some(None) => continue,
            Some(Some(_)) if profile.is_some() => continue,
            _ => {}
        }
        reached.insert(config, profile.clone());
        for (include, target) in graph.targets(config) {
            queue.push_back((target, profile.clone().or_else(|| include.profile.clone())));
        }
    }
    reached
        .into_iter()
        .filter_map(|(config, profile)| Some((config, profile?)))
        .collect()
}

/// Which parsed config each `includeConfig` of a parsed config reaches.
struct IncludeGraph<'p, 'a> {
    parsed: &'p BTreeMap<&'a Path, ParsedFile>,
    by_path: HashMap<PathBuf, &'a Path>,
}

impl<'p, 'a> IncludeGraph<'p, 'a> {
    fn new(parsed: &'p BTreeMap<&'a Path, ParsedFile>) -> Self {
        let by_path = parsed.keys().map(|p| (p.to_path_buf(), *p)).collect();
        IncludeGraph { parsed, by_path }
    }

    /// The includes of `config` whose target was read, with the target.
    fn targets(&self, config: &'a Path) -> impl Iterator<Item = (&'p Include, &'a Path)> + '_ {
        self.parsed[config]
            .includes
            .iter()
            .filter_map(move |include| {
                let target = self.by_path.get(&resolve_relative(config, &include.path))?;
                Some((include, *target))
            })
    }

    /// The configs some other config includes.
    fn included_by_another(&self) -> HashSet<&'a Path> {
        self.parsed
            .keys()
            .flat_map(|config| {
                self.targets(config)
                    .map(|(_, target)| target)
                    .filter(move |target| target != config)
            })
            .collect()
    }
}
