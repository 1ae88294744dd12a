//! Export a saved model's tables for other tools: one CSV or `.npy` file per
//! table, named after the table (`p.mean` → `p.mean.csv`).
//!
//! CSV files start with a header line. A table over a domain has one row per
//! id, `id,NAME_0,NAME_1,...`, the id being the domain's raw id; a global has
//! one row, `NAME_0,NAME_1,...`. Values are printed in Rust's shortest form
//! that reads back to the same `f64`.
//!
//! `.npy` files (format 1.0) hold little-endian `f64` of shape
//! `(rows, lanes)` in C order; a table over a domain also gets
//! `NAME.ids.txt`, one raw id per line in row order.
//!
//! Each file is written as a model file is ([`write_atomic`]): through a
//! symlink, never over a directory, device or FIFO, and all of them are
//! checked before the first is written.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::modelfile::{check_output, write_atomic, ModelFileError, SavedModel, SavedTable};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Npy,
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<ExportFormat, String> {
        match s {
            "csv" => Ok(ExportFormat::Csv),
            "npy" => Ok(ExportFormat::Npy),
            _ => Err(format!(
                "unknown export format `{s}` (expected `csv` or `npy`)"
            )),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Npy => "npy",
        })
    }
}

/// Write every table of `model` into `dir` (created if needed) and return
/// the paths written, in table order.
pub fn export(
    model: &SavedModel,
    dir: &Path,
    format: ExportFormat,
) -> Result<Vec<PathBuf>, ModelFileError> {
    model.check().map_err(|reason| ModelFileError::Corrupt {
        path: dir.to_path_buf(),
        reason: format!("cannot export model `{}`: {reason}", model.model_name),
    })?;
    if let Ok(meta) = std::fs::metadata(dir) {
        if !meta.is_dir() {
            return Err(ModelFileError::Output {
                path: dir.to_path_buf(),
                reason: "exists and is not a directory; export writes a directory of files"
                    .to_string(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| ModelFileError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    // Every file is checked before any is written: a directory, device or
    // FIFO in the way stops the export before it has replaced anything.
    let mut files = Vec::new();
    for t in &model.tables {
        let ids = row_ids(model, t);
        let ext = match format {
            ExportFormat::Csv => "csv",
            ExportFormat::Npy => "npy",
        };
        let values = dir.join(format!("{}.{ext}", t.name));
        check_output(&values)?;
        let ids_file = match (format, ids) {
            (ExportFormat::Npy, Some(ids)) => {
                let path = dir.join(format!("{}.ids.txt", t.name));
                if let Some(id) = ids.iter().find(|id| id.contains(['\n', '\r'])) {
                    return Err(ModelFileError::Corrupt {
                        path,
                        reason: format!(
                            "id {id:?} of domain `{}` contains a line break; export as csv instead",
                            t.domain.as_deref().unwrap_or_default()
                        ),
                    });
                }
                check_output(&path)?;
                Some((path, ids))
            }
            _ => None,
        };
        files.push((t, ids, values, ids_file));
    }
    let mut written = Vec::new();
    for (t, ids, values, ids_file) in files {
        match format {
            ExportFormat::Csv => write_atomic(&values, |w| write_csv(w, t, ids))?,
            ExportFormat::Npy => write_atomic(&values, |w| write_npy(w, t))?,
        }
        written.push(values);
        if let Some((path, ids)) = ids_file {
            write_atomic(&path, |w| {
                for id in ids {
                    writeln!(w, "{id}")?;
                }
                Ok(())
            })?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The raw ids naming the rows of `t`, or `None` for a global. `check` has
/// made sure the domain exists and has one id per row.
fn row_ids<'m>(model: &'m SavedModel, t: &SavedTable) -> Option<&'m [String]> {
    let name = t.domain.as_deref()?;
    model
        .domains
        .iter()
        .find(|d| d.name == name)
        .map(|d| d.ids.as_slice())
}

fn write_csv(w: &mut impl Write, t: &SavedTable, ids: Option<&[String]>) -> io::Result<()> {
    let mut header: Vec<String> = Vec::with_capacity(t.lanes + 1);
    if ids.is_some() {
        header.push("id".to_string());
    }
    header.extend((0..t.lanes).map(|k| csv_field(&format!("{}_{k}", t.name))));
    writeln!(w, "{}", header.join(","))?;
    for r in 0..t.rows {
        let mut sep = "";
        if let Some(ids) = ids {
            let id = ids.get(r).map_or("", String::as_str);
            write!(w, "{}", csv_field(id))?;
            sep = ",";
        }
        for v in t.values.iter().skip(r * t.lanes).take(t.lanes) {
            write!(w, "{sep}{v}")?;
            sep = ",";
        }
        writeln!(w)?;
    }
    Ok(())
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// NumPy `.npy` format 1.0: magic, version, header length (`u16`), a
/// Python dict literal padded with spaces and ending in a newline so that
/// the data starts at a multiple of 64 bytes, then the data.
fn write_npy(w: &mut impl Write, t: &SavedTable) -> io::Result<()> {
    const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}",
        t.rows, t.lanes
    );
    let unpadded = MAGIC.len() + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let len = u16::try_from(header.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "npy header too long"))?;
    w.write_all(MAGIC)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    for v in &t.values {
        w.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}
