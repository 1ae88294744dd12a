//! Model files: a trained model's parameters with everything needed to
//! read them back and to know where they came from.
//!
//! A file is the magic line `RECC-MODEL\n`, the format version as a `u32`,
//! the length of a JSON header as a `u64`, the header, every table's values
//! as `f64` (tables in header order, rows one after another), and last the
//! CRC-32 (IEEE) of every byte before it as a `u32`. All numbers are
//! little-endian. The header holds everything except the values: provenance
//! (source text, data, settings), metrics, the training history, the
//! domains' raw ids and labels, and each table's name and shape, and since
//! format 3 what the model needs of its data to answer questions without
//! it ([`SavedContext`]: the rows scoring reads, every user's items, the
//! fingerprints of the training rows). Format 2 files, which lack it, are
//! still read; the commands then read the training data again. Since
//! format 4 a model fitted by Gibbs sampling also keeps the draws its
//! predictions average ([`SavedSamples`]): their values follow the tables',
//! as `f32`, and the header names their tables and noise precisions.
//! Format 3 files, which have none, are still read.
//!
//! Nothing in a file is trusted. [`load`] checks the layout and the
//! checksum, then compiles the embedded source again and checks
//! the file against that graph: the same domains in the same order, the same
//! tables in the same order with the same domain and lanes, and as many rows
//! as their domain has ids. Code that runs the model (the JIT among it)
//! indexes tables by those figures, so a file that disagrees with its own
//! source is refused here, naming what differs, instead of reaching it.
//! Format 1 files, written before the checksum, are still read: they pass
//! every check but the checksum.
//!
//! Values are stored as raw bits, so a model reloads bit for bit (`-0.0`,
//! subnormals and NaN payloads included). Numbers in the header that are
//! not finite (a diverged loss) are written as the strings `"NaN"`, `"inf"`
//! and `"-inf"`, since JSON has no spelling for them.
//!
//! Saving never leaves a half-written file: the bytes go to a temporary file
//! in the destination directory, which replaces the destination only once it
//! is complete and synced. Only a regular file (or a new name) is ever
//! replaced: a symlink is written through to the file it names, and a
//! directory, device, FIFO or socket is refused ([`check_output`]). The
//! temporary file is named `.NAME.recc-tmp-PID-RANDOM` after the destination
//! `NAME`; one left behind by a killed process is removed by the next write
//! of the same destination ([`temp_file_beside`]).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ndarray::Array2;
use recc_compiler::interp::Params;
use recc_compiler::ir::Graph;
use serde::{Deserialize, Serialize};

use crate::context::SavedContext;
use crate::data::IdMap;
use crate::predict::{Draw, Samples};

/// The layout [`save`] writes and the newest [`load`] reads.
pub const FORMAT_VERSION: u32 = 4;

/// The format before a Gibbs fit's kept draws; [`load`] still reads it.
pub const SAMPLELESS_FORMAT_VERSION: u32 = 3;

/// The format before the data context; [`load`] still reads it.
pub const CONTEXTLESS_FORMAT_VERSION: u32 = 2;

/// The format before the trailing checksum; [`load`] still reads it.
const UNCHECKED_FORMAT_VERSION: u32 = 1;

/// Bytes of the checksum that ends a file of the current format.
const CHECKSUM_LEN: u64 = 4;

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

/// A Gibbs fit's kept draws ([`crate::predict::Samples`]) as a file keeps
/// them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedSamples {
    /// The tables each draw holds, by name, in the order of the file's
    /// tables.
    pub tables: Vec<String>,
    /// Each draw's noise precision: one per draw.
    pub noise_precision: Vec<f64>,
    /// Stored after the tables' values, not in the header: draw after draw,
    /// each of its tables' values row after row. `f32`, which halves the
    /// file; the predict kernel scores in `f32` anyway.
    #[serde(skip)]
    pub values: Vec<f32>,
}

impl SavedSamples {
    /// `samples` of a model whose graph is `graph`; values already `f32`
    /// (as training keeps them) are stored exactly.
    pub fn new(graph: &Graph, samples: &Samples) -> SavedSamples {
        SavedSamples {
            tables: samples
                .tables
                .iter()
                .map(|&k| {
                    graph
                        .tables
                        .get(k)
                        .map_or_else(String::new, |t| t.name.clone())
                })
                .collect(),
            noise_precision: samples.draws.iter().map(|d| d.noise_precision).collect(),
            values: samples
                .draws
                .iter()
                .flat_map(|d| d.tables.iter().flat_map(|t| t.iter().map(|&v| v as f32)))
                .collect(),
        }
    }

    /// The positions among `tables` of the tables each draw holds, and the
    /// number of values of one draw; an error for a name not there, named
    /// twice or out of order.
    fn layout(&self, tables: &[SavedTable]) -> Result<(Vec<usize>, u64), String> {
        let mut positions: Vec<usize> = Vec::with_capacity(self.tables.len());
        let mut per_draw: u64 = 0;
        for name in &self.tables {
            let Some(k) = tables.iter().position(|t| &t.name == name) else {
                return Err(format!(
                    "the kept draws name table `{name}`, which is not in the file"
                ));
            };
            if positions.last().is_some_and(|&last| last >= k) {
                return Err(format!(
                    "the kept draws name table `{name}` twice or out of the file's order"
                ));
            }
            positions.push(k);
            let t = &tables[k];
            per_draw = (t.rows as u64)
                .checked_mul(t.lanes as u64)
                .and_then(|n| per_draw.checked_add(n))
                .ok_or_else(|| format!("the kept draws of `{name}` are impossibly large"))?;
        }
        Ok((positions, per_draw))
    }
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
    /// What the model keeps of its training data (format 3); `None` in an
    /// older file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<SavedContext>,
    /// A Gibbs fit's kept draws (format 4); `None` for any other fit and
    /// in an older file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<SavedSamples>,
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
    /// A destination that must not be written: not a regular file, or in
    /// a directory that cannot take a new file.
    #[error("{}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
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

    /// Every domain of a binding (`Binding::domains`), in its order.
    pub fn all(domains: &[(String, IdMap)]) -> Vec<SavedDomain> {
        domains
            .iter()
            .map(|(n, m)| SavedDomain::from_id_map(n, m))
            .collect()
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
    /// The tables as evaluator parameters, in order. `domain_sizes` are the
    /// sizes of the domains the parameters will be used with (the data's),
    /// which must be those of the model's own domains.
    pub fn params(&self, domain_sizes: Vec<usize>) -> Result<Params, ModelFileError> {
        let corrupt = |reason: String| ModelFileError::corrupt(Path::new(&self.model_name), reason);
        self.check_shapes().map_err(corrupt)?;
        let own: Vec<usize> = self.domains.iter().map(|d| d.ids.len()).collect();
        if domain_sizes != own {
            return Err(corrupt(format!(
                "the model's domains ({}) have sizes {own:?}, not the {domain_sizes:?} asked for",
                self.domains
                    .iter()
                    .map(|d| format!("`{}`", d.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let tables = self
            .tables
            .iter()
            .map(|t| {
                Array2::from_shape_vec((t.rows, t.lanes), t.values.clone()).map_err(|_| {
                    corrupt(format!(
                        "table `{}` has {} values; {} rows × {} lanes need {}",
                        t.name,
                        t.values.len(),
                        t.rows,
                        t.lanes,
                        t.rows.saturating_mul(t.lanes)
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Params {
            domain_sizes,
            tables,
        })
    }

    /// The kept draws as the predictor reads them (`None` when the file has
    /// none), each table's values in `self.tables`' shape.
    pub fn samples(&self) -> Result<Option<Samples>, ModelFileError> {
        let Some(saved) = &self.samples else {
            return Ok(None);
        };
        let corrupt = |reason: String| ModelFileError::corrupt(Path::new(&self.model_name), reason);
        let (positions, per_draw) = saved.layout(&self.tables).map_err(corrupt)?;
        let draws = saved.noise_precision.len();
        if (per_draw as u128) * (draws as u128) != saved.values.len() as u128 {
            return Err(corrupt(format!(
                "the kept draws hold {} values; {draws} draws of {per_draw} need {}",
                saved.values.len(),
                (per_draw as u128) * (draws as u128)
            )));
        }
        let mut values = saved.values.iter().map(|&v| f64::from(v));
        let mut out = Vec::with_capacity(draws);
        for &noise_precision in &saved.noise_precision {
            let mut tables = Vec::with_capacity(positions.len());
            for &k in &positions {
                let t = &self.tables[k];
                let flat: Vec<f64> = values.by_ref().take(t.rows * t.lanes).collect();
                let table = Array2::from_shape_vec((t.rows, t.lanes), flat).map_err(|_| {
                    corrupt(format!("the kept draws of `{}` are cut short", t.name))
                })?;
                tables.push(table);
            }
            out.push(Draw {
                tables,
                noise_precision,
            });
        }
        Ok(Some(Samples {
            tables: positions,
            draws: out,
        }))
    }

    /// The model's inconsistencies, if any: what a well-formed file never
    /// has. Checked before saving, after loading and before exporting: the
    /// file agrees with itself ([`SavedModel::check_shapes`]) and with the
    /// graph of its embedded source ([`SavedModel::check_source`]).
    pub fn check(&self) -> Result<(), String> {
        self.check_shapes()?;
        self.check_source()?;
        match &self.context {
            Some(c) => c.check().map_err(|e| format!("the kept data: {e}")),
            None => Ok(()),
        }
    }

    /// The checks that need no compiler: unique domains with one label per
    /// id and no id twice, unique plainly named tables over known domains,
    /// as many rows as the domain has ids (one for a global), as many
    /// values as rows × lanes.
    pub fn check_shapes(&self) -> Result<(), String> {
        let mut domain_sizes = BTreeMap::new();
        for d in &self.domains {
            if domain_sizes.insert(d.name.as_str(), d.ids.len()).is_some() {
                return Err(format!("domain `{}` appears twice", d.name));
            }
            if d.ids.is_empty() {
                return Err(format!("domain `{}` has no ids", d.name));
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
        if let Some(samples) = &self.samples {
            let (_, per_draw) = samples.layout(&self.tables)?;
            let draws = samples.noise_precision.len();
            if draws == 0 {
                return Err("the kept draws are none".into());
            }
            if let Some(p) = samples
                .noise_precision
                .iter()
                .find(|p| !(p.is_finite() && **p > 0.0))
            {
                return Err(format!(
                    "a kept draw's noise precision is {p}, not a positive number"
                ));
            }
            if (per_draw as u128) * (draws as u128) != samples.values.len() as u128 {
                return Err(format!(
                    "the kept draws hold {} values; {draws} draws of {per_draw} need {}",
                    samples.values.len(),
                    (per_draw as u128) * (draws as u128)
                ));
            }
        }
        Ok(())
    }

    /// Compile the embedded source again and compare the model with its
    /// graph: every domain by name and position, every table by name,
    /// position, domain and lanes. Rows are the domains' sizes
    /// ([`SavedModel::check_shapes`]).
    pub fn check_source(&self) -> Result<(), String> {
        let compiled = recc_compiler::compile(&self.source_name, &self.source);
        let model = match compiled.model {
            Some(m) if !compiled.has_errors() => m,
            _ => {
                let first = compiled
                    .diagnostics
                    .iter()
                    .find(|d| d.is_error())
                    .map_or_else(|| "no model".to_string(), |d| d.message.clone());
                return Err(format!(
                    "the embedded source `{}` does not compile: {first}",
                    self.source_name
                ));
            }
        };
        let graph = recc_compiler::forward_graph(&model)
            .map_err(|e| format!("the embedded source `{}`: {e}", self.source_name))?;
        let source_domains: Vec<&str> = graph.domains.iter().map(|d| d.name.as_str()).collect();
        let file_domains: Vec<&str> = self.domains.iter().map(|d| d.name.as_str()).collect();
        if source_domains != file_domains {
            return Err(format!(
                "the file's domains are {} but its source's are {}",
                name_list(&file_domains),
                name_list(&source_domains)
            ));
        }
        for (k, want) in graph.tables.iter().enumerate() {
            let Some(t) = self.tables.get(k) else {
                return Err(format!(
                    "table `{}` of the source is missing from the file ({} tables, the source has {})",
                    want.name,
                    self.tables.len(),
                    graph.tables.len()
                ));
            };
            if t.name != want.name {
                if !self.tables.iter().any(|t| t.name == want.name) {
                    return Err(format!(
                        "table `{}` of the source is missing from the file",
                        want.name
                    ));
                }
                if !graph.tables.iter().any(|g| g.name == t.name) {
                    return Err(format!("table `{}` is not in the source", t.name));
                }
                return Err(format!(
                    "table {} is `{}` in the file but `{}` in the source",
                    k + 1,
                    t.name,
                    want.name
                ));
            }
            let want_domain = want
                .domain
                .and_then(|d| graph.domains.get(d.index()))
                .map(|d| d.name.as_str());
            if t.domain.as_deref() != want_domain {
                let show = |d: Option<&str>| {
                    d.map_or("no domain (a global)".to_string(), |d| {
                        format!("domain `{d}`")
                    })
                };
                return Err(format!(
                    "table `{}` is over {} in the file but over {} in the source",
                    t.name,
                    show(t.domain.as_deref()),
                    show(want_domain)
                ));
            }
            if t.lanes != want.shape.len() {
                return Err(format!(
                    "table `{}` has {} lanes in the file but the source declares {} ({} lanes)",
                    t.name,
                    t.lanes,
                    want.shape,
                    want.shape.len()
                ));
            }
        }
        if let Some(extra) = self.tables.get(graph.tables.len()) {
            return Err(format!(
                "table `{}` is not in the source ({} tables in the file, the source has {})",
                extra.name,
                self.tables.len(),
                graph.tables.len()
            ));
        }
        Ok(())
    }
}

fn name_list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
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

/// [`tables_from_params`] taking the parameters, so that each table's
/// values move into the saved model instead of being copied.
pub fn into_saved_tables(graph: &Graph, params: Params) -> Vec<SavedTable> {
    graph
        .tables
        .iter()
        .zip(params.tables)
        .map(|(t, values)| SavedTable {
            name: t.name.clone(),
            domain: t
                .domain
                .and_then(|d| graph.domains.get(d.index()))
                .map(|d| d.name.clone()),
            rows: values.nrows(),
            lanes: values.ncols(),
            values: crate::predict::into_row_major(values),
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
        let mut w = Checksummed {
            inner: w,
            crc: Crc32::new(),
        };
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for t in &model.tables {
            for v in &t.values {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        if let Some(samples) = &model.samples {
            for v in &samples.values {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        let crc = w.crc.finish();
        w.inner.write_all(&crc.to_le_bytes())
    })
}

/// Read a model file written by [`save`], and check it: the layout, the
/// checksum, and the tables against the graph of the embedded source.
pub fn load(path: &Path) -> Result<SavedModel, ModelFileError> {
    let file = File::open(path).map_err(|e| ModelFileError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| ModelFileError::io(path, e))?
        .len();
    let mut r = HashingReader {
        inner: BufReader::new(file),
        crc: Crc32::new(),
    };
    let corrupt =
        |reason: String| ModelFileError::corrupt(path, format!("corrupt model file: {reason}"));
    let io_error = |e| ModelFileError::io(path, e);

    let mut magic = [0u8; MAGIC.len()];
    if file_len < MAGIC.len() as u64 {
        return Err(ModelFileError::NotAModel(path.to_path_buf()));
    }
    r.read_exact(&mut magic).map_err(io_error)?;
    if magic != MAGIC {
        return Err(ModelFileError::NotAModel(path.to_path_buf()));
    }
    if file_len < PREAMBLE_LEN {
        return Err(corrupt(format!(
            "truncated: {file_len} bytes, shorter than the {PREAMBLE_LEN}-byte preamble"
        )));
    }
    let mut word = [0u8; 4];
    r.read_exact(&mut word).map_err(io_error)?;
    let version = u32::from_le_bytes(word);
    if version > FORMAT_VERSION {
        return Err(ModelFileError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let checksummed = match version {
        FORMAT_VERSION | SAMPLELESS_FORMAT_VERSION | CONTEXTLESS_FORMAT_VERSION => true,
        UNCHECKED_FORMAT_VERSION => false,
        _ => return Err(corrupt(format!("unknown format version {version}"))),
    };
    // Bytes before the checksum (all of them in a format without one).
    let body_len = if checksummed {
        file_len
            .checked_sub(CHECKSUM_LEN)
            .filter(|&n| n >= PREAMBLE_LEN)
            .ok_or_else(|| {
                corrupt(format!(
                    "truncated: {file_len} bytes, too short for the preamble and checksum"
                ))
            })?
    } else {
        file_len
    };
    let mut dword = [0u8; 8];
    r.read_exact(&mut dword).map_err(io_error)?;
    let header_len = u64::from_le_bytes(dword);
    let after_preamble = body_len - PREAMBLE_LEN;
    if header_len > after_preamble {
        return Err(corrupt(format!(
            "truncated: the header needs {header_len} bytes but only {after_preamble} follow"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header).map_err(io_error)?;
    let mut model: SavedModel = match serde_json::from_slice(&header) {
        Ok(m) => m,
        Err(e) => {
            // A damaged header is said to be damaged, not mis-spelt.
            if checksummed {
                let rest = body_len - PREAMBLE_LEN - header_len;
                io::copy(&mut (&mut r).take(rest), &mut io::sink()).map_err(io_error)?;
                verify_checksum(&mut r).map_err(|e| e.into_error(path))?;
            }
            return Err(corrupt(format!("header: {e}")));
        }
    };

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
    if version < FORMAT_VERSION {
        // Older formats had no kept draws: a header that claims some is not theirs.
        model.samples = None;
    }
    let sample_values = match &model.samples {
        Some(samples) => {
            let (_, per_draw) = samples.layout(&model.tables).map_err(corrupt)?;
            per_draw
                .checked_mul(samples.noise_precision.len() as u64)
                .filter(|n| n.checked_mul(4).is_some())
                .ok_or_else(|| corrupt("the kept draws are impossibly large".into()))?
        }
        None => 0,
    };
    let found = after_preamble - header_len;
    let expected = expected
        .checked_add(sample_values * 4)
        .ok_or_else(|| corrupt("the kept draws are impossibly large".into()))?;
    if found < expected {
        let what = if sample_values > 0 {
            "the tables and kept draws"
        } else {
            "the tables"
        };
        return Err(corrupt(format!(
            "truncated: {what} need {expected} bytes of values but only {found} follow the header"
        )));
    }
    if found > expected {
        let what = if sample_values > 0 {
            "table values and kept draws"
        } else {
            "table values"
        };
        return Err(corrupt(format!(
            "{} unexpected trailing bytes after the {expected} bytes of {what}",
            found - expected
        )));
    }

    for t in &mut model.tables {
        let n = t.rows * t.lanes;
        let mut bytes = vec![0u8; n * 8];
        r.read_exact(&mut bytes).map_err(io_error)?;
        t.values = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b)
            })
            .collect();
    }
    if let Some(samples) = &mut model.samples {
        let mut bytes = vec![0u8; sample_values as usize * 4];
        r.read_exact(&mut bytes).map_err(io_error)?;
        samples.values = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
    }
    if checksummed {
        verify_checksum(&mut r).map_err(|e| e.into_error(path))?;
    }
    if version < SAMPLELESS_FORMAT_VERSION {
        // Older formats had no context: a header that claims one is not theirs.
        model.context = None;
    }
    model.check().map_err(corrupt)?;
    Ok(model)
}

enum ChecksumError {
    Io(io::Error),
    Mismatch { stored: u32, computed: u32 },
}

impl ChecksumError {
    fn into_error(self, path: &Path) -> ModelFileError {
        match self {
            ChecksumError::Io(e) => ModelFileError::io(path, e),
            ChecksumError::Mismatch { stored, computed } => ModelFileError::corrupt(
                path,
                format!(
                    "corrupt model file: checksum mismatch (stored {stored:08x}, computed \
                     {computed:08x}): the file was damaged or edited after it was written"
                ),
            ),
        }
    }
}

/// Compare the checksum of everything `r` has read with the `u32` that
/// follows.
fn verify_checksum<R: Read>(r: &mut HashingReader<R>) -> Result<(), ChecksumError> {
    let computed = r.crc.finish();
    let mut stored = [0u8; 4];
    r.inner.read_exact(&mut stored).map_err(ChecksumError::Io)?;
    let stored = u32::from_le_bytes(stored);
    if stored == computed {
        Ok(())
    } else {
        Err(ChecksumError::Mismatch { stored, computed })
    }
}

/// A reader that keeps the CRC-32 of everything read through it.
struct HashingReader<R> {
    inner: R,
    crc: Crc32,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// CRC-32 (IEEE 802.3, as zlib and PNG compute it): every single-bit and
/// every burst error of up to 32 bits changes it.
struct Crc32 {
    state: u32,
}

const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Crc32 {
    fn new() -> Crc32 {
        Crc32 { state: !0 }
    }

    fn update(&mut self, bytes: &[u8]) {
        let mut c = self.state;
        for &b in bytes {
            c = CRC32_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.state = c;
    }

    fn finish(&self) -> u32 {
        !self.state
    }
}

/// A writer that keeps the CRC-32 of everything written through it.
struct Checksummed<W> {
    inner: W,
    crc: Crc32,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Symbolic links followed from one destination before giving up (as
/// Linux's `ELOOP`).
const MAX_LINKS: usize = 40;

/// A temporary file older than this is left over whatever its process id
/// says (the id may have been reused); no write takes a day.
const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Where writing `path` lands: `path` itself when it is a regular file or
/// names nothing yet, and for a symlink the file at the end of its links.
/// Anything else (a directory, device, FIFO or socket) is refused, never
/// replaced.
pub fn output_target(path: &Path) -> Result<PathBuf, ModelFileError> {
    let refuse = |target: &Path, what: String| {
        let reason = if target == path {
            format!("{what}, not a regular file; only a regular file or a new name is written")
        } else {
            format!(
                "links to {}, {what}, not a regular file; only a regular file or a new name is written",
                target.display()
            )
        };
        ModelFileError::Output {
            path: path.to_path_buf(),
            reason,
        }
    };
    let mut target = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&target).map_err(|e| ModelFileError::io(path, e))?;
                // A relative link is relative to the directory holding it.
                target = match target.parent() {
                    Some(dir) => dir.join(link),
                    None => link,
                };
            }
            Ok(meta) if meta.is_file() => return Ok(target),
            Ok(meta) => return Err(refuse(&target, file_kind(&meta).to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(target),
            Err(e) => return Err(ModelFileError::io(path, e)),
        }
    }
    Err(ModelFileError::Output {
        path: path.to_path_buf(),
        reason: format!("more than {MAX_LINKS} symbolic links to follow"),
    })
}

/// What a non-regular file is, for messages.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    if meta.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

/// Check, before any work, that `path` can be written: it is a regular file,
/// a new name or a symlink to one ([`output_target`]), and its directory
/// takes a new file (tried by creating and removing a temporary one).
/// Returns where the bytes will land.
pub fn check_output(path: &Path) -> Result<PathBuf, ModelFileError> {
    let target = output_target(path)?;
    temp_file_beside(&target).map_err(|e| ModelFileError::Output {
        path: path.to_path_buf(),
        reason: format!(
            "cannot create a file in {}: {e}",
            parent_dir(&target).display()
        ),
    })?;
    Ok(target)
}

/// Check that `dir` can take new files before any work is done: it is a
/// directory a file can be created in, or it does not exist yet and the
/// nearest directory above it can take a new one.
pub fn check_output_dir(dir: &Path) -> Result<(), ModelFileError> {
    let refuse = |reason: String| ModelFileError::Output {
        path: dir.to_path_buf(),
        reason,
    };
    let mut existing = dir;
    loop {
        match std::fs::metadata(existing) {
            Ok(meta) if meta.is_dir() => break,
            Ok(meta) if existing == dir => {
                return Err(refuse(format!(
                    "is {}, not a directory; a directory of files is written there",
                    file_kind_or_file(&meta)
                )))
            }
            Ok(meta) => {
                return Err(refuse(format!(
                    "{} is {}, not a directory",
                    existing.display(),
                    file_kind_or_file(&meta)
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                existing = match existing.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
            }
            Err(e) => return Err(refuse(format!("{}: {}", existing.display(), bare(e)))),
        }
    }
    // A temporary file proves the directory takes new entries (permissions,
    // a read-only file system); it is removed when dropped.
    let probe = existing.join("probe");
    temp_file_beside(&probe).map_err(|e| {
        refuse(format!(
            "cannot create a file in {}: {e}",
            parent_dir(&probe).display()
        ))
    })?;
    Ok(())
}

/// What a non-directory is, for messages: a regular file too.
fn file_kind_or_file(meta: &std::fs::Metadata) -> &'static str {
    if meta.is_file() {
        "a file"
    } else {
        file_kind(meta)
    }
}

/// An I/O error without the path `tempfile` adds to it (`... at path
/// "DIR/.NAME.recc-tmp-..."`): the temporary file's name means nothing to
/// whoever reads the message, and the caller names the destination.
/// `tempfile` keeps the original error private, so its text is cut.
fn bare(e: io::Error) -> io::Error {
    if e.raw_os_error().is_some() {
        return e;
    }
    let text = e.to_string();
    match text.find(" at path ") {
        Some(at) => io::Error::new(e.kind(), text[..at].to_string()),
        None => e,
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The start of every temporary file written for `target`: `.NAME.recc-tmp-`
/// (`NAME` cut to 64 characters, so the whole name stays within the limits
/// of file systems).
fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(64).collect::<String>())
        .unwrap_or_default();
    format!(".{name}.recc-tmp-")
}

/// A new temporary file beside `target`, named
/// `.NAME.recc-tmp-PID-RANDOM`, for writing `target` atomically. Temporary
/// files of the same target left by a process that is gone (killed before it
/// could clean up), or older than a day, are removed first.
pub(crate) fn temp_file_beside(target: &Path) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent_dir(target);
    let prefix = temp_prefix(target);
    remove_stale_temps(dir, &prefix);
    let mut builder = tempfile::Builder::new();
    let own = format!("{prefix}{}-", std::process::id());
    builder.prefix(&own).rand_bytes(8);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // As for any new file: readable by others unless the umask says not.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir).map_err(bare)
}

/// Remove the files in `dir` named `PREFIX` + `PID-…` whose process is gone
/// or that are older than [`STALE_TEMP_AGE`]. Best effort: a file that
/// cannot be removed is left for the next write.
fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name: OsString = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        // Not followed: only a plain file is ever one of ours.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if old || process_is_gone(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether no process `pid` runs on this machine. Known where `/proc` lists
/// processes (Linux); elsewhere every process counts as running, and only
/// age makes a temporary file stale. Processes in another pid namespace
/// writing into the same directory are not seen.
fn process_is_gone(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let proc = Path::new("/proc");
    proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

/// Write a file through `write`, atomically: into a temporary file beside
/// the destination, synced, then renamed over it. The destination is `path`,
/// or the file a symlink at `path` leads to; anything but a regular file is
/// refused ([`output_target`]). On any error the destination is left as it
/// was and the temporary file is removed.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
) -> Result<(), ModelFileError> {
    let target = output_target(path)?;
    let tmp = temp_file_beside(&target).map_err(|e| ModelFileError::io(path, e))?;
    let written = (|| {
        let mut w = BufWriter::new(tmp.as_file());
        write(&mut w)?;
        w.flush()?;
        drop(w);
        tmp.as_file().sync_all()
    })();
    written.map_err(|e| ModelFileError::io(path, e))?;
    // The destination may have changed while the file was written.
    if output_target(path)? != target {
        return Err(ModelFileError::Output {
            path: path.to_path_buf(),
            reason: "changed into a different link while it was being written".to_string(),
        });
    }
    tmp.persist(&target)
        .map_err(|e| ModelFileError::io(path, bare(e.error)))?;
    // Make the rename itself durable; not every platform can sync a directory.
    #[cfg(unix)]
    if let Ok(d) = File::open(parent_dir(&target)) {
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
