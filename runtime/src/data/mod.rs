//! Data: examples stored as named columns, raw ids mapped to dense indices.
//!
//! Every reader produces a [`Dataset`]. Splits are lists of row numbers into
//! one dataset, so train and test share the same id maps and nothing is
//! copied. Indices are validated here, when data is loaded: every index in a
//! column is below the size of its domain's [`IdMap`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// Raw ids of one domain (`"196"`, `"Star Wars (1977)"`) and their dense indices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdMap {
    names: Vec<String>,
    labels: Vec<Option<String>>,
    index: HashMap<String, u32>,
}

impl IdMap {
    pub fn new() -> IdMap {
        IdMap::default()
    }

    /// The index of `name`, adding it if it is new.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.labels.push(None);
        self.index.insert(name.to_string(), i);
        i
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// The raw id of index `i`.
    pub fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("?", String::as_str)
    }

    /// A human-readable label (a film's title), or the raw id.
    pub fn label(&self, i: u32) -> &str {
        match self.labels.get(i as usize) {
            Some(Some(l)) => l,
            _ => self.name(i),
        }
    }

    pub fn set_label(&mut self, i: u32, label: &str) {
        if let Some(slot) = self.labels.get_mut(i as usize) {
            *slot = Some(label.to_string());
        }
    }

    /// Find an index by raw id, or else by exact label.
    pub fn find(&self, key: &str) -> Option<u32> {
        self.get(key).or_else(|| {
            self.labels
                .iter()
                .position(|l| l.as_deref() == Some(key))
                .map(|i| i as u32)
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn labels(&self) -> &[Option<String>] {
        &self.labels
    }
}

/// The values of one column, one per example row.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    /// Dense indices into the id map of `domain`.
    Index { domain: String, values: Vec<u32> },
    /// A number per row (rating, play count, age).
    Real(Vec<f64>),
    /// Unix seconds. Time-ordered histories and `day`/`week`/`month`
    /// buckets are derived from it.
    Time(Vec<i64>),
    /// Row `r` holds `members[offsets[r]..offsets[r + 1]]` with the same
    /// range of `weights`. `offsets` has one more entry than there are rows.
    Bag {
        domain: String,
        offsets: Vec<usize>,
        members: Vec<u32>,
        weights: Vec<f64>,
    },
}

impl ColumnData {
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Index { values, .. } => values.len(),
            ColumnData::Real(v) => v.len(),
            ColumnData::Time(v) => v.len(),
            ColumnData::Bag { offsets, .. } => offsets.len().saturating_sub(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The domain of an index or bag column.
    pub fn domain(&self) -> Option<&str> {
        match self {
            ColumnData::Index { domain, .. } | ColumnData::Bag { domain, .. } => Some(domain),
            ColumnData::Real(_) | ColumnData::Time(_) => None,
        }
    }

    /// What the column holds, for messages: `index(user)`, `real`, `time`, `bag(genre)`.
    pub fn kind(&self) -> String {
        match self {
            ColumnData::Index { domain, .. } => format!("index({domain})"),
            ColumnData::Real(_) => "real".to_string(),
            ColumnData::Time(_) => "time".to_string(),
            ColumnData::Bag { domain, .. } => format!("bag({domain})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub data: ColumnData,
}

/// Examples as named columns of equal length, with the id maps of their domains.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// Where the data came from, for reports (`ml-100k u1`, a file name).
    pub name: String,
    pub columns: Vec<Column>,
    pub domains: BTreeMap<String, IdMap>,
    /// The numeric column a model's `real` input reads unless bound otherwise.
    pub target: Option<String>,
    /// The index column naming whose example a row is: per-user splits,
    /// histories, negatives and ranking metrics group by it.
    pub user: Option<String>,
    /// The index column of the things recommended.
    pub item: Option<String>,
    /// The time column, if any.
    pub time: Option<String>,
    /// Bad lines skipped under `--skip-bad-lines`.
    pub skipped: usize,
    /// What the reader decided that the user should hear of (a first line
    /// read as a header), one sentence each.
    pub notes: Vec<String>,
}

impl Dataset {
    /// The number of example rows.
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, |c| c.data.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The index values of the named index column.
    pub fn indices(&self, name: &str) -> Option<(&str, &[u32])> {
        match &self.column(name)?.data {
            ColumnData::Index { domain, values } => Some((domain, values)),
            _ => None,
        }
    }

    /// The user column's domain and values.
    pub fn users(&self) -> Option<(&str, &[u32])> {
        self.indices(self.user.as_deref()?)
    }

    /// The item column's domain and values.
    pub fn items(&self) -> Option<(&str, &[u32])> {
        self.indices(self.item.as_deref()?)
    }

    pub fn times(&self) -> Option<&[i64]> {
        match &self.column(self.time.as_deref()?)?.data {
            ColumnData::Time(t) => Some(t),
            _ => None,
        }
    }

    pub fn domain_size(&self, domain: &str) -> usize {
        self.domains.get(domain).map_or(0, IdMap::len)
    }

    /// Check the invariants every reader promises: columns of equal length,
    /// unique names, every index inside its domain, well-formed bags.
    pub fn validate(&self) -> Result<(), DataError> {
        let n = self.len();
        let bad = |m: String| Err(DataError::Invalid(format!("{}: {m}", self.name)));
        for (k, c) in self.columns.iter().enumerate() {
            if self.columns[..k].iter().any(|o| o.name == c.name) {
                return bad(format!("two columns are named `{}`", c.name));
            }
            if c.data.len() != n {
                return bad(format!(
                    "column `{}` has {} rows, expected {n}",
                    c.name,
                    c.data.len()
                ));
            }
            let in_domain = |domain: &str, values: &[u32]| {
                let size = self.domain_size(domain);
                match values.iter().find(|&&v| v as usize >= size) {
                    Some(v) => bad(format!(
                        "column `{}` holds index {v}, outside domain `{domain}` of {size}",
                        c.name
                    )),
                    None => Ok(()),
                }
            };
            match &c.data {
                ColumnData::Index { domain, values } => in_domain(domain, values)?,
                ColumnData::Bag {
                    domain,
                    offsets,
                    members,
                    weights,
                } => {
                    if offsets.first() != Some(&0)
                        || offsets.last() != Some(&members.len())
                        || offsets.windows(2).any(|w| w[0] > w[1])
                        || weights.len() != members.len()
                    {
                        return bad(format!("bag column `{}` is malformed", c.name));
                    }
                    in_domain(domain, members)?
                }
                ColumnData::Real(_) | ColumnData::Time(_) => {}
            }
        }
        for role in [&self.target, &self.user, &self.item, &self.time]
            .into_iter()
            .flatten()
        {
            if self.column(role).is_none() {
                return bad(format!("no column `{role}`"));
            }
        }
        Ok(())
    }
}

/// Text from a data file as a message shows it: quoted, control
/// characters escaped (an escape sequence would be obeyed by the terminal,
/// not shown) and cut after [`SHOWN_CHARS`] characters, so a binary file's
/// bytes never reach the terminal as they are.
pub fn shown(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    let mut out = format!("{head:?}");
    if chars.next().is_some() {
        out.push_str(&format!(" (cut; {} bytes in all)", text.len()));
    }
    out
}

/// How much of a field a message shows.
pub const SHOWN_CHARS: usize = 40;

/// A location in an input file, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line that does not parse: file, line number, what was wrong.
    #[error("{at}: {message}")]
    BadLine { at: Location, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What to do with a line that does not parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadLines {
    /// Stop with a located error (the default).
    #[default]
    Fail,
    /// Skip it and count it in [`Dataset::skipped`].
    Skip,
}

pub mod amazon;
pub mod delimited;
pub mod lastfm;
pub mod movielens;
pub mod spec;
pub mod text;
pub mod tree;

impl Dataset {
    /// Write `rows` as tab-separated text with a header, raw ids restored
    /// (bags as `a|b|c`), so other tools can train on exactly these rows.
    /// A header field declares its column's kind (`genres:bag(genre)`)
    /// where its name and values alone would be read back as another, so
    /// the file reads back into the same columns. The file appears only
    /// once complete.
    pub fn write_tsv(&self, path: &Path, rows: &[usize]) -> Result<(), DataError> {
        use std::io::Write;
        let id = |domain: &str, i: u32| {
            self.domains
                .get(domain)
                .map_or_else(|| i.to_string(), |m| m.name(i).to_string())
        };
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let (kind, numeric) = match &c.data {
                    ColumnData::Index { domain, values } => (
                        delimited::ColumnKind::Index(domain.clone()),
                        rows.iter()
                            .all(|&r| id(domain, values[r]).parse::<f64>().is_ok()),
                    ),
                    ColumnData::Real(_) => (delimited::ColumnKind::Real, true),
                    ColumnData::Time(_) => (delimited::ColumnKind::Time, true),
                    ColumnData::Bag { domain, .. } => (
                        delimited::ColumnKind::Bag {
                            domain: domain.clone(),
                            separator: '|',
                        },
                        false,
                    ),
                };
                delimited::header_field(&c.name, &kind, numeric)
            })
            .collect();
        // The model files' writer: a recognisable temporary file beside the
        // target (stale ones of killed writers removed), synced, renamed.
        crate::modelfile::write_atomic(path, |w| {
            writeln!(w, "{}", header.join("\t"))?;
            for &r in rows {
                let fields: Vec<String> = self
                    .columns
                    .iter()
                    .map(|c| match &c.data {
                        ColumnData::Index { domain, values } => id(domain, values[r]),
                        ColumnData::Real(v) => v[r].to_string(),
                        ColumnData::Time(v) => v[r].to_string(),
                        ColumnData::Bag {
                            domain,
                            offsets,
                            members,
                            ..
                        } => members[offsets[r]..offsets[r + 1]]
                            .iter()
                            .map(|&m| id(domain, m))
                            .collect::<Vec<_>>()
                            .join("|"),
                    })
                    .collect();
                writeln!(w, "{}", fields.join("\t"))?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            crate::modelfile::ModelFileError::Io { path, source } => DataError::Io { path, source },
            other => DataError::Invalid(other.to_string()),
        })
    }
}
