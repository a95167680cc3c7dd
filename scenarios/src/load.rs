//! Loading scenario files: parse errors with file, line and column, and the directory walk.

use std::fmt;
use std::path::{Path, PathBuf};

use eswitch::PortId;
use model::nic::faults::Fault;

use crate::format::{Attach, Proto, ScenarioFile, Step};

/// A scenario file that could not be read: where and why.
#[derive(Debug)]
pub struct LoadError {
    pub file: PathBuf,
    /// 1-based line and column, when the parser knows the position.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub cause: LoadCause,
}

/// Why a scenario file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadCause {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("{}", .0.message().trim())]
    Toml(#[from] Box<toml::de::Error>),
    /// A file-level value the runner cannot use (a name that is not a file name, two endpoints
    /// of one name).
    #[error("{key}: {message}")]
    File { key: &'static str, message: String },
    /// A step that parses as TOML but cannot run on the scenario's card (a fault the grammar
    /// refuses, a port the card lacks).
    #[error("step {} ({}): {}", .index + 1, .action, .message)]
    Step {
        /// 0-based, as in the report.
        index: usize,
        action: &'static str,
        message: String,
    },
}

impl LoadError {
    /// What is wrong, without the position.
    pub fn message(&self) -> String {
        self.cause.to_string()
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.cause),
            _ => write!(f, "{}: {}", self.file.display(), self.cause),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// A parsed scenario file.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub path: PathBuf,
    pub name: String,
    pub file: ScenarioFile,
}

impl Scenario {
    /// What the file's `[run]` table asks its guests to boot, paths taken from the file's
    /// directory.
    pub fn guest_build(&self) -> crate::qemu::GuestBuild {
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        self.file.run.build(dir)
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

/// Steps are an internally tagged enum, for which the parser reports an unknown key at the
/// start of its table; point at the key itself when the table holds it.
fn refine_unknown_key(text: &str, span: std::ops::Range<usize>, message: &str) -> usize {
    let Some(key) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return span.start;
    };
    // The table runs from its header to the next header.
    let mut offset = span.start;
    let rest = text.get(span.start..).unwrap_or("");
    for (n, line) in rest.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if n > 0 && trimmed.starts_with('[') {
            break;
        }
        let after = trimmed.strip_prefix(key).unwrap_or("");
        if !after.is_empty() && after.trim_start().starts_with(['=', '.']) {
            return offset + (line.len() - trimmed.len());
        }
        offset += line.len();
    }
    span.start
}

/// Parses scenario text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, LoadError> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| {
        let pos = e
            .span()
            .map(|s| line_col(text, refine_unknown_key(text, s, e.message())));
        LoadError {
            file: path.to_path_buf(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            cause: Box::new(e).into(),
        }
    })?;
    let refused = |offset: Option<usize>, cause| {
        let pos = offset.map(|o| line_col(text, o));
        Err(LoadError {
            file: path.to_path_buf(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            cause,
        })
    };
    if let Err((key, nth, cause)) = validate_file(&file) {
        return refused(top_value_offset(text, key, nth), cause);
    }
    if let Err((index, key, cause)) = validate(&file) {
        return refused(step_value_offset(text, index, key), cause);
    }
    let name = file.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map_or("scenario".into(), |s| s.to_string_lossy().into_owned())
    });
    Ok(Scenario {
        path: path.to_path_buf(),
        name,
        file,
    })
}

/// The longest a `wait` step waits, or a `traffic` step runs: a day. Simulated time is counted
/// in nanoseconds, which a far longer wait would overflow.
pub const MAX_STEP_MS: u64 = 24 * 60 * 60 * 1000;

/// The file's own values: its name names the capture files (`--pcap DIR`: `DIR/NAME-PORT.pcap`),
/// so it is a file name, never a path; endpoint names are unique. On error: the key (under
/// `endpoint`, which of them) and why.
fn validate_file(file: &ScenarioFile) -> Result<(), (&'static str, usize, LoadCause)> {
    let bad = |key, nth, message| Err((key, nth, LoadCause::File { key, message }));
    if let Some(name) = &file.name {
        if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
            return bad(
                "name",
                0,
                format!(
                    "{name:?} cannot name files: the report's capture files are \
                     `NAME-PORT.pcap`, so a name is a file name (no `/`)"
                ),
            );
        }
    }
    // As `serve` builds a port, which runs the scenario in the guest mode.
    let max = model::nic::MAX_VFS_PER_PORT;
    if !(1..=max).contains(&file.nic.vfs) {
        return bad(
            "nic",
            0,
            format!("vfs = {}: a port has 1..={max} VFs", file.nic.vfs),
        );
    }
    for (nth, e) in file.endpoints.iter().enumerate() {
        if file.endpoints[..nth].iter().any(|o| o.name == e.name) {
            return bad(
                "endpoint",
                nth,
                format!("two endpoints are named {:?}; steps name one", e.name),
            );
        }
    }
    Ok(())
}

/// What the card the scenario declares lets us check before it runs: each `fault` step's words
/// parse against its port's switch ports; a TCP `traffic` step has ends that some run can make
/// QEMU guests. On error: the step, the key to point at, and why.
fn validate(file: &ScenarioFile) -> Result<(), (usize, &'static str, LoadCause)> {
    let ports = file.nic.switch_ports();
    for (index, step) in file.steps.iter().enumerate() {
        let bad = |action, key, message| {
            Err((
                index,
                key,
                LoadCause::Step {
                    index,
                    action,
                    message,
                },
            ))
        };
        let long = match step {
            Step::Wait { ms, .. } => Some(("wait", "ms", *ms)),
            Step::Traffic {
                duration_ms: Some(ms),
                ..
            } => Some(("traffic", "duration_ms", *ms)),
            _ => None,
        };
        if let Some((action, key, ms)) = long.filter(|l| l.2 > MAX_STEP_MS) {
            return bad(
                action,
                key,
                format!("{ms} ms is more than a day ({MAX_STEP_MS} ms), the longest step"),
            );
        }
        match step {
            Step::Traffic {
                from,
                to,
                proto: Proto::Tcp,
                size,
                ..
            } => {
                if size.is_some() {
                    return bad(
                        "traffic",
                        "size",
                        "`size` is a UDP frame's length; TCP (iperf3) sizes its own segments"
                            .into(),
                    );
                }
                for (key, name) in [("from", from), ("to", to)] {
                    let Some(e) = file.endpoints.iter().find(|e| &e.name == name) else {
                        continue;
                    };
                    let guest_able = matches!(e.port.port, PortId::Vf(_))
                        && matches!(e.attach, Attach::Driver | Attach::Guest);
                    if !guest_able {
                        return bad(
                            "traffic",
                            key,
                            format!(
                                "proto = \"tcp\" runs iperf3 between two QEMU guests, and \
                                 {name} ({}) can never be one: a guest is a VF endpoint with \
                                 attach = \"driver\" (with --guests) or \"guest\"",
                                e.port
                            ),
                        );
                    }
                }
            }
            Step::Fault { port, fault, .. } => {
                if port.0 >= file.nic.ports {
                    return bad(
                        "fault",
                        "port",
                        format!(
                            "the card has no port {port} (`[nic] ports = {}`)",
                            file.nic.ports
                        ),
                    );
                }
                let words: Vec<&str> = fault.split_whitespace().collect();
                if let Err(e) = Fault::parse(&words, &ports) {
                    return bad("fault", "fault", format!("`{fault}`: {e}"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Byte offset of the top-level value `key` of `text`; of its `nth` table when it is an array of
/// tables (`[[endpoint]]`), at that table's `name`.
fn top_value_offset(text: &str, key: &str, nth: usize) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let value = doc.get_ref().get(key)?;
    match value.get_ref().as_array() {
        Some(tables) => {
            let table = tables.get(nth)?;
            Some(table.get_ref().get("name").unwrap_or(table).span().start)
        }
        None => Some(value.span().start),
    }
}

/// Byte offset of the value of `key` in the `index`-th step of `text` (of the step itself
/// when it has no `key`).
fn step_value_offset(text: &str, index: usize, key: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let step = doc.get_ref().get("step")?.get_ref().get(index)?;
    Some(step.get_ref().get(key).unwrap_or(step).span().start)
}

pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        cause: e.into(),
    })?;
    parse(path, &text)
}

/// The scenario files named: files as given; directories searched recursively for `*.toml`,
/// sorted, leaving out `Cargo.toml` (so a crate directory such as `scenarios/` works) and
/// `target` and hidden directories.
pub fn collect(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "toml") && name != "Cargo.toml" {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
        // An offset inside a multi-byte character is clamped, not a panic.
        assert_eq!(line_col("é", 1), (1, 1));
    }
}
