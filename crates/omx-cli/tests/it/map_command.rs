//! Runs the built `omx-ecr-helper map` on a manifest, a small Nextflow pipeline and a WDL inputs
//! file written for each test: every format, exactly, and the input it refuses.

use std::path::Path;

use omx_testenv::OmxOutput;
use serde_json::{json, Value};

use crate::util::{binary, text};

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const REGISTRY: &str = "ecr://123456789012/us-east-1";

fn omx(args: &[&str]) -> OmxOutput {
    binary()
        .args(args)
        // Offline: any AWS call would go nowhere.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .run()
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_string()
}

/// `map MANIFEST --format nextflow --workflow WORKFLOW --registry REGISTRY`, with `extra` options.
fn nextflow_map(manifest: &str, workflow: &str, extra: &[&str]) -> OmxOutput {
    let mut args = vec![
        "map",
        manifest,
        "--format",
        "nextflow",
        "--workflow",
        workflow,
        "--registry",
        REGISTRY,
    ];
    args.extend(extra);
    omx(&args)
}

fn manifest(dir: &Path, images: &[&str]) -> String {
    write(
        dir,
        "manifest.json",
        &json!({ "manifest": images }).to_string(),
    )
}

const IMAGES: [&str; 3] = [
    "ubuntu:20.04",
    "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
    "ghcr.io/lab/tool:2",
];

#[test]
fn registry_map_maps_cache_prefixes_and_copied_images() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), &IMAGES);
    let output = omx(&[
        "map",
        &manifest,
        "--format",
        "registry-map",
        "--registry",
        REGISTRY,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        output.json(),
        json!({
            "registryMappings": [
                {"upstreamRegistryUrl": "quay.io", "ecrRepositoryPrefix": "quay"}
            ],
            "imageMappings": [
                {"sourceImage": "ubuntu:20.04", "destinationImage": format!("{HOST}/dockerhub/ubuntu:20.04")},
                {"sourceImage": "docker.io/library/ubuntu:20.04", "destinationImage": format!("{HOST}/dockerhub/ubuntu:20.04")},
                {"sourceImage": "ghcr.io/lab/tool:2", "destinationImage": format!("{HOST}/ghcr/lab/tool:2")}
            ]
        })
    );
}

#[test]
fn without_an_account_the_uris_show_placeholders_and_no_aws_call_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), &IMAGES);
    let output = omx(&["map", &manifest, "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let map = output.json();
    let targets: Vec<&str> = map["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        [
            "<account>.dkr.ecr.<region>.amazonaws.com/dockerhub/ubuntu:20.04",
            "<account>.dkr.ecr.<region>.amazonaws.com/quay/biocontainers/samtools:1.17--h00cdaf9_0",
            "<account>.dkr.ecr.<region>.amazonaws.com/ghcr/lab/tool:2",
        ]
    );
    assert_eq!(map["images"][1]["digest"], Value::Null);
    assert_eq!(
        map["containerRegistryMap"]["registryMappings"][0]["ecrRepositoryPrefix"],
        "quay"
    );
}

#[test]
fn wdl_inputs_are_rewritten_or_listed() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), &IMAGES);
    let inputs = write(
        dir.path(),
        "inputs.json",
        &json!({
            "wf.reads": "s3://bucket/reads.fastq.gz",
            "wf.samtools.docker": "quay.io/biocontainers/samtools:1.17--h00cdaf9_0",
            "wf.base_docker": "docker.io/library/ubuntu:20.04",
            "wf.threads": 4,
        })
        .to_string(),
    );
    let output = omx(&[
        "map",
        &manifest,
        "--format",
        "wdl-inputs",
        "--inputs",
        &inputs,
        "--registry",
        REGISTRY,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        output.json(),
        json!({
            "wf.reads": "s3://bucket/reads.fastq.gz",
            "wf.samtools.docker": format!("{HOST}/quay/biocontainers/samtools:1.17--h00cdaf9_0"),
            "wf.base_docker": format!("{HOST}/dockerhub/ubuntu:20.04"),
            "wf.threads": 4,
        })
    );

    let output = omx(&[
        "map",
        &manifest,
        "--format",
        "wdl-inputs",
        "--registry",
        REGISTRY,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        output.json(),
        json!({
            "ghcr.io/lab/tool:2": format!("{HOST}/ghcr/lab/tool:2"),
            "quay.io/biocontainers/samtools:1.17--h00cdaf9_0":
                format!("{HOST}/quay/biocontainers/samtools:1.17--h00cdaf9_0"),
            "ubuntu:20.04": format!("{HOST}/dockerhub/ubuntu:20.04"),
        })
    );
}

/// A pipeline in the nf-core style: modules name `biocontainers/...` and the configuration puts
/// `quay.io` in front with `docker.registry`; the configuration also sets a label's container.
fn pipeline(dir: &Path) -> String {
    let root = dir.join("pipeline");
    write(
        &root,
        "nextflow.config",
        "docker.registry = 'quay.io'\n\
         process {\n\
         \x20   withLabel: gpu {\n\
         \x20       container = 'ghcr.io/lab/tool:2'\n\
         \x20   }\n\
         }\n",
    );
    write(
        &root,
        "modules/samtools/main.nf",
        "process SAMTOOLS_SORT {\n\
         \x20   label 'process_medium'\n\
         \x20   container \"${ workflow.containerEngine == 'singularity' ?\n\
         \x20       'https://depot.galaxyproject.org/singularity/samtools:1.17--h00cdaf9_0' :\n\
         \x20       'biocontainers/samtools:1.17--h00cdaf9_0' }\"\n\
         \n\
         \x20   script:\n\
         \x20   \"\"\"\n\
         \x20   samtools sort ${bam} | awk '{ print }'\n\
         \x20   \"\"\"\n\
         }\n",
    );
    write(
        &root,
        "main.nf",
        "process BASE {\n\
         \x20   container 'docker.io/library/ubuntu:20.04'\n\
         \x20   script:\n\
         \x20   'true'\n\
         }\n\
         workflow {\n\
         \x20   BASE()\n\
         }\n",
    );
    root.to_str().unwrap().to_string()
}

#[test]
fn nextflow_config_sets_every_process_container() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), &IMAGES);
    let workflow = pipeline(dir.path());
    let output = nextflow_map(&manifest, &workflow, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "// The private container of every process, written by omx-ecr-helper (`map --format nextflow`, `prepare`).\n\
             // Give it last so that it wins: nextflow run <pipeline> -c <this file>\n\
             process {{\n\
             \x20   // ghcr.io/lab/tool:2 ({workflow}/nextflow.config:4)\n\
             \x20   withLabel: 'gpu' {{\n\
             \x20       container = '{HOST}/ghcr/lab/tool:2'\n\
             \x20   }}\n\
             \x20   // docker.io/library/ubuntu:20.04 ({workflow}/main.nf:2)\n\
             \x20   withName: 'BASE' {{\n\
             \x20       container = '{HOST}/dockerhub/ubuntu:20.04'\n\
             \x20   }}\n\
             \x20   // quay.io/biocontainers/samtools:1.17--h00cdaf9_0 ({workflow}/modules/samtools/main.nf:5)\n\
             \x20   withName: 'SAMTOOLS_SORT' {{\n\
             \x20       container = '{HOST}/quay/biocontainers/samtools:1.17--h00cdaf9_0'\n\
             \x20   }}\n\
             }}\n"
        )
    );
    assert_eq!(text(&output.stderr), "");
}

#[test]
fn nextflow_containers_missing_from_the_manifest_are_listed_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), &IMAGES[..2]);
    let workflow = pipeline(dir.path());
    let output = omx(&[
        "map",
        &manifest,
        "--format",
        "nextflow",
        "--workflow",
        &workflow,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let config = text(&output.stdout);
    assert!(
        config.contains(&format!(
            "// ghcr.io/lab/tool:2 ({workflow}/nextflow.config:4): not in the manifest: add it \
             and run `pull`\n"
        )),
        "{config}"
    );
    assert!(!config.contains("withLabel"), "{config}");
    assert!(
        config.contains(
            "container = '<account>.dkr.ecr.<region>.amazonaws.com/dockerhub/ubuntu:20.04'"
        ),
        "{config}"
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("warning: ghcr.io/lab/tool:2") && stderr.contains("not in the manifest"),
        "{stderr}"
    );
}

#[test]
fn options_of_another_format_and_a_missing_workflow_are_unusable_input() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest(dir.path(), &IMAGES);
    for (args, message) in [
        (
            vec!["map", &manifest, "--format", "nextflow"],
            "--format nextflow needs --workflow PATH",
        ),
        (
            vec!["map", &manifest, "--format", "json", "--inputs", "x.json"],
            "--inputs is for --format wdl-inputs",
        ),
        (
            vec![
                "map",
                &manifest,
                "--format",
                "registry-map",
                "--workflow",
                ".",
            ],
            "--workflow is for --format nextflow",
        ),
    ] {
        let output = omx(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
        assert!(output.stdout.is_empty());
    }
    let bad_inputs = write(dir.path(), "bad.json", "{\"wf.x\": ");
    let output = omx(&[
        "map",
        &manifest,
        "--format",
        "wdl-inputs",
        "--inputs",
        &bad_inputs,
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("not valid JSON"));
}

/// A process whose `container` names a parameter, defaulted in `nextflow.config`, gets its
/// setting by name: the image is written in the configuration, but the process it runs in is
/// the one whose directive reads the parameter (nf-core's `params.*_container` idiom).
#[test]
fn a_container_from_a_parameter_default_is_set_on_its_process() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pipeline");
    write(
        &root,
        "nextflow.config",
        "params {\n    tool_container = 'quay.io/biocontainers/tool:1.0--0'\n}\n",
    );
    write(
        &root,
        "main.nf",
        "process TOOL {\n    container params.tool_container\n    script:\n    'true'\n}\n",
    );
    let manifest = manifest(dir.path(), &["quay.io/biocontainers/tool:1.0--0"]);
    let output = nextflow_map(&manifest, root.to_str().unwrap(), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains(&format!(
            "    withName: 'TOOL' {{\n        container = '{HOST}/quay/biocontainers/tool:1.0--0'\n    }}"
        )),
        "{}",
        text(&output.stdout)
    );
}

/// An image HealthOmics fetches itself (native: its registry has a credential) keeps its
/// upstream name: the configuration sets only the processes whose images are copied or cached,
/// since HealthOmics maps the upstream name through the registry mapping.
#[test]
fn native_images_keep_their_upstream_names_in_the_nextflow_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pipeline");
    write(
        &root,
        "main.nf",
        "process GPU {\n    container 'nvcr.io/nvidia/clara/parabricks:4.2'\n    script:\n    'true'\n}\n\
         process QC {\n    container 'quay.io/biocontainers/fastqc:0.12.1--hdfd78af_0'\n    script:\n    'true'\n}\n",
    );
    let manifest = manifest(
        dir.path(),
        &[
            "nvcr.io/nvidia/clara/parabricks:4.2",
            "quay.io/biocontainers/fastqc:0.12.1--hdfd78af_0",
        ],
    );
    let credential =
        "nvcr.io=arn:aws:secretsmanager:us-east-1:123456789012:secret:omics-registry/nvcr.io-AbCdEf";
    let output = nextflow_map(
        &manifest,
        root.to_str().unwrap(),
        &["--credential", credential],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let config = text(&output.stdout);
    assert!(config.contains("withName: 'QC'"), "{config}");
    assert!(
        !config.contains("GPU") && !config.contains("nvcr"),
        "{config}"
    );
    // The same images without the credential are copied, and both processes are set.
    let copied = nextflow_map(&manifest, root.to_str().unwrap(), &[]);
    assert!(text(&copied.stdout).contains(&format!(
        "withName: 'GPU' {{\n        container = '{HOST}/nvcr/nvidia/clara/parabricks:4.2'"
    )));
}
