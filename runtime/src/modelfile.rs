//! Model files: a trained model's parameters with everything needed to
//! read them back and to know where they came from.
//!
//! A file is the magic line `RECC-MODEL\n`, the format version as a `u32`,
//! the length of a JSON header as a `u64`, the header, and then every
//! table's values as `f64`, tables in header order, rows one after another.
//! All numbers are little-endian. The header holds everything except the
//! values: provenance (source text, data, settings), metrics, the training
//! history, the domains' raw ids and labels, and each table's name and shape.
//!
//! Values are stored as raw bits, so a model reloads bit for bit (`-0.0`,
//! subnormals and NaN payloads included). Numbers in the header that are
//! not finite (a diverged loss) are written as the strings `"NaN"`, `"inf"`
//! and `"-inf"`, since JSON has no spelling for them.
//!
//! Saving never leaves a half-written file: the bytes go to a temporary file
//! in the destination directory, which replaces the destination only once it
//! is complete and synced.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use recc_compiler::interp::Params;
use recc_compiler::ir::Graph;
use serde::{Deserialize, Serialize};

use crate::data::IdMap;

/// The layout [`save`] writes and the newest [`load`] reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first bytes of every model file.
pub const MAGIC: &[u8] = b"RECC-MODEL\n";

/// Bytes before the JSON header: magic, version, header length.
const PREAMBLE_LEN: u64 = MAGIC.len() as u64 + 4 + 8;

/// The raw ids of one domain, in index order, with their labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedDomain {
    pub name: String,
    pub ids: Vec<String>,
    pub labels: Vec<Option<String>>,
}

/// One parameter table: `rows` (the domain's size, or 1 for a global)
/// by `lanes`, values row after row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedTable {
    pub name: String,
    /// The domain whose ids name the rows; `None` for a global.
    pub domain: Option<String>,
    pub rows: usize,
    pub lanes: usize,
    /// Stored after the header, not in it.
    #[serde(skip)]
    pub values: Vec<f64>,
}

/// One epoch of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    #[serde(with = "json_f64")]
    pub loss: f64,
    #[serde(with = "json_f64_option")]
    pub validation: Option<f64>,
    #[serde(with = "json_f64")]
    pub seconds: f64,
}

/// Everything a model file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedModel {
    /// The recc that created the model (`env!("CARGO_PKG_VERSION")`).
    pub recc_version: String,
    pub model_name: String,
    /// The `.rec` file the model came from.
    pub source_name: String,
    /// The model's full source text.
    pub source: String,
    /// A description of the training data.
    pub data: String,
    /// Optimiser, learning rate, epochs, seed, split...
    pub settings: BTreeMap<String, String>,
    #[serde(with = "json_f64_map")]
    pub metrics: BTreeMap<String, f64>,
    pub history: Vec<EpochRecord>,
    pub domains: Vec<SavedDomain>,
    pub tables: Vec<SavedTable>,
}

/// Why a model file could not be read or written. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a recc model file", .0.display())]
    NotAModel(PathBuf),
    #[error(
        "{}: written by a newer recc (format {found}); this recc reads format {FORMAT_VERSION}",
        path.display()
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

impl ModelFileError {
    fn io(path: &Path, source: io::Error) -> ModelFileError {
        ModelFileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn corrupt(path: &Path, reason: impl Into<String>) -> ModelFileError {
        ModelFileError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

impl SavedDomain {
    pub fn from_id_map(name: &str, map: &IdMap) -> SavedDomain {
        SavedDomain {
            name: name.to_string(),
            ids: map.names().to_vec(),
            labels: map.labels().to_vec(),
        }
    }

    /// The id map back, with the same indices and labels. Ids are unique in
    /// any domain [`load`] returns.
    pub fn to_id_map(&self) -> IdMap {
        let mut map = IdMap::new();
        for (id, label) in self.ids.iter().zip(&self.labels) {
            let i = map.intern(id);
            if let Some(label) = label {
                map.set_label(i, label);
            }
        }
        map
    }
}

impl SavedModel {
    /// The tables as evaluator parameters, in order.
    pub fn params(&self, domain_sizes: Vec<usize>) -> Result<Params, ModelFileError> {
        let tables = self
            .tables
            .iter()
            .map(|t| {
                Array2::from_shape_vec((t.rows, t.lanes), t.values.clone()).map_err(|_| {
                    ModelFileError::corrupt(
                        Path::new(&self.model_name),
                        format!(
                            "table `{}` has {} values; {} rows × {} lanes need {}",
                            t.name,
                            t.values.len(),
                            t.rows,
                            t.lanes,
                            t.rows.saturating_mul(t.lanes)
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Params {
            domain_sizes,
            tables,
        })
    }

    /// The model's inconsistencies, if any: what a well-formed file never has.
    /// Checked before saving, after loading and before exporting.
    pub fn check(&self) -> Result<(), String> {
        let mut domain_sizes = BTreeMap::new();
        for d in &self.domains {
            if domain_sizes.insert(d.name.as_str(), d.ids.len()).is_some() {
                return Err(format!("domain `{}` appears twice", d.name));
            }
            if d.labels.len() != d.ids.len() {
                return Err(format!(
                    "domain `{}` has {} ids but {} labels",
                    d.name,
                    d.ids.len(),
                    d.labels.len()
                ));
            }
            let mut seen = HashSet::new();
            if let Some(id) = d.ids.iter().find(|id| !seen.insert(id.as_str())) {
                return Err(format!("domain `{}` lists id `{id}` twice", d.name));
            }
        }
        let mut names = HashSet::new();
        for t in &self.tables {
            if !is_plain_name(&t.name) {
                return Err(format!(
                    "table name `{}` is not usable as a file name",
                    t.name
                ));
            }
            if !names.insert(t.name.as_str()) {
                return Err(format!("table `{}` appears twice", t.name));
            }
            match &t.domain {
                Some(d) => match domain_sizes.get(d.as_str()) {
                    None => {
                        return Err(format!("table `{}` is over unknown domain `{d}`", t.name));
                    }
                    Some(&n) if n != t.rows => {
                        return Err(format!(
                            "table `{}` has {} rows but domain `{d}` has {n} ids",
                            t.name, t.rows
                        ));
                    }
                    Some(_) => {}
                },
                None if t.rows != 1 => {
                    return Err(format!("global table `{}` has {} rows", t.name, t.rows));
                }
                None => {}
            }
            if t.rows.checked_mul(t.lanes) != Some(t.values.len()) {
                return Err(format!(
                    "table `{}` has {} values; {} rows × {} lanes need {}",
                    t.name,
                    t.values.len(),
                    t.rows,
                    t.lanes,
                    t.rows.saturating_mul(t.lanes)
                ));
            }
        }
        Ok(())
    }
}

/// A table name that is safe as a file name: not empty, no path separators
/// or control characters, not `.` or `..`. Dots inside (`p.mean`) are fine.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// The graph's parameter tables, named as in the graph, values row-major.
pub fn tables_from_params(graph: &Graph, params: &Params) -> Vec<SavedTable> {
    graph
        .tables
        .iter()
        .zip(&params.tables)
        .map(|(t, values)| SavedTable {
            name: t.name.clone(),
            domain: t
                .domain
                .and_then(|d| graph.domains.get(d.index()))
                .map(|d| d.name.clone()),
            rows: values.nrows(),
            lanes: values.ncols(),
            values: values.iter().copied().collect(),
        })
        .collect()
}

/// Write `model` to `path`, replacing any file there only once the new one
/// is complete.
pub fn save(path: &Path, model: &SavedModel) -> Result<(), ModelFileError> {
    model
        .check()
        .map_err(|reason| ModelFileError::corrupt(path, format!("cannot save model: {reason}")))?;
    let header = serde_json::to_vec(model)
        .map_err(|e| ModelFileError::corrupt(path, format!("cannot save model: header: {e}")))?;
    write_atomic(path, |w| {
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for t in &model.tables {
            for v in &t.values {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        Ok(())
    })
}

/// Read a model file written by [`save`].
pub fn load(path: &Path) -> Result<SavedModel, ModelFileError> {
    let file = File::open(path).map_err(|e| ModelFileError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| ModelFileError::io(path, e))?
        .len();
    let mut r = BufReader::new(file);
    let corrupt =
        |reason: String| ModelFileError::corrupt(path, format!("corrupt model file: {reason}"));

    let mut magic = [0u8; MAGIC.len()];
    if file_len < MAGIC.len() as u64 {
        return Err(ModelFileError::NotAModel(path.to_path_buf()));
    }
    r.read_exact(&mut magic)
        .map_err(|e| ModelFileError::io(path, e))?;
    if magic != MAGIC {
        return Err(ModelFileError::NotAModel(path.to_path_buf()));
    }
    if file_len < PREAMBLE_LEN {
        return Err(corrupt(format!(
            "truncated: {file_len} bytes, shorter than the {PREAMBLE_LEN}-byte preamble"
        )));
    }
    let mut word = [0u8; 4];
    r.read_exact(&mut word)
        .map_err(|e| ModelFileError::io(path, e))?;
    let version = u32::from_le_bytes(word);
    if version > FORMAT_VERSION {
        return Err(ModelFileError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    if version != FORMAT_VERSION {
        return Err(corrupt(format!("unknown format version {version}")));
    }
    let mut dword = [0u8; 8];
    r.read_exact(&mut dword)
        .map_err(|e| ModelFileError::io(path, e))?;
    let header_len = u64::from_le_bytes(dword);
    let after_preamble = file_len - PREAMBLE_LEN;
    if header_len > after_preamble {
        return Err(corrupt(format!(
            "truncated: the header needs {header_len} bytes but only {after_preamble} follow"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header)
        .map_err(|e| ModelFileError::io(path, e))?;
    let mut model: SavedModel =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("header: {e}")))?;

    // Shapes are checked before anything is allocated for the values.
    let mut expected: u64 = 0;
    for t in &model.tables {
        let bytes = (t.rows as u64)
            .checked_mul(t.lanes as u64)
            .and_then(|n| n.checked_mul(8));
        expected = bytes.and_then(|b| expected.checked_add(b)).ok_or_else(|| {
            corrupt(format!(
                "table `{}` is impossibly large ({} × {})",
                t.name, t.rows, t.lanes
            ))
        })?;
    }
    let found = after_preamble - header_len;
    if found < expected {
        return Err(corrupt(format!(
            "truncated: the tables need {expected} bytes of values but only {found} follow the header"
        )));
    }
    if found > expected {
        return Err(corrupt(format!(
            "{} unexpected trailing bytes after the {expected} bytes of table values",
            found - expected
        )));
    }
    for t in &mut model.tables {
        let n = t.rows * t.lanes;
        let mut bytes = vec![0u8; n * 8];
        r.read_exact(&mut bytes)
            .map_err(|e| ModelFileError::io(path, e))?;
        t.values = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b)
            })
            .collect();
    }
    model.check().map_err(corrupt)?;
    Ok(model)
}

/// Write a file through `write`, atomically: into a temporary file beside
/// `path`, synced, then renamed over `path`. On any error `path` is left as
/// it was and the temporary file is removed.
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> Result<(), ModelFileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".recc-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // As for any new file: readable by others unless the umask says not.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = builder
        .tempfile_in(dir)
        .map_err(|e| ModelFileError::io(path, e))?;
    let written = (|| {
        let mut w = BufWriter::new(tmp.as_file());
        write(&mut w)?;
        w.flush()?;
        drop(w);
        tmp.as_file().sync_all()
    })();
    written.map_err(|e| ModelFileError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| ModelFileError::io(path, e.error))?;
    // Make the rename itself durable; not every platform can sync a directory.
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Header numbers: finite ones as JSON numbers, the rest as strings.
mod json_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    pub(super) enum Repr {
        Number(f64),
        Text(String),
    }

    impl Repr {
        pub(super) fn value<E: serde::de::Error>(self) -> Result<f64, E> {
            match self {
                Repr::Number(x) => Ok(x),
                Repr::Text(s) => match s.as_str() {
                    "NaN" => Ok(f64::NAN),
                    "inf" => Ok(f64::INFINITY),
                    "-inf" => Ok(f64::NEG_INFINITY),
                    _ => Err(E::custom(format!("expected a number, found \"{s}\""))),
                },
            }
        }
    }

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() {
            s.serialize_f64(*x)
        } else if x.is_nan() {
            s.serialize_str("NaN")
        } else if *x > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Repr::deserialize(d)?.value()
    }
}

mod json_f64_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            Some(x) => super::json_f64::serialize(x, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<super::json_f64::Repr>::deserialize(d)?
            .map(super::json_f64::Repr::value)
            .transpose()
    }
}

mod json_f64_map {
    use std::collections::BTreeMap;

    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    struct Value<'a>(&'a f64);

    impl serde::Serialize for Value<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::json_f64::serialize(self.0, s)
        }
    }

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            map.serialize_entry(k, &Value(v))?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        BTreeMap::<String, super::json_f64::Repr>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| Ok((k, v.value()?)))
            .collect()
    }
}
