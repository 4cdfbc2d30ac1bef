//! Building every image of a plan, each to its own end state.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use omx_aws::{AwsError, BuildStatus, Ecr, StartBuildRequest, S3};
use omx_core::report::{error_chain, ImageReport, ImageStatus, RunReport};
use omx_core::RegistryHost;
use omx_core::{Digest, Reference, ReferenceError};
use omx_puller::{reports_in_order, ResolvedTarget};
use omx_registry::{
    ClientConfig, Credential, CredentialError, CredentialProvider, Platform, RegistryClient,
    RegistryError,
};

use crate::build_plan::{BuildPlan, PlannedBuild};
use crate::bundle::{safe_relative_path, Bundle, BundleError, Fetcher, Limits};
use crate::codebuild::RemoteBuild;
use crate::digest::{source_digest, BuildInputs};
use crate::dockerfile::base_image_registries;
use crate::engine::{CodeBuildEngine, Engine, LocalBuild, Step};
use crate::login::Login;
use crate::published::{published, Published, SOURCE_DIGEST_LABEL};

/// Choices that apply to every image of a run.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--build-arg NAME=value`, for every image.
    pub build_args: BTreeMap<String, String>,
    /// The platform built for (and whose image a multi-platform target is checked on).
    pub platform: Platform,
    /// The Dockerfile's path inside each bundle, `/`-separated.
    pub dockerfile: String,
    /// Build even when the target carries the same source digest.
    pub force: bool,
    /// Images worked on at once.
    pub jobs: usize,
    /// Where each image's build log is written (`<repository>_<tag>.log`).
    pub log_dir: PathBuf,
    /// Where fetched bundles are put while they are built.
    pub work_dir: PathBuf,
    pub limits: Limits,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            build_args: BTreeMap::new(),
            platform: Platform::linux_amd64(),
            dockerfile: "Dockerfile".to_string(),
            force: false,
            jobs: 2,
            log_dir: PathBuf::from("omx-build-logs"),
            work_dir: std::env::temp_dir(),
            limits: Limits::default(),
        }
    }
}

/// Hears how each image's build goes.
pub trait BuildProgress: Send + Sync {
    /// Image `target` has reached a new step (`fetching ...`, `buildah bud`, a CodeBuild link).
    fn step(&self, target: &str, message: &str);
    /// Image `report.target` has ended.
    fn done(&self, report: &ImageReport);
}

/// Why one image was not built, or not built right.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot use {source_uri}: {error}")]
    Bundle {
        source_uri: String,
        #[source]
        error: BundleError,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("the target is not a valid image reference: {0}")]
    Reference(#[from] ReferenceError),
    #[error("the bundle has no Dockerfile at {0} (--dockerfile names another path in the bundle)")]
    NoDockerfile(String),
    #[error("{step} failed ({status}); build log: {}", log.display())]
    Step {
        step: &'static str,
        status: String,
        log: PathBuf,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "CodeBuild build {id} ended {status}{}; logs: {}",
        phase.as_ref().map(|p| format!(" in phase {p}")).unwrap_or_default(),
        log_link.as_deref().unwrap_or("(no log link)")
    )]
    CodeBuild {
        id: String,
        status: BuildStatus,
        phase: Option<String>,
        log_link: Option<String>,
    },
    #[error("verification failed: {target} {problem}{}", log.as_ref().map(|l| format!("; log: {l}")).unwrap_or_default())]
    Verification {
        target: String,
        problem: String,
        log: Option<String>,
    },
    #[error("{0}")]
    Setup(String),
}

impl BuildError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
        let what = what.into();
        move |source| BuildError::Io { what, source }
    }
}

/// What happened to an image that did not fail.
struct Done {
    status: ImageStatus,
    digest: Digest,
    message: String,
}

/// A fetched bundle, its source digest, and the digest of the target's image when that image was
/// built from exactly this source.
pub struct Assessment {
    pub bundle: Bundle,
    pub source_digest: Digest,
    pub up_to_date: Option<Digest>,
}

/// Builds images and pushes them to one target registry.
pub struct Builder {
    engine: Engine,
    target: ResolvedTarget,
    client: RegistryClient,
    credentials: Arc<dyn CredentialProvider>,
    insecure_hosts: Vec<String>,
    ca_certificates: Vec<PathBuf>,
    fetcher: Fetcher,
    dockerfile: PathBuf,
    options: BuildOptions,
}

impl Builder {
    /// `client` must reach the target's `api_host` with credentials for it (for ECR, an
    /// `omx_puller::EcrCredentials` in its chain); the same credentials log the build engine
    /// in. `s3` reads `s3://` bundles.
    pub fn new(
        engine: Engine,
        target: ResolvedTarget,
        client: ClientConfig,
        s3: Option<S3>,
        options: BuildOptions,
    ) -> Result<Builder, BuildError> {
        if matches!(engine, Engine::CodeBuild(_)) && target.ecr.is_none() {
            return Err(BuildError::Setup(format!(
                "the codebuild engine pushes to ECR only; {} is not ECR",
                target.registry
            )));
        }
        let dockerfile = safe_relative_path(&options.dockerfile)
            .ok()
            .filter(|path| !path.as_os_str().is_empty())
            .ok_or_else(|| {
                BuildError::Setup(format!(
                    "--dockerfile {:?} must be a path inside the bundle",
                    options.dockerfile
                ))
            })?;
        let insecure_hosts = client.insecure_registries.clone();
        let credentials = client.credentials.clone();
        let ca_certificates = client.ca_certificates.clone();
        Ok(Builder {
            fetcher: Fetcher::new(s3, options.work_dir.clone(), options.limits),
            client: RegistryClient::new(client)?,
            engine,
            target,
            credentials,
            insecure_hosts,
            ca_certificates,
            dockerfile,
            options,
        })
    }

    /// Builds every planned image, `jobs` at a time, telling `progress` as they go. The report
    /// lists the images in plan order and carries the plan's entry errors.
    pub async fn run(&self, plan: &BuildPlan, progress: &dyn BuildProgress) -> RunReport {
        let images = reports_in_order(&plan.builds, self.options.jobs, |build| async {
            let report = self.build_image(build, progress).await;
            progress.done(&report);
            report
        })
        .await;
        RunReport {
            images,
            errors: plan.errors.clone(),
        }
    }

    /// Builds one image; never fails, a failure is a `FAILED` report.
    pub async fn build_image(
        &self,
        build: &PlannedBuild,
        progress: &dyn BuildProgress,
    ) -> ImageReport {
        let target = build.target.uri(&self.target.registry.host());
        let (status, digest, message) = match self.produce(build, &target, progress).await {
            Ok(done) => (done.status, Some(done.digest), done.message),
            Err(error) => (ImageStatus::Failed, None, error_chain(&error)),
        };
        ImageReport {
            input: build.input.clone(),
            source: build.source_uri.clone(),
            target,
            digest,
            status,
            message,
            bytes_copied: None,
        }
    }

    /// Fetches the bundle, computes its source digest, and finds out whether the target already
    /// carries a build of exactly that source (never with `force`): every build's first steps,
    /// and all that the builder state machine's prepare step does.
    pub async fn assess(
        &self,
        build: &PlannedBuild,
        target: &str,
        progress: &dyn BuildProgress,
    ) -> Result<Assessment, BuildError> {
        let api_image = build.target.reference(&self.target.api_host)?;
        progress.step(target, &format!("fetching {}", build.source));
        let bundle_error = |error| BuildError::Bundle {
            source_uri: build.source_uri.clone(),
            error,
        };
        let bundle = self
            .fetcher
            .fetch(&build.source)
            .await
            .map_err(bundle_error)?;
        if !bundle.root().join(&self.dockerfile).is_file() {
            return Err(BuildError::NoDockerfile(self.options.dockerfile.clone()));
        }
        let platform = self.options.platform.to_string();
        let digest = {
            let root = bundle.root().to_path_buf();
            let dockerfile = self.options.dockerfile.clone();
            let build_args = self.options.build_args.clone();
            let platform = platform.clone();
            tokio::task::spawn_blocking(move || {
                source_digest(
                    &root,
                    &BuildInputs {
                        dockerfile: &dockerfile,
                        build_args: &build_args,
                        platform: &platform,
                    },
                )
            })
            .await
            .map_err(|error| BuildError::Io {
                what: "computing the source digest".to_string(),
                source: std::io::Error::other(error.to_string()),
            })?
            .map_err(BuildError::io(format!(
                "computing the source digest of {}",
                build.source
            )))?
        };

        let up_to_date = if self.options.force {
            None
        } else {
            published(&self.client, &api_image, &self.options.platform)
                .await?
                .filter(|existing| carries(existing, &digest))
                .map(|existing| existing.digest)
        };
        Ok(Assessment {
            bundle,
            source_digest: digest,
            up_to_date,
        })
    }

    async fn produce(
        &self,
        build: &PlannedBuild,
        target: &str,
        progress: &dyn BuildProgress,
    ) -> Result<Done, BuildError> {
        let api_image = build.target.reference(&self.target.api_host)?;
        let Assessment {
            bundle,
            source_digest: digest,
            up_to_date,
        } = self.assess(build, target, progress).await?;
        if let Some(existing) = up_to_date {
            self.prepare_repository(&build.target.repository).await?;
            return Ok(Done {
                status: ImageStatus::Skipped,
                digest: existing,
                message: format!("up to date: built from source {}", digest.short()),
            });
        }
        match &self.engine {
            Engine::CodeBuild(engine) => {
                // The push happens remotely, so the repository must be ready before it starts.
                self.prepare_repository(&build.target.repository).await?;
                self.build_remotely(engine, build, target, &api_image, &digest, progress)
                    .await
            }
            local => {
                self.build_locally(local, bundle.root(), build, &api_image, &digest, progress)
                    .await
            }
        }
    }

    /// ECR repositories exist, carry our tag when we create them, and let HealthOmics pull,
    /// before anything is pushed.
    async fn prepare_repository(&self, repository: &str) -> Result<(), AwsError> {
        if let Some(ecr) = &self.target.ecr {
            prepare(ecr, repository).await?;
        }
        Ok(())
    }

    async fn build_locally(
        &self,
        engine: &Engine,
        context: &Path,
        build: &PlannedBuild,
        api_image: &Reference,
        digest: &Digest,
        progress: &dyn BuildProgress,
    ) -> Result<Done, BuildError> {
        let target = build.target.uri(&self.target.registry.host());
        let log_path = self.log_path(build);
        let log = create_log(&log_path)?;
        let dockerfile = context.join(&self.dockerfile);
        let login = self.login_for(&self.registries_of(&dockerfile)?).await?;
        let image = build.target.uri(&self.target.api_host);
        let labels = [(SOURCE_DIGEST_LABEL.to_string(), digest.to_string())];
        let local = LocalBuild {
            context,
            dockerfile: &dockerfile,
            image: &image,
            labels: &labels,
            build_args: &self.options.build_args,
            platform: &self.options.platform.to_string(),
        };
        let [build_step, push_step] = match engine {
            Engine::Buildah(buildah) => buildah.steps(&local, &login),
            Engine::Docker(docker) => docker.steps(&local, &login),
            Engine::CodeBuild(_) => unreachable!("CodeBuild builds remotely"),
        };
        self.run_step(build_step, &target, &log, &log_path, progress)
            .await?;
        // Only an image that built gets a repository, so a broken bundle leaves none behind.
        self.prepare_repository(&build.target.repository).await?;
        self.run_step(push_step, &target, &log, &log_path, progress)
            .await?;
        drop(login);
        let log = Some(log_path.display().to_string());
        let pushed = self.verify(api_image, &target, digest, log).await?;
        Ok(Done {
            status: ImageStatus::Succeeded,
            digest: pushed,
            message: format!(
                "built with {} from source {}",
                engine.name(),
                digest.short()
            ),
        })
    }

    async fn run_step(
        &self,
        step: Step,
        target: &str,
        log: &File,
        log_path: &Path,
        progress: &dyn BuildProgress,
    ) -> Result<(), BuildError> {
        let name = step.name;
        progress.step(target, name);
        let ran = step.run(log).await.map_err(BuildError::io(format!(
            "running {name} (log: {})",
            log_path.display()
        )))?;
        ran.map_err(|status| BuildError::Step {
            step: name,
            status,
            log: log_path.to_path_buf(),
        })
    }

    async fn build_remotely(
        &self,
        engine: &CodeBuildEngine,
        build: &PlannedBuild,
        target: &str,
        api_image: &Reference,
        digest: &Digest,
        progress: &dyn BuildProgress,
    ) -> Result<Done, BuildError> {
        let source_location = build.source.codebuild_location().ok_or_else(|| {
            BuildError::Setup(format!(
                "{} is not in S3: CodeBuild builds bundles in S3 only; upload it first",
                build.source
            ))
        })?;
        let registry = self.target.registry.host();
        let digest_text = digest.to_string();
        let platform = self.options.platform.to_string();
        let remote = RemoteBuild {
            target_image: target,
            registry: &registry,
            source_digest: &digest_text,
            dockerfile: &self.options.dockerfile,
            platform: &platform,
            build_args: &self.options.build_args,
        };
        let request = StartBuildRequest {
            project: engine.project.clone(),
            source_location,
            environment: remote.environment(),
            buildspec: (!engine.project_buildspec).then(|| remote.buildspec()),
        };
        let started = engine.client.start_build(&request).await?;
        let started_link = started.log_link.clone();
        progress.step(
            target,
            &format!(
                "CodeBuild build {} started; logs: {}",
                started.id,
                started_link.as_deref().unwrap_or("(no log link yet)")
            ),
        );
        let finished = engine
            .client
            .wait_until_complete(&started.id, engine.poll_interval)
            .await?;
        let log_link = finished.log_link.clone().or(started_link);
        if finished.status != BuildStatus::Succeeded {
            return Err(BuildError::CodeBuild {
                id: finished.id,
                status: finished.status,
                phase: finished.current_phase,
                log_link,
            });
        }
        let log = format!(
            "CodeBuild build {} ({})",
            finished.id,
            log_link.as_deref().unwrap_or("no log link")
        );
        let pushed = self.verify(api_image, target, digest, Some(log)).await?;
        Ok(Done {
            status: ImageStatus::Succeeded,
            digest: pushed,
            message: format!(
                "built by CodeBuild build {} from source {}; logs: {}",
                finished.id,
                digest.short(),
                log_link.as_deref().unwrap_or("(no log link)")
            ),
        })
    }

    /// The target must now hold an image with our source digest; returns its digest.
    async fn verify(
        &self,
        api_image: &Reference,
        target: &str,
        digest: &Digest,
        log: Option<String>,
    ) -> Result<Digest, BuildError> {
        let found = published(&self.client, api_image, &self.options.platform).await?;
        match found {
            Some(image) if carries(&image, digest) => Ok(image.digest),
            other => Err(BuildError::Verification {
                target: target.to_string(),
                problem: match other {
                    None => "does not exist after the build".to_string(),
                    Some(Published {
                        source_digest: None,
                        ..
                    }) => format!("has no {SOURCE_DIGEST_LABEL} label after the build"),
                    Some(Published {
                        source_digest: Some(found),
                        ..
                    }) => format!("was built from source {found}, not {digest}"),
                },
                log,
            }),
        }
    }

    /// The registries a build talks to: the target (as named in URIs and at its API host) and
    /// those of the Dockerfile's base images.
    fn registries_of(&self, dockerfile: &Path) -> Result<Vec<String>, BuildError> {
        let text = fs::read_to_string(dockerfile)
            .map_err(BuildError::io(format!("reading {}", dockerfile.display())))?;
        let mut hosts = vec![self.target.registry.host(), self.target.api_host.clone()];
        hosts.extend(base_image_registries(&text, &self.options.build_args));
        let mut unique: Vec<String> = Vec::new();
        for host in hosts {
            if !unique.contains(&host) {
                unique.push(host);
            }
        }
        Ok(unique)
    }

    /// The login for a build with the credential chain's answer for each of `registries`, and
    /// plain HTTP allowed where the registry client allows it (the insecure registries, and
    /// loopback hosts).
    async fn login_for(&self, registries: &[String]) -> Result<Login, BuildError> {
        let mut logins: Vec<(String, Credential)> = Vec::new();
        for host in registries {
            if let Some(credential) = self.credentials.credentials(host).await? {
                logins.push((host.clone(), credential));
            }
        }
        let mut insecure = self.insecure_hosts.clone();
        for host in registries {
            if RegistryHost::new(host).is_loopback() && !insecure.contains(host) {
                insecure.push(host.clone());
            }
        }
        Login::write(&logins, &insecure, &self.ca_certificates)
            .map_err(BuildError::io("writing the registry login for the build"))
    }

    /// `<log dir>/<repository>_<tag>.log`, with every character that is not a letter, digit,
    /// `.`, `_` or `-` made `_`.
    pub fn log_path(&self, build: &PlannedBuild) -> PathBuf {
        let name: String = build
            .target
            .to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.options.log_dir.join(format!("{name}.log"))
    }
}

async fn prepare(ecr: &Ecr, repository: &str) -> Result<(), AwsError> {
    ecr.ensure_repository(repository).await?;
    ecr.ensure_omics_policy(repository).await?;
    Ok(())
}

fn carries(image: &Published, digest: &Digest) -> bool {
    image.source_digest.as_deref() == Some(digest.to_string().as_str())
}

fn create_log(path: &Path) -> Result<File, BuildError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(BuildError::io(format!("log folder {}", parent.display())))?;
    }
    File::create(path).map_err(BuildError::io(format!("build log {}", path.display())))
}
