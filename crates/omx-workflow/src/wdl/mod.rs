//! WDL (draft-2, 1.0, 1.1, development): `docker` and `container` in `runtime` and
//! `requirements` sections, evaluated the way a run would: a call's input bindings first,
//! then the inputs file (`wf.call.name`, `wf.name`), then the declaration's default.
//!
//! Tasks are evaluated once per call that reaches them from a workflow nobody calls (the
//! workflow a user runs), so `String docker = "..."` defaults in the workflow flow into the
//! tasks, and a sub-workflow's outputs into its caller. Tasks and workflows no workflow calls
//! are evaluated on their own. Object and struct literals and member access are evaluated
//! (GATK-SV's `RuntimeAttr`).

mod inputs;
mod parse;
mod site_warnings;

use std::cell::RefCell;

use site_warnings::SiteWarnings;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::expr::{evaluate, Scope, Value};
use crate::image::ContainerSite;
use crate::{resolve_relative, Location, ScanReport, SourceFile, Warning, WarningKind};

pub use inputs::{InputsError, WdlInputs};
pub(crate) use parse::imported_paths;
use parse::{parse_document, Call, Declaration, Document, Import, Task, Workflow};

/// How deep sub-workflow calls are followed (WDL forbids cycles; this guards against them).
const MAX_CALL_DEPTH: usize = 32;

/// Scans WDL documents together, following calls across imports.
pub(crate) fn scan(sources: &[&SourceFile], inputs: Option<&WdlInputs>) -> ScanReport {
    let documents: Vec<Document> = sources.iter().map(|s| parse_document(s)).collect();
    let project = Project {
        index: documents
            .iter()
            .enumerate()
            .map(|(i, d)| (d.path.to_path_buf(), i))
            .collect(),
        documents: &documents,
        inputs,
        site_warnings: RefCell::default(),
    };
    let mut report = ScanReport::default();
    project.warn_about_missing_imports(&mut report);
    let called = project.called_targets();
    for (d, document) in documents.iter().enumerate() {
        for workflow in &document.workflows {
            if !called.contains(&(d, Kind::Workflow, workflow.name.clone())) {
                let scope = project.scope(
                    d,
                    &workflow.declarations,
                    &workflow.calls,
                    &workflow.name,
                    HashMap::new(),
                );
                project.evaluate_workflow(d, workflow, scope, 0, &mut report);
            }
        }
        for task in &document.tasks {
            if !called.contains(&(d, Kind::Task, task.name.clone())) {
                let scope = project.scope(d, &task.declarations, &[], &task.name, HashMap::new());
                project.evaluate_task(d, task, &scope, &mut report);
            }
        }
    }
    report
        .warnings
        .extend(project.site_warnings.into_inner().into_warnings());
    report
}

struct Project<'a> {
    documents: &'a [Document<'a>],
    index: HashMap<PathBuf, usize>,
    inputs: Option<&'a WdlInputs>,
    /// The tasks' unresolved images, merged across the calls that evaluate them.
    site_warnings: RefCell<SiteWarnings>,
}

/// Tasks and workflows have separate names: a document may hold a task and a workflow both
/// called `run_x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Task,
    Workflow,
}

enum Callee<'a> {
    Task(usize, &'a Task),
    Workflow(usize, &'a Workflow),
}

impl<'a> Project<'a> {
    fn import_target(&self, document: usize, import: &Import) -> Option<usize> {
        if import.uri.contains("://") {
            return None;
        }
        let path = resolve_relative(self.documents[document].path, &import.uri);
        self.index.get(&path).copied()
    }

    fn warn_about_missing_imports(&self, report: &mut ScanReport) {
        for (d, document) in self.documents.iter().enumerate() {
            for import in &document.imports {
                if self.import_target(d, import).is_none() {
                    report.warnings.push(Warning {
                        location: Location {
                            file: document.path.to_path_buf(),
                            line: import.line,
                        },
                        kind: WarningKind::Unreadable,
                        message: format!(
                            "the imported document `{}` was not found (remote imports are not \
                             fetched); the images of its tasks are not listed",
                            import.uri
                        ),
                    });
                }
            }
        }
    }

    /// Resolves a call's target; `None` when it lies in a document that is not available.
    fn callee(&self, document: usize, call: &Call) -> Option<Callee<'a>> {
        let (d, name) = match call.target.as_slice() {
            [name] => (document, name),
            [namespace, name] => {
                let import = self.documents[document]
                    .imports
                    .iter()
                    .find(|i| &i.namespace == namespace)?;
                (self.import_target(document, import)?, name)
            }
            _ => return None,
        };
        let target = &self.documents[d];
        if let Some(task) = target.tasks.iter().find(|t| &t.name == name) {
            return Some(Callee::Task(d, task));
        }
        let workflow = target.workflows.iter().find(|w| &w.name == name)?;
        Some(Callee::Workflow(d, workflow))
    }

    /// `(document, kind, name)` of every task and workflow some workflow calls. The kind is
    /// part of the key: `workflow run_x { call run_x }` calls the task `run_x`, and the
    /// workflow of the same name is still one nobody calls.
    fn called_targets(&self) -> HashSet<(usize, Kind, String)> {
        let mut called = HashSet::new();
        for (d, document) in self.documents.iter().enumerate() {
            for call in document.workflows.iter().flat_map(|w| &w.calls) {
                match self.callee(d, call) {
                    Some(Callee::Task(target, task)) => {
                        called.insert((target, Kind::Task, task.name.clone()))
                    }
                    Some(Callee::Workflow(target, w)) => {
                        called.insert((target, Kind::Workflow, w.name.clone()))
                    }
                    None => false,
                };
            }
        }
        called
    }

    /// The scope of a task (`calls` empty) or workflow, for the run at `input_prefix`.
    fn scope(
        &'a self,
        document: usize,
        declarations: &'a [Declaration],
        calls: &'a [Call],
        input_prefix: &str,
        bindings: HashMap<String, Value>,
    ) -> DeclarationScope<'a> {
        DeclarationScope {
            project: self,
            document,
            declarations,
            calls,
            input_prefix: input_prefix.to_string(),
            bindings,
            resolving: RefCell::new(Vec::new()),
        }
    }

    fn evaluate_workflow(
        &self,
        d: usize,
        workflow: &Workflow,
        scope: DeclarationScope,
        depth: usize,
        report: &mut ScanReport,
    ) {
        let document = &self.documents[d];
        for call in &workflow.calls {
            let Some(callee) = self.callee(d, call) else {
                if call.target.len() == 1 {
                    report.warnings.push(Warning {
                        location: Location {
                            file: document.path.to_path_buf(),
                            line: call.line,
                        },
                        kind: WarningKind::Unreadable,
                        message: format!(
                            "no task or workflow `{}` for this call; its images are not listed",
                            call.target.join(".")
                        ),
                    });
                }
                continue;
            };
            match callee {
                Callee::Task(target, task) => {
                    let task_scope = scope.callee_scope(call, target, &task.declarations, &[]);
                    self.evaluate_task(target, task, &task_scope, report);
                }
                Callee::Workflow(target, sub) if depth < MAX_CALL_DEPTH => {
                    let sub_scope = scope.callee_scope(call, target, &sub.declarations, &sub.calls);
                    self.evaluate_workflow(target, sub, sub_scope, depth + 1, report);
                }
                Callee::Workflow(..) => {}
            }
        }
    }

    fn evaluate_task(
        &self,
        d: usize,
        task: &Task,
        scope: &DeclarationScope,
        report: &mut ScanReport,
    ) {
        let path = self.documents[d].path;
        let context = format!(" in `{}`", scope.input_prefix);
        for container in &task.containers {
            let site = ContainerSite {
                location: Location {
                    file: path.to_path_buf(),
                    line: container.line,
                },
                expression: &container.source,
                context: &context,
                default_registry: None,
                process: None,
            };
            let mut evaluated = ScanReport::default();
            site.record(evaluate(&container.expr, path, scope), &mut evaluated);
            let mut site_warnings = self.site_warnings.borrow_mut();
            for warning in std::mem::take(&mut evaluated.warnings) {
                site_warnings.add(warning, &scope.input_prefix);
            }
            report.merge(evaluated);
        }
    }
}

/// The variables of one task or workflow, as one call (or a run of it alone) sees them.
struct DeclarationScope<'a> {
    project: &'a Project<'a>,
    document: usize,
    declarations: &'a [Declaration],
    /// A workflow's calls, whose outputs it may read (`call.name`).
    calls: &'a [Call],
    /// `wf.call` for a call's task, `wf` or `task` for what runs alone: the inputs-file prefix.
    input_prefix: String,
    bindings: HashMap<String, Value>,
    /// Names being evaluated, to stop on declarations that refer to each other.
    resolving: RefCell<Vec<String>>,
}

impl Scope for DeclarationScope<'_> {
    /// A variable, or a member of one (`runtime_attr.docker`, a struct's member).
    fn lookup(&self, name: &str) -> Value {
        let mut path = name.split('.');
        let variable = path.next().unwrap_or_default();
        let members: Vec<&str> = path.collect();
        let is_known = self.bindings.contains_key(variable)
            || self.declarations.iter().any(|d| d.name == variable);
        if members.is_empty() {
            return self.variable(name);
        }
        if is_known {
            return self.variable(variable).member(&members, name);
        }
        match self.workflow_call_output(variable, &members) {
            Some(value) => value,
            None => self.variable(name),
        }
    }
}

impl<'a> DeclarationScope<'a> {
    /// The scope `call` gives its task or workflow: its bindings evaluated here.
    fn callee_scope(
        &self,
        call: &Call,
        target: usize,
        declarations: &'a [Declaration],
        calls: &'a [Call],
    ) -> DeclarationScope<'a> {
        let path = self.project.documents[self.document].path;
        let bindings: HashMap<String, Value> = call
            .bindings
            .iter()
            .map(|(name, expr)| (name.clone(), evaluate(expr, path, self)))
            .collect();
        let prefix = format!("{}.{}", self.input_prefix, call.name);
        self.project
            .scope(target, declarations, calls, &prefix, bindings)
    }

    /// `call.output` (and members of it) for a call of a sub-workflow, evaluated as that
    /// call runs it; `None` when `call_name` names no such call. Task outputs come from
    /// files and commands, so they stay unknown.
    fn workflow_call_output(&self, call_name: &str, members: &[&str]) -> Option<Value> {
        let call = self.calls.iter().find(|c| c.name == call_name)?;
        let Some(Callee::Workflow(target, sub)) = self.project.callee(self.document, call) else {
            return None;
        };
        let guard = format!("{call_name}.{}", members.join("."));
        if self.resolving.borrow().contains(&guard) {
            return Some(Value::unknown(format!("`{guard}` refers to itself")));
        }
        self.resolving.borrow_mut().push(guard);
        let sub_scope = self.callee_scope(call, target, &sub.declarations, &sub.calls);
        let value = sub_scope.lookup(&members.join("."));
        self.resolving.borrow_mut().pop();
        Some(value)
    }

    fn variable(&self, name: &str) -> Value {
        if let Some(value) = self.bindings.get(name) {
            if *value != Value::Undefined {
                return value.clone();
            }
        }
        let Some(declaration) = self.declarations.iter().find(|d| d.name == name) else {
            return Value::unknown(format!("`{name}` is only known when the workflow runs"));
        };
        let key = format!("{}.{name}", self.input_prefix);
        if declaration.is_input {
            if let Some(value) = self.project.inputs.and_then(|inputs| inputs.value(&key)) {
                return value;
            }
        }
        match &declaration.default {
            Some(_) if self.resolving.borrow().iter().any(|n| n == name) => {
                Value::unknown(format!("`{name}` refers to itself"))
            }
            Some(default) => {
                self.resolving.borrow_mut().push(name.to_string());
                let path = self.project.documents[self.document].path;
                let value = evaluate(default, path, self);
                self.resolving.borrow_mut().pop();
                value
            }
            None if declaration.optional => Value::Undefined,
            None => Value::unknown(format!(
                "`{name}` has no default; give `{key}` in the inputs file (--inputs)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wdl(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            text: text.into(),
            language: crate::Language::Wdl,
        }
    }

    fn found(report: &ScanReport) -> Vec<String> {
        report
            .findings
            .iter()
            .map(|f| format!("{} {}", f.image, f.location))
            .collect()
    }

    #[test]
    fn call_bindings_flow_from_workflow_defaults_into_tasks() {
        let source = wdl(
            "w.wdl",
            r#"version 1.0
workflow w {
  input {
    String image = "ubuntu:22.04"
  }
  call t { input: docker = image }
  call t as t2
  scatter (x in [1, 2]) {
    call t as t3 { input: docker = "alpine:3" }
  }
}
task t {
  input {
    String docker = "debian:12"
  }
  command <<< echo "}" >>>
  runtime {
    docker: docker
    memory: "1 GB"
  }
}
"#,
        );
        let mut report = scan(&[&source], None);
        report.sort_and_dedup();
        assert_eq!(
            found(&report),
            vec![
                "alpine:3 w.wdl:9",
                "debian:12 w.wdl:14",
                "ubuntu:22.04 w.wdl:4"
            ]
        );
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn inputs_file_overrides_defaults_but_not_bindings() {
        let source = wdl(
            "w.wdl",
            "version 1.0\nworkflow w {\n  input { String image = \"a:1\" }\n  call t { input: docker = image }\n  call t as u\n}\ntask t {\n  input { String docker = \"b:1\" }\n  runtime { docker: \"~{docker}\" }\n}\n",
        );
        let inputs = WdlInputs::parse(
            "in.json",
            "{\n  \"w.image\": \"c:1\",\n  \"w.t.docker\": \"ignored:1\",\n  \"w.u.docker\": \"d:1\"\n}",
        )
        .unwrap();
        let mut report = scan(&[&source], Some(&inputs));
        report.sort_and_dedup();
        assert_eq!(found(&report), vec!["c:1 in.json:2", "d:1 in.json:4"]);
    }

    #[test]
    fn required_input_without_default_is_a_warning_naming_the_key() {
        let source = wdl(
            "t.wdl",
            "version 1.1\ntask t {\n  input {\n    String docker\n    String? extra\n  }\n  runtime {\n    container: [docker, \"x:1\"]\n  }\n}\n",
        );
        let report = scan(&[&source], None);
        assert_eq!(found(&report), vec!["x:1 t.wdl:8"]);
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].location.line, 8);
        assert_eq!(
            report.warnings[0].message,
            "cannot resolve the container image `[docker, \"x:1\"]` in `t`: `docker` has no \
             default; give `t.docker` in the inputs file (--inputs)"
        );
    }

    #[test]
    fn imports_resolve_relative_to_the_importing_file() {
        let main = wdl(
            "wf/main.wdl",
            "version 1.0\nimport \"../tasks/align.wdl\" as align\nimport \"https://x/y.wdl\"\nworkflow main {\n  String img = \"bwa:0.7\"\n  call align.bwa { input: image = img }\n}\n",
        );
        let tasks = wdl(
            "tasks/align.wdl",
            "version 1.0\ntask bwa {\n  input { String image }\n  runtime { docker: image }\n}\n",
        );
        assert_eq!(
            imported_paths(&main.text),
            vec!["../tasks/align.wdl", "https://x/y.wdl"]
        );
        let report = scan(&[&main, &tasks], None);
        assert_eq!(found(&report), vec!["bwa:0.7 wf/main.wdl:5"]);
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].location.line, 3);
    }

    #[test]
    fn select_first_and_concatenation() {
        let source = wdl(
            "t.wdl",
            "version 1.0\ntask t {\n  input {\n    String? override\n    String version = \"4.5\"\n  }\n  String image = select_first([override, \"broad/gatk:\" + version])\n  runtime { docker: image }\n}\n",
        );
        let report = scan(&[&source], None);
        assert_eq!(found(&report), vec!["broad/gatk:4.5 t.wdl:7"]);
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn self_reference_does_not_loop() {
        let source = wdl(
            "t.wdl",
            "version 1.0\ntask t {\n  String a = b\n  String b = a\n  runtime { docker: a }\n}\n",
        );
        let report = scan(&[&source], None);
        assert!(report.findings.is_empty());
        assert!(report.warnings[0].message.contains("refers to itself"));
    }

    #[test]
    fn inputs_errors() {
        assert_eq!(WdlInputs::parse("x", "[]"), Err(InputsError::NotAnObject));
        assert!(matches!(
            WdlInputs::parse("x", "{"),
            Err(InputsError::Syntax { line: 1, .. })
        ));
    }
}
