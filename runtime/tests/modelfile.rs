//! Model files: round trips, damaged and foreign files, and exports.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use recc_runtime::data::IdMap;
use recc_runtime::export::{export, ExportFormat};
use recc_runtime::modelfile::{
    load, save, EpochRecord, ModelFileError, SavedDomain, SavedModel, SavedTable, FORMAT_VERSION,
};

fn sample() -> SavedModel {
    let mut users = IdMap::new();
    for id in ["196", "186", "22"] {
        users.intern(id);
    }
    let mut items = IdMap::new();
    for id in ["242", "302"] {
        items.intern(id);
    }
    items.set_label(0, "Kolya (1996)");
    items.set_label(1, "L.A. Confidential, \"1997\"");

    let user_values = vec![
        -0.0,
        f64::from_bits(1), // smallest subnormal
        f64::MIN_POSITIVE / 3.0,
        0.1,
        -1e300,
        f64::MAX,
    ];
    SavedModel {
        recc_version: env!("CARGO_PKG_VERSION").to_string(),
        model_name: "biased_mf".to_string(),
        source_name: "biased_mf.rec".to_string(),
        source: "model biased_mf {\n  # ...\n}\n".to_string(),
        data: "ml-100k u1".to_string(),
        settings: BTreeMap::from([
            ("optimiser".to_string(), "adam".to_string()),
            ("lr".to_string(), "0.01".to_string()),
        ]),
        metrics: BTreeMap::from([
            ("rmse".to_string(), 0.93),
            ("diverged".to_string(), f64::NAN),
        ]),
        history: vec![
            EpochRecord {
                epoch: 1,
                loss: 1.25,
                validation: Some(1.0),
                seconds: 0.5,
            },
            EpochRecord {
                epoch: 2,
                loss: f64::INFINITY,
                validation: None,
                seconds: 0.25,
            },
        ],
        domains: vec![
            SavedDomain::from_id_map("user", &users),
            SavedDomain::from_id_map("item", &items),
        ],
        tables: vec![
            SavedTable {
                name: "p.mean".to_string(),
                domain: Some("user".to_string()),
                rows: 3,
                lanes: 2,
                values: user_values,
            },
            SavedTable {
                name: "q".to_string(),
                domain: Some("item".to_string()),
                rows: 2,
                lanes: 1,
                values: vec![3.5, -2.25],
            },
            SavedTable {
                name: "mu".to_string(),
                domain: None,
                rows: 1,
                lanes: 1,
                values: vec![3.53],
            },
        ],
    }
}

fn bits(m: &SavedModel) -> Vec<Vec<u64>> {
    m.tables
        .iter()
        .map(|t| t.values.iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn round_trip_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.reccm");
    let model = sample();
    save(&path, &model).unwrap();
    let back = load(&path).unwrap();

    assert_eq!(bits(&back), bits(&model));
    assert_eq!(back.tables[0].values[0].to_bits(), (-0.0f64).to_bits());
    assert_eq!(back.domains, model.domains);
    assert_eq!(back.settings, model.settings);
    assert_eq!(back.source, model.source);
    assert!(back.metrics["diverged"].is_nan());
    assert_eq!(back.metrics["rmse"], 0.93);
    assert_eq!(back.history[1].loss, f64::INFINITY);
    assert_eq!(back.history[0], model.history[0]);

    let items = back.domains[1].to_id_map();
    assert_eq!(items.get("302"), Some(1));
    assert_eq!(items.label(1), "L.A. Confidential, \"1997\"");
    assert_eq!(items.label(0), "Kolya (1996)");
    assert_eq!(back.domains[0].to_id_map().label(2), "22");
    assert_eq!(back.domains[1].to_id_map(), {
        let mut m = IdMap::new();
        m.intern("242");
        m.intern("302");
        m.set_label(0, "Kolya (1996)");
        m.set_label(1, "L.A. Confidential, \"1997\"");
        m
    });

    let params = back.params(vec![3, 2]).unwrap();
    assert_eq!(params.tables[0].dim(), (3, 2));
    assert_eq!(params.tables[0][[2, 1]], f64::MAX);
    assert_eq!(params.tables[2][[0, 0]], 3.53);
}

#[test]
fn file_starts_with_magic_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.reccm");
    save(&path, &sample()).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"RECC-MODEL\n"));
    assert_eq!(bytes[11..15], FORMAT_VERSION.to_le_bytes());
}

fn saved_bytes() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.reccm");
    save(&path, &sample()).unwrap();
    let bytes = fs::read(&path).unwrap();
    (dir, bytes)
}

fn load_bytes(dir: &Path, bytes: &[u8]) -> Result<SavedModel, ModelFileError> {
    let path = dir.join("damaged.reccm");
    fs::write(&path, bytes).unwrap();
    load(&path)
}

#[test]
fn truncated_file_is_corrupt() {
    let (dir, bytes) = saved_bytes();
    for cut in [1, 8, bytes.len() / 2, 14] {
        let err = load_bytes(dir.path(), &bytes[..bytes.len() - cut]).unwrap_err();
        match &err {
            ModelFileError::Corrupt { reason, .. } => {
                assert!(reason.contains("truncated"), "{err}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(err.to_string().contains("damaged.reccm"), "{err}");
    }
    // Cut inside the preamble, after the magic.
    let err = load_bytes(dir.path(), &bytes[..13]).unwrap_err();
    assert!(matches!(err, ModelFileError::Corrupt { .. }), "{err:?}");
}

#[test]
fn trailing_bytes_are_corrupt() {
    let (dir, mut bytes) = saved_bytes();
    bytes.extend_from_slice(&[0; 3]);
    let err = load_bytes(dir.path(), &bytes).unwrap_err();
    match &err {
        ModelFileError::Corrupt { reason, .. } => assert!(reason.contains("trailing"), "{err}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn damaged_header_is_corrupt() {
    let (dir, mut bytes) = saved_bytes();
    bytes[23] = b'#'; // inside the JSON header
    let err = load_bytes(dir.path(), &bytes).unwrap_err();
    assert!(matches!(err, ModelFileError::Corrupt { .. }), "{err:?}");
}

#[test]
fn foreign_file_is_not_a_model() {
    let dir = tempfile::tempdir().unwrap();
    for bytes in [&b"user,item,rating\n1,2,3\n"[..], b"", b"RECC"] {
        let err = load_bytes(dir.path(), bytes).unwrap_err();
        assert!(matches!(err, ModelFileError::NotAModel(_)), "{err:?}");
        assert!(err.to_string().contains("not a recc model file"), "{err}");
    }
}

#[test]
fn newer_version_is_refused() {
    let (dir, mut bytes) = saved_bytes();
    bytes[11..15].copy_from_slice(&99u32.to_le_bytes());
    let err = load_bytes(dir.path(), &bytes).unwrap_err();
    assert!(
        matches!(err, ModelFileError::Version { found: 99, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("written by a newer recc (format 99); this recc reads format 1"),
        "{err}"
    );
}

#[test]
fn missing_file_is_io() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&dir.path().join("absent.reccm")).unwrap_err();
    assert!(matches!(err, ModelFileError::Io { .. }), "{err:?}");
}

#[test]
fn save_replaces_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.reccm");
    fs::write(&path, "old contents that are longer than nothing").unwrap();
    let mut model = sample();
    save(&path, &model).unwrap();
    model.tables[2].values[0] = 7.0;
    model.model_name = "second".to_string();
    save(&path, &model).unwrap();
    let back = load(&path).unwrap();
    assert_eq!(back.model_name, "second");
    assert_eq!(back.tables[2].values, vec![7.0]);
    // No temporary files left beside it.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("m.reccm")]);
}

#[test]
fn inconsistent_model_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.reccm");
    fs::write(&path, "keep me").unwrap();
    let mut model = sample();
    model.tables[1].values.pop();
    let err = save(&path, &model).unwrap_err();
    assert!(matches!(err, ModelFileError::Corrupt { .. }), "{err:?}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    assert!(model.params(vec![3, 2]).is_err());

    let mut model = sample();
    model.tables[0].name = "../escape".to_string();
    assert!(save(&path, &model).is_err());
}

/// A small `.npy` reader: the `f64` values and shape, checking the header.
fn read_npy(path: &Path) -> ((usize, usize), Vec<f64>) {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + len) % 64, 0, "data must start on a 64-byte boundary");
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.ends_with('\n'));
    let header = header.trim_end();
    assert!(header.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': ("));
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap();
    let dims: Vec<usize> = shape.split(", ").map(|d| d.parse().unwrap()).collect();
    let values: Vec<f64> = bytes[10 + len..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values.len() * 8, bytes.len() - 10 - len);
    ((dims[0], dims[1]), values)
}

#[test]
fn npy_export_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").join("nested");
    let model = sample();
    let paths = export(&model, &out, ExportFormat::Npy).unwrap();
    let names: Vec<_> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "p.mean.npy",
            "p.mean.ids.txt",
            "q.npy",
            "q.ids.txt",
            "mu.npy"
        ]
    );
    for t in &model.tables {
        let (shape, values) = read_npy(&out.join(format!("{}.npy", t.name)));
        assert_eq!(shape, (t.rows, t.lanes));
        let got: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u64> = t.values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
    }
    assert_eq!(
        fs::read_to_string(out.join("p.mean.ids.txt")).unwrap(),
        "196\n186\n22\n"
    );
}

#[test]
fn csv_export_has_header_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let model = sample();
    let paths = export(&model, dir.path(), ExportFormat::Csv).unwrap();
    assert_eq!(paths.len(), 3);

    let text = fs::read_to_string(dir.path().join("p.mean.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "id,p.mean_0,p.mean_1");
    assert_eq!(lines.len(), 1 + 3);
    assert!(lines[1].starts_with("196,-0,0.000"), "{}", lines[1]);
    // Every value reads back exactly, -0 and subnormals included.
    for (r, line) in lines[1..].iter().enumerate() {
        let row: Vec<u64> = line
            .split(',')
            .skip(1)
            .map(|v| v.parse::<f64>().unwrap().to_bits())
            .collect();
        let want: Vec<u64> = model.tables[0].values[2 * r..2 * r + 2]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(row, want);
    }

    let text = fs::read_to_string(dir.path().join("mu.csv")).unwrap();
    assert_eq!(text, "mu_0\n3.53\n");
}

#[test]
fn export_format_parses() {
    assert_eq!("csv".parse::<ExportFormat>(), Ok(ExportFormat::Csv));
    assert_eq!("npy".parse::<ExportFormat>(), Ok(ExportFormat::Npy));
    assert!("parquet".parse::<ExportFormat>().is_err());
}
