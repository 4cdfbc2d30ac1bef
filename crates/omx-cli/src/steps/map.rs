//! Placing a workflow's containers on its Nextflow processes: each process's private image.

use std::path::Path;

use omx_core::workflow_map::{ContainerSetting, ImageLookup, NextflowConfig, Unplaced};
use omx_workflow::ScanReport;

/// Every container the scan found, placed on the processes it belongs to.
pub fn nextflow_config(scan: &ScanReport, lookup: &ImageLookup) -> NextflowConfig {
    let mut config = NextflowConfig::default();
    for finding in &scan.findings {
        let location = finding.location.to_string();
        let unplaced = |reason: String| Unplaced {
            image: finding.image.clone(),
            location: location.clone(),
            reason,
        };
        let Some(image) = lookup.find(&finding.image) else {
            config.add_unplaced(unplaced(
                "not in the manifest: add it and run `pull`".to_string(),
            ));
            continue;
        };
        if image.strategy == omx_core::strategy::Strategy::Native {
            // HealthOmics fetches it under its upstream name, which the process keeps.
            continue;
        }
        if !is_nextflow_file(&finding.location.file) {
            config.add_unplaced(unplaced("not in a Nextflow file".to_string()));
            continue;
        }
        match finding.process.clone() {
            Some(selector) => config.add(ContainerSetting {
                selector,
                image: finding.image.clone(),
                private_uri: image.target.clone(),
                location,
            }),
            None => config.add_unplaced(unplaced(
                "not inside a process definition or `process` scope".to_string(),
            )),
        }
    }
    for warning in &scan.warnings {
        config.add_unplaced(Unplaced {
            image: "(unknown image)".to_string(),
            location: warning.location.to_string(),
            reason: warning.message.clone(),
        });
    }
    config
}

/// A Nextflow script (`*.nf`) or configuration file (`*.config`).
pub fn is_nextflow_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("nf" | "config")
    )
}
