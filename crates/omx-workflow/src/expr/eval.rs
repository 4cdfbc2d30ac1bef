//! Evaluating an [`Expr`] to the strings (or WDL structs) it may be: every branch of a
//! conditional, the first defined option of a fallback, every combination of a join.

use std::path::Path;

use super::{Candidate, Expr, Scope, Value, MAX_CANDIDATES};
use crate::Location;

impl Value {
    /// The value of `path` (`docker`, or `a.b`) inside this one, as WDL's member access
    /// reads it; `name` is how the whole is written, for reasons.
    pub fn member(self, path: &[&str], name: &str) -> Value {
        let Some((field, rest)) = path.split_first() else {
            return self;
        };
        let Value::Candidates(candidates) = self else {
            return Value::Undefined;
        };
        let mut found = Vec::new();
        let mut any_defined = false;
        for candidate in candidates {
            let value = match candidate {
                Candidate::Record(members) => members
                    .into_iter()
                    .find(|(member, _)| member == field)
                    .map_or(Value::Undefined, |(_, value)| value.member(rest, name)),
                Candidate::Known { .. } => {
                    Value::unknown(format!("`{name}`: a string has no member `{field}`"))
                }
                unknown @ Candidate::Unknown { .. } => Value::Candidates(vec![unknown]),
            };
            if let Value::Candidates(c) = value {
                any_defined = true;
                found.extend(c);
            }
        }
        if any_defined {
            Value::Candidates(found)
        } else {
            Value::Undefined
        }
    }
}

/// What `expr`, written in `file`, may evaluate to.
pub(crate) fn evaluate(expr: &Expr, file: &Path, scope: &dyn Scope) -> Value {
    match expr {
        Expr::Literal { text, line } => Value::known(
            text.clone(),
            Location {
                file: file.to_path_buf(),
                line: *line,
            },
        ),
        Expr::Var { name, .. } => scope.lookup(name),
        Expr::Opaque { source } => {
            Value::unknown(format!("`{source}` is only known when the workflow runs"))
        }
        Expr::AnyOf(branches) | Expr::Array(branches) => {
            let values: Vec<Value> = branches.iter().map(|b| evaluate(b, file, scope)).collect();
            if values.iter().all(|v| *v == Value::Undefined) {
                return Value::Undefined;
            }
            Value::Candidates(
                values
                    .into_iter()
                    .flat_map(|v| match v {
                        Value::Undefined => Vec::new(),
                        Value::Candidates(c) => c,
                    })
                    .collect(),
            )
        }
        Expr::Object(members) => Value::Candidates(vec![Candidate::Record(
            members
                .iter()
                .map(|(name, value)| (name.clone(), evaluate(value, file, scope)))
                .collect(),
        )]),
        Expr::FirstDefined(options) => {
            let mut candidates = Vec::new();
            for option in options {
                let Value::Candidates(found) = evaluate(option, file, scope) else {
                    continue;
                };
                let all_known = found
                    .iter()
                    .all(|c| !matches!(c, Candidate::Unknown { .. }));
                candidates.extend(found);
                if all_known {
                    break;
                }
                // An unknown option may turn out undefined at run time: the next is possible too.
            }
            if candidates.is_empty() {
                Value::Undefined
            } else {
                Value::Candidates(candidates)
            }
        }
        Expr::Join {
            pieces,
            line,
            source,
        } => join(pieces, *line, source, file, scope),
    }
}

/// Every combination of the pieces' candidates, concatenated.
fn join(pieces: &[Expr], line: usize, source: &str, file: &Path, scope: &dyn Scope) -> Value {
    let location = Location {
        file: file.to_path_buf(),
        line,
    };
    let mut combinations: Vec<Result<String, String>> = vec![Ok(String::new())];
    for piece in pieces {
        let options = match evaluate(piece, file, scope) {
            Value::Undefined => vec![Candidate::Unknown {
                reason: format!("a part of `{source}` has no value"),
            }],
            Value::Candidates(c) => c,
        };
        if combinations.len() * options.len() > MAX_CANDIDATES {
            return Value::unknown(format!("`{source}` can take too many values to list"));
        }
        combinations = combinations
            .iter()
            .flat_map(|prefix| {
                options.iter().map(move |option| match (prefix, option) {
                    (Err(reason), _) => Err(reason.clone()),
                    (Ok(_), Candidate::Unknown { reason }) => Err(reason.clone()),
                    (Ok(_), Candidate::Record(_)) => {
                        Err(format!("a part of `{source}` is a struct, not a string"))
                    }
                    (Ok(prefix), Candidate::Known { text, .. }) => Ok(format!("{prefix}{text}")),
                })
            })
            .collect();
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    for combination in combinations {
        let candidate = match combination {
            Ok(text) => Candidate::Known {
                text,
                location: location.clone(),
            },
            Err(reason) => Candidate::Unknown { reason },
        };
        if !candidates.contains(&candidate) {
            candidates.push(candidate);
        }
    }
    Value::Candidates(candidates)
}
