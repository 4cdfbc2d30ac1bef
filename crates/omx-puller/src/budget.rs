//! Planning a run against the pull budgets source registries publish (Docker Hub's pull limits),
//! before anything is copied.
//!
//! A pull is a manifest GET; a HEAD is not, and carries the budget's `ratelimit-*` headers
//! (docker/docs, content/manuals/docker-hub/usage/pulls.md). So, with HEADs only: per source
//! registry, the budget left; per image, what it will spend: nothing when the target already has
//! it, else its manifest (one pull) and, for a multi-arch index, the platform manifests fetched
//! (one with `--platform`, at least one without: a HEAD does not tell how many an index lists).
//! Images are then taken in plan order while they fit; the rest are left out, each with the
//! reason, rather than sent to spend the budget and meet a 429.

use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use omx_core::namespace::Method;
use omx_core::pull_plan::{PlannedImage, PullPlan};
use omx_core::report::human_duration;
use omx_registry::manifest::media_type;
use omx_registry::PullBudget;

use crate::puller::Puller;

/// One source registry whose budget the run was planned against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryBudget {
    /// The registry as references name it (`docker.io`).
    pub registry: String,
    /// What it published before the run.
    pub budget: PullBudget,
    /// Pulls the plan's images from it need (a lower bound when `at_least`).
    pub needed: u64,
    /// Whether `needed` counts multi-arch indexes at their minimum (one platform each).
    pub at_least: bool,
    /// Images from it that need pulls, and how many of them fit the budget.
    pub images: usize,
    pub fitting: usize,
}

impl RegistryBudget {
    pub fn is_over(&self) -> bool {
        self.fitting < self.images
    }

    /// The run's opening line for a registry whose budget does not cover the plan: how many
    /// fit, when the budget is whole again, and the ways to a larger one.
    pub fn summary(&self, strict: bool) -> String {
        let PullBudget {
            limit,
            remaining,
            window,
            ..
        } = &self.budget;
        let counted = self
            .budget
            .source
            .as_deref()
            .map_or(String::new(), |source| {
                format!(", counted against {source}")
            });
        let outcome = if strict {
            "with --strict the run copies nothing".to_string()
        } else {
            format!(
                "the run copies the first {} and leaves out the other {}",
                self.fitting,
                self.images - self.fitting
            )
        };
        format!(
            "pull limit: {} images from {registry} need {}{} manifest pulls but {registry} allows \
             {remaining} more of {limit} per {}{counted}; {outcome}. Pulls free up within {} of \
             being spent. For a larger limit, log in (docker login {registry}, or credentials \
             for it in the Docker config), or bring these images through an ECR pull-through \
             cache with a Secrets Manager credential (for Docker Hub: omx-ecr-helper setup \
             --dockerhub-secret ARN, then pull --namespaces with the rule it prints)",
            self.images,
            if self.at_least { "at least " } else { "" },
            self.needed,
            human_duration(*window),
            human_duration(*window),
            registry = self.registry,
        )
    }
}

/// The run's plan against every budget the source registries publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetPlan {
    /// The registries that publish a budget, in order of first appearance in the plan.
    pub registries: Vec<RegistryBudget>,
    /// Per image (its position in the plan), why it is left out.
    left_out: HashMap<usize, String>,
}

impl BudgetPlan {
    /// Whether some registry's budget does not cover the plan.
    pub fn is_over(&self) -> bool {
        self.registries.iter().any(RegistryBudget::is_over)
    }

    /// Why the image at `position` of the plan is left out, if it is.
    pub fn left_out(&self, position: usize) -> Option<&str> {
        self.left_out.get(&position).map(String::as_str)
    }
}

/// What one image will cost its source registry.
struct Cost {
    pulls: u64,
    at_least: bool,
}

impl Puller {
    /// Plans `plan` against the budgets its source registries publish, with HEAD requests only.
    /// A registry that publishes none, or cannot be asked, is not planned for (its images go
    /// ahead; a spent budget still ends them at its first 429).
    pub async fn plan_budget(&self, plan: &PullPlan) -> BudgetPlan {
        let client = self.engine.client();
        let mut by_registry: Vec<(String, Vec<usize>)> = Vec::new();
        for (position, image) in plan.images.iter().enumerate() {
            if !self.spends_source_pulls(image) {
                continue;
            }
            let registry = image.source.domain().to_string();
            match by_registry.iter_mut().find(|(name, _)| *name == registry) {
                Some((_, positions)) => positions.push(position),
                None => by_registry.push((registry, vec![position])),
            }
        }
        let mut result = BudgetPlan::default();
        for (registry, positions) in by_registry {
            // Any HEAD on a manifest reads the budget for free; the first image's will do.
            let first = &plan.images[positions[0]];
            if client.head_manifest(&first.source).await.is_err() {
                continue;
            }
            let Some(budget) = client.pull_budget(&registry) else {
                continue;
            };
            let costs: Vec<Cost> = stream::iter(&positions)
                .map(|position| self.cost(&plan.images[*position]))
                .buffered(self.options.image_concurrency.max(1))
                .collect()
                .await;
            let mut remaining = budget.remaining;
            let mut entry = RegistryBudget {
                registry: registry.clone(),
                budget: budget.clone(),
                needed: 0,
                at_least: false,
                images: 0,
                fitting: 0,
            };
            for (position, cost) in positions.iter().zip(costs) {
                if cost.pulls == 0 {
                    continue;
                }
                entry.images += 1;
                entry.needed += cost.pulls;
                entry.at_least |= cost.at_least;
                if cost.pulls <= remaining {
                    remaining -= cost.pulls;
                    entry.fitting += 1;
                } else {
                    result.left_out.insert(
                        *position,
                        format!(
                            "left out to stay within {registry}'s pull limit: it needs {}{} \
                             manifest pull{} and the {} left of {} per {} went to the images \
                             before it (log in to {registry} for a larger limit)",
                            if cost.at_least { "at least " } else { "" },
                            cost.pulls,
                            if cost.pulls == 1 { "" } else { "s" },
                            budget.remaining,
                            budget.limit,
                            human_duration(budget.window),
                        ),
                    );
                }
            }
            result.registries.push(entry);
        }
        result
    }

    /// The pulls bringing `image` over will spend on its source: none when the target already
    /// has it (and, with `--refresh`, upstream has not moved), else its manifest and, for an
    /// index, its platform manifests. Found with HEADs; what cannot be found costs nothing here
    /// (the image then fails on its own).
    async fn cost(&self, image: &PlannedImage) -> Cost {
        let free = Cost {
            pulls: 0,
            at_least: false,
        };
        let client = self.engine.client();
        let Ok(target) = self.target.api_reference(image) else {
            return free;
        };
        let existing = client.head_manifest(&target).await.ok().flatten();
        if existing.is_some() && (image.source.digest().is_some() || !self.options.refresh) {
            return free;
        }
        let Ok(Some(upstream)) = client.head_manifest(&image.source).await else {
            return free;
        };
        if existing.is_some_and(|existing| existing.digest == upstream.digest) {
            return free;
        }
        if !media_type::is_index(&upstream.media_type) {
            return Cost {
                pulls: 1,
                at_least: false,
            };
        }
        Cost {
            pulls: 2,
            at_least: self.engine.options().platform.is_none(),
        }
    }

    /// Whether bringing `image` over reads its manifests from the source registry: every copy
    /// does; a pull-through-cache prime by tag has ECR fetch them (with the rule's credential).
    pub(crate) fn spends_source_pulls(&self, image: &PlannedImage) -> bool {
        !(self.target.ecr.is_some()
            && image.method == Method::PullThroughCache
            && image.target_tag.is_some())
    }
}
