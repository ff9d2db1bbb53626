//! The field tables of `docs/access-log.md`, read so that the tests which
//! run real traffic (`waypoint/tests/access_log.rs`, the e2e
//! `tests/tests/access_log.rs`) check what is emitted against what is
//! documented, both ways. Included by path (`#[path = ...] mod
//! access_log;`); it needs only `serde_json`.
//!
//! The doc's shape it relies on: each log line is a `### ` heading, and
//! under it a table whose rows start with the field's name in backticks,
//! then its type (`string`, `integer`, `object`, `array`), then anything;
//! a row whose last cell starts with `absent` names a key that may be
//! missing (only the JSON envelope's `span` and `spans` do).

#![allow(dead_code)]

use std::collections::BTreeSet;

/// `docs/access-log.md` from a crate directory one below the workspace.
pub fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/access-log.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// One documented field (or envelope key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub kind: String,
    /// The key may be missing from a line.
    pub optional: bool,
}

/// The fields of the table under the `### ` heading that is exactly
/// `heading`; panics when there is no such heading or it has no table.
pub fn fields(doc: &str, heading: &str) -> Vec<Field> {
    let mut current: Option<&str> = None;
    let mut found = false;
    let mut out = Vec::new();
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            current = Some(h.trim());
            found |= h.trim() == heading;
            continue;
        }
        if line.starts_with("## ") {
            current = None;
            continue;
        }
        if current != Some(heading) {
            continue;
        }
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(name) = cells
            .first()
            .and_then(|c| c.strip_prefix('`'))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        let kind = cells.get(1).copied().unwrap_or("").to_string();
        assert!(
            ["string", "integer", "object", "array"].contains(&kind.as_str()),
            "{heading}: field {name} has type {kind:?} (string, integer, object or array)"
        );
        let last = cells.iter().rev().find(|c| !c.is_empty()).unwrap_or(&"");
        out.push(Field {
            name: name.to_string(),
            kind,
            optional: last.starts_with("absent"),
        });
    }
    assert!(found, "docs/access-log.md has no heading {heading:?}");
    assert!(!out.is_empty(), "{heading}: no field table");
    out
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::String(_) => "string",
        serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::Object(_) => "object",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Null => "null",
    }
}

/// Whether the JSON object `line` has exactly the keys of `envelope` and
/// `fields` (an optional key may be missing), each of its documented type;
/// what differs, if not.
pub fn check_json(
    line: &serde_json::Value,
    envelope: &[Field],
    fields: &[Field],
) -> Result<(), String> {
    let obj = line.as_object().ok_or("not a JSON object")?;
    let mut problems = Vec::new();
    let documented: BTreeSet<&str> = envelope
        .iter()
        .chain(fields)
        .map(|f| f.name.as_str())
        .collect();
    for key in obj.keys() {
        if !documented.contains(key.as_str()) {
            problems.push(format!("{key} is emitted but not documented"));
        }
    }
    for f in envelope.iter().chain(fields) {
        match obj.get(&f.name) {
            None if f.optional => {}
            None => problems.push(format!("{} is documented but not emitted", f.name)),
            Some(v) if kind_of(v) != f.kind => problems.push(format!(
                "{} is documented as {} but emitted as {} ({v})",
                f.name,
                f.kind,
                kind_of(v)
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Whether the text line has every one of `fields` as `name=`; which not.
pub fn check_text(line: &str, fields: &[Field]) -> Result<(), String> {
    let missing: Vec<&str> = fields
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| !line.contains(&format!(" {n}=")))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("no {} in the text line", missing.join(", ")))
    }
}

/// The JSON objects among `log`'s lines (a log may also hold plain lines).
pub fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The string at `key` of a JSON line ("" when none).
pub fn str_at<'a>(line: &'a serde_json::Value, key: &str) -> &'a str {
    line.get(key).and_then(|v| v.as_str()).unwrap_or("")
}
