//! Checking an answer: split into YAML documents, parsed into our typed objects and matched one
//! to one with the given ones (what may change inside an object is [`super::allowed`]'s).

use crate::workers::codegen::objects::{Object, ObjectError};
use serde_json::Value;
use std::collections::BTreeMap;

/// One given object: how it is matched, and its fields (to compare the answer's with).
pub(super) struct Expected {
    pub(super) key: (String, String),
    pub(super) value: Value,
}

/// The answer's objects with their fields, keyed by (kind, name).
pub(super) type Answered = BTreeMap<(String, String), (Object, Value)>;

/// Parses an answer into objects keyed by (kind, name), or says everything wrong with it.
pub(super) fn check_answer(
    text: &str,
    finish_reason: Option<&str>,
    expected: &[Expected],
) -> Result<Answered, String> {
    let mut problems = Vec::new();
    if finish_reason == Some("length") {
        problems.push(
            "the answer was cut off (finish_reason: length); leave out anything not needed"
                .to_owned(),
        );
    }
    let wanted: BTreeMap<&(String, String), &Expected> =
        expected.iter().map(|e| (&e.key, e)).collect();
    let mut found: BTreeMap<(String, String), (Object, Value)> = BTreeMap::new();
    for (index, document) in split_documents(text).iter().enumerate() {
        let number = index + 1;
        let object = match Object::from_yaml(document) {
            Ok(object) => object,
            Err(err) => {
                problems.push(document_problem(number, &err));
                continue;
            }
        };
        let object_key = key(&object);
        let label = format!("{}/{}", object_key.0, object_key.1);
        if !wanted.contains_key(&object_key) {
            problems.push(format!(
                "document {number}: {label} was not given; add or rename no objects"
            ));
            continue;
        }
        if found.contains_key(&object_key) {
            problems.push(format!("document {number}: {label} appears more than once"));
            continue;
        }
        match object
            .to_yaml()
            .map_err(|e| e.to_string())
            .and_then(|y| yaml_value(&y))
        {
            Ok(value) => {
                found.insert(object_key, (object, value));
            }
            Err(err) => problems.push(format!("{label}: {err}")),
        }
    }
    for e in expected {
        if !found.contains_key(&e.key) {
            problems.push(format!(
                "{}/{} is missing; return every object you were given",
                e.key.0, e.key.1
            ));
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems.join("\n"))
    }
}

/// What is wrong with a document that is not one of our objects, in words a model can act on.
fn document_problem(number: usize, err: &ObjectError) -> String {
    match err {
        ObjectError::Unsupported { kind, .. } if kind == "Secret" => format!(
            "document {number} is a Secret; never emit Secret objects or secret values, refer to \
             existing Secrets by name only"
        ),
        ObjectError::Unsupported { api_version, kind }
            if api_version.is_empty() || kind.is_empty() =>
        {
            format!(
                "document {number} has no apiVersion or kind (prose or a fragment?); answer with \
                 YAML manifests only"
            )
        }
        ObjectError::Unsupported { api_version, kind } => format!(
            "document {number}: {api_version} {kind} is not one of the given objects' kinds; \
             keep every apiVersion and kind as given"
        ),
        other => format!("document {number}: {other}"),
    }
}

/// Splits an answer into YAML documents: `---` and `...` lines separate them, documents with no
/// content are skipped, and when the answer has Markdown fences (```` ```yaml ````) only the
/// fenced parts are read (models often wrap YAML in a fence with a sentence around it).
///
/// Splitting on lines is exact here: YAML forbids a document marker at column 0 inside a
/// document, and a backtick cannot start a line of a block document, so neither is content.
fn split_documents(text: &str) -> Vec<String> {
    let fenced = text.lines().any(is_fence);
    let mut inside_fence = false;
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut finish = |current: &mut String| {
        if current.lines().any(is_content) {
            documents.push(std::mem::take(current));
        } else {
            current.clear();
        }
    };
    for line in text.lines() {
        if is_fence(line) {
            finish(&mut current);
            inside_fence = !inside_fence;
        } else if fenced && !inside_fence {
            // Prose around the fenced YAML.
        } else if line.starts_with('%') {
            // A directive belongs to no document's content.
            finish(&mut current);
        } else if let Some(rest) = marker(line, "---") {
            finish(&mut current);
            // `--- |` or `--- !tag` start the document on the marker's line.
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
            }
        } else if marker(line, "...").is_some() {
            finish(&mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    finish(&mut current);
    documents
}

/// The rest of `line` after a document marker, if it is one (the marker then a blank or the end).
fn marker<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t', '\r'])).then(|| rest.trim())
}

fn is_fence(line: &str) -> bool {
    line.starts_with("```")
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

/// How an object is matched between the given manifests and the answer.
pub(super) fn key(object: &Object) -> (String, String) {
    (object.kind().to_owned(), object.name().to_owned())
}

/// An object's YAML as a JSON value, to compare the facts a refinement must keep.
pub(super) fn yaml_value(yaml: &str) -> Result<Value, String> {
    serde_saphyr::from_str::<Value>(yaml).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_fences_and_markers() {
        let answer = "```yaml\n---\na: 1\n--- # second\nb: 2\n...\n# only a comment\n---\n\n```\n";
        assert_eq!(split_documents(answer), ["a: 1\n", "b: 2\n"]);
        // Markers only count at column 0 and followed by a blank.
        let nested = "a: |\n  ---\n  x\nb: ---x\n";
        assert_eq!(split_documents(nested), [nested]);
        assert_eq!(split_documents("--- |\n  text\n"), ["|\n  text\n"]);
        assert!(split_documents("```\n```").is_empty());
        let wrapped = "Sure:\n```yaml\na: 1\n```\nand\n```\nb: 2\n```\nDone.";
        assert_eq!(split_documents(wrapped), ["a: 1\n", "b: 2\n"]);
        // A fence cut off by the token limit still yields what came before the cut.
        assert_eq!(split_documents("```yaml\na: 1\n"), ["a: 1\n"]);
    }
}
