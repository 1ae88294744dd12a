//! Model files: round trips, damaged and foreign files, and exports.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use recc_runtime::data::IdMap;
use recc_runtime::export::{export, ExportFormat};
use recc_runtime::modelfile::{
    load, save, EpochRecord, ModelFileError, SavedDomain, SavedModel, SavedSamples, SavedTable,
    FORMAT_VERSION, SAMPLELESS_FORMAT_VERSION,
};

/// The source of [`sample`]: its tables are `p.mean`, `p.logvar` (user,
/// two lanes), `q` (item, one) and the global `mu`.
const SOURCE: &str = "model tiny

use stdlib.losses

input u: user
input i: item
input r: real

param p[user]: vec(2) variational(sd: 0.2)
param q[item]: real
param mu: real

let R(u, i) = mu + q[i] + dot(p[u], p[u])

loss mse(R(u, i), r)
";

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
        source_name: "tiny.rec".to_string(),
        source: SOURCE.to_string(),
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
                name: "p.logvar".to_string(),
                domain: Some("user".to_string()),
                rows: 3,
                lanes: 2,
                values: vec![-5.0, -4.5, -4.0, -3.5, -3.0, -2.5],
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
        context: None,
        samples: None,
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
    assert_eq!(params.tables[3][[0, 0]], 3.53);
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
            .contains("written by a newer recc (format 99); this recc reads format 4"),
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
    model.tables[3].values[0] = 7.0;
    model.model_name = "second".to_string();
    save(&path, &model).unwrap();
    let back = load(&path).unwrap();
    assert_eq!(back.model_name, "second");
    assert_eq!(back.tables[3].values, vec![7.0]);
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
    model.tables[2].values.pop();
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
            "p.logvar.npy",
            "p.logvar.ids.txt",
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
    assert_eq!(paths.len(), 4);

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

/// CRC-32 (IEEE), bit by bit: an implementation independent of the one
/// files are written with.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The bytes `save` would write for `model` in format `version`, without
/// any of its checks: how a file edited by hand (checksum recomputed) or
/// written by an older recc looks.
fn forge(model: &SavedModel, version: u32) -> Vec<u8> {
    let header = serde_json::to_vec(model).unwrap();
    let mut bytes = b"RECC-MODEL\n".to_vec();
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    for t in &model.tables {
        for v in &t.values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    if let Some(samples) = &model.samples {
        for v in &samples.values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    if version >= 2 {
        let crc = crc32(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
    }
    bytes
}

/// `load` refuses the forged file as corrupt, with a message naming the file
/// and containing every one of `words`.
fn refused(model: &SavedModel, words: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let err = load_bytes(dir.path(), &forge(model, FORMAT_VERSION)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ModelFileError::Corrupt { .. }), "{err:?}");
    assert!(text.contains("damaged.reccm"), "{text}");
    for w in words {
        assert!(text.contains(w), "`{w}` not in: {text}");
    }
    text
}

#[test]
fn the_checksum_is_the_crc32_of_everything_before_it() {
    let (dir, bytes) = saved_bytes();
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    assert_eq!(tail, crc32(body).to_le_bytes());
    assert_eq!(bytes, forge(&sample(), FORMAT_VERSION));
    load_bytes(dir.path(), &forge(&sample(), FORMAT_VERSION)).unwrap();
}

#[test]
fn every_single_bit_flip_is_refused() {
    let (dir, bytes) = saved_bytes();
    let bits = bytes.len() * 8;
    // 300 positions spread over the file by a fixed LCG, plus every bit of
    // the first and last eight bytes.
    let mut positions: Vec<usize> = (0..64).chain(bits - 64..bits).collect();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    while positions.len() < 300 + 128 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        positions.push((x >> 33) as usize % bits);
    }
    for bit in positions {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let result = load_bytes(dir.path(), &damaged);
        assert!(result.is_err(), "a flip of bit {bit} was accepted");
    }
}

#[test]
fn a_flip_in_the_values_is_a_checksum_mismatch() {
    let (dir, mut bytes) = saved_bytes();
    let at = bytes.len() - 4 - 8; // the last value, `mu`
    bytes[at] ^= 1;
    let err = load_bytes(dir.path(), &bytes).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("checksum mismatch"), "{text}");
    assert!(text.contains("damaged.reccm"), "{text}");
}

#[test]
fn a_widened_source_is_refused_naming_the_table() {
    let mut model = sample();
    model.source = model.source.replace("vec(2)", "vec(4096)");
    refused(&model, &["`p.mean`", "2 lanes", "vec(4096)"]);
}

#[test]
fn swapped_table_names_are_refused() {
    let mut model = sample();
    model.tables[0].name = "q".into();
    model.tables[2].name = "p.mean".into();
    refused(&model, &["`q`", "`p.mean`", "in the source"]);
}

#[test]
fn a_dropped_table_is_refused_naming_it() {
    for k in 0..4 {
        let mut model = sample();
        let gone = model.tables.remove(k);
        let text = refused(&model, &["missing from the file"]);
        assert!(text.contains(&format!("`{}`", gone.name)), "{text}");
    }
}

#[test]
fn an_extra_table_is_refused() {
    let mut model = sample();
    model.tables.push(SavedTable {
        name: "extra".into(),
        domain: None,
        rows: 1,
        lanes: 1,
        values: vec![1.0],
    });
    refused(&model, &["`extra`", "not in the source"]);
}

#[test]
fn a_dropped_row_is_refused() {
    let mut model = sample();
    model.tables[1].rows = 2;
    model.tables[1].values.truncate(4);
    refused(&model, &["`p.logvar`", "2 rows", "3 ids"]);

    // An id dropped from the domain but not from its tables.
    let mut model = sample();
    model.domains[0].ids.pop();
    model.domains[0].labels.pop();
    refused(&model, &["`p.mean`", "3 rows", "2 ids"]);
}

#[test]
fn other_domains_or_shapes_than_the_source_are_refused() {
    let mut model = sample();
    model.domains.swap(0, 1);
    refused(&model, &["domains", "`item`, `user`", "`user`, `item`"]);

    let mut model = sample();
    model.domains.remove(1);
    refused(&model, &["`q`", "unknown domain `item`"]);

    let mut model = sample();
    model.tables[3].domain = Some("item".into());
    model.tables[3].rows = 2;
    model.tables[3].values = vec![1.0, 2.0];
    refused(&model, &["`mu`", "global"]);

    let mut model = sample();
    model.tables[2].lanes = 2;
    model.tables[2].values = vec![1.0; 4];
    refused(&model, &["`q`", "2 lanes"]);

    let mut model = sample();
    model.domains[1].ids.clear();
    model.domains[1].labels.clear();
    model.tables[2].rows = 0;
    model.tables[2].values.clear();
    refused(&model, &["domain `item` has no ids"]);
}

#[test]
fn a_source_that_does_not_compile_is_refused() {
    let mut model = sample();
    model.source = model.source.replace("param mu: real", "param mu: reel");
    refused(&model, &["embedded source", "does not compile"]);
    let mut model = sample();
    model.source.clear();
    refused(&model, &["embedded source"]);
}

#[test]
fn a_model_that_disagrees_with_its_source_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.reccm");
    let mut model = sample();
    model.tables.swap(0, 2);
    let err = save(&path, &model).unwrap_err();
    assert!(err.to_string().contains("cannot save model"), "{err}");
    assert!(!path.exists());
}

#[test]
fn params_refuse_other_domain_sizes() {
    let model = sample();
    assert!(model.params(vec![3, 2]).is_ok());
    for sizes in [vec![4, 2], vec![3], vec![3, 2, 1], vec![]] {
        let err = model.params(sizes.clone()).unwrap_err();
        assert!(
            err.to_string().contains("`user`, `item`"),
            "{sizes:?}: {err}"
        );
    }
}

#[test]
fn a_format_1_file_without_checksum_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let back = load_bytes(dir.path(), &forge(&sample(), 1)).unwrap();
    assert_eq!(bits(&back), bits(&sample()));
    // Every check but the checksum still applies.
    let mut model = sample();
    model.tables[0].name = "q".into();
    model.tables[2].name = "p.mean".into();
    let err = load_bytes(dir.path(), &forge(&model, 1)).unwrap_err();
    assert!(err.to_string().contains("in the source"), "{err}");
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn save_refuses_a_directory_a_fifo_and_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let err = save(&sub, &sample()).unwrap_err();
    assert!(matches!(err, ModelFileError::Output { .. }), "{err:?}");
    assert!(err.to_string().contains("a directory"), "{err}");
    assert!(sub.is_dir());

    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = save(&fifo, &sample()).unwrap_err();
    assert!(err.to_string().contains("a FIFO"), "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");

    // A link to it is refused just the same, naming where it leads.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let err = save(&link, &sample()).unwrap_err();
    assert!(err.to_string().contains("links to"), "{err}");
    assert!(err.to_string().contains("a FIFO"), "{err}");
    assert_eq!(names_in(dir.path()), ["fifo", "link", "sub"]);

    let err = save(Path::new("/dev/null"), &sample()).unwrap_err();
    assert!(err.to_string().contains("a character device"), "{err}");
    let null = fs::symlink_metadata("/dev/null").unwrap();
    assert!(!null.is_file() && !null.file_type().is_symlink());
}

#[test]
fn save_writes_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("m.reccm");
    fs::write(&real, "old").unwrap();
    // A relative link, in another directory, through a second link.
    let first = dir.path().join("first");
    std::os::unix::fs::symlink("real/m.reccm", &first).unwrap();
    let second = dir.path().join("second");
    std::os::unix::fs::symlink(&first, &second).unwrap();
    save(&second, &sample()).unwrap();
    assert!(fs::symlink_metadata(&second)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(fs::symlink_metadata(&first)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(bits(&load(&real).unwrap()), bits(&sample()));
    assert_eq!(names_in(&real_dir), ["m.reccm"]);
    assert_eq!(names_in(dir.path()), ["first", "real", "second"]);

    // A dangling link creates the file it names.
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink("real/new.reccm", &dangling).unwrap();
    save(&dangling, &sample()).unwrap();
    assert!(real_dir.join("new.reccm").is_file());
}

#[test]
fn check_output_says_where_a_write_lands_and_leaves_nothing() {
    use recc_runtime::modelfile::check_output;
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.reccm");
    assert_eq!(check_output(&new).unwrap(), new);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&new, &link).unwrap();
    assert_eq!(check_output(&link).unwrap(), new);
    assert_eq!(names_in(dir.path()), ["link"]);

    let err = check_output(&dir.path().join("missing").join("m.reccm")).unwrap_err();
    assert!(err.to_string().contains("cannot create a file in"), "{err}");
    assert!(check_output(dir.path()).is_err());
}

#[test]
fn stale_temporary_files_of_the_same_target_are_removed_on_the_next_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.reccm");
    let write = |name: &str| {
        let p = dir.path().join(name);
        fs::write(&p, "partial").unwrap();
        p
    };
    // Far beyond any pid a kernel hands out: that process is gone.
    let gone = write(".m.reccm.recc-tmp-99999999-aB3dE5");
    // Process 1 runs as long as the machine does: a write in progress...
    let running = write(".m.reccm.recc-tmp-1-xY7zQ2");
    // ...unless the file is older than any write takes.
    let ancient = write(".m.reccm.recc-tmp-1-oLdOnE");
    let two_days = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
    fs::File::options()
        .write(true)
        .open(&ancient)
        .unwrap()
        .set_modified(two_days)
        .unwrap();
    // Another target's, and files that only look similar.
    write(".other.reccm.recc-tmp-99999999-aB3dE5");
    write(".m.reccm.recc-tmp-notapid-aB3dE5");
    write("m.reccm.recc-tmp-99999999-aB3dE5");

    save(&path, &sample()).unwrap();
    assert!(!gone.exists());
    assert!(!ancient.exists());
    assert!(running.exists());
    assert_eq!(
        names_in(dir.path()),
        [
            ".m.reccm.recc-tmp-1-xY7zQ2",
            ".m.reccm.recc-tmp-notapid-aB3dE5",
            ".other.reccm.recc-tmp-99999999-aB3dE5",
            "m.reccm",
            "m.reccm.recc-tmp-99999999-aB3dE5",
        ]
    );
}

#[test]
fn the_temporary_file_of_an_exited_process_is_removed() {
    // What a save killed before its rename leaves: the temporary file, named
    // after the target and the writing process, which has since gone.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.reccm");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let left = dir.path().join(format!(".m.reccm.recc-tmp-{pid}-Zz9Yy8"));
    fs::write(&left, vec![0u8; 4096]).unwrap();
    save(&path, &sample()).unwrap();
    assert_eq!(names_in(dir.path()), ["m.reccm"]);
}

#[test]
fn nan_scores_rank_after_every_number() {
    use recc_runtime::predict::{best_first, similar};
    let mut ranked = [
        (0, 0.5),
        (1, f64::NAN),
        (2, f64::INFINITY),
        (3, -f64::NAN),
        (4, f64::NEG_INFINITY),
        (5, 0.5),
    ];
    ranked.sort_by(|&a, &b| best_first(a, b));
    let order: Vec<u32> = ranked.iter().map(|r| r.0).collect();
    assert_eq!(order, [2, 0, 5, 4, 1, 3]);

    // A row of NaN in an embedding is never anyone's nearest neighbour.
    let model = sample();
    let compiled = recc_compiler::compile("tiny.rec", SOURCE);
    let graph = recc_compiler::forward_graph(&compiled.model.unwrap()).unwrap();
    let mut params = model.params(vec![3, 2]).unwrap();
    params.tables[0].row_mut(1).fill(f64::NAN);
    params.tables[0]
        .row_mut(2)
        .assign(&ndarray::arr1(&[1.0, 2.0]));
    params.tables[0]
        .row_mut(0)
        .assign(&ndarray::arr1(&[1.0, 2.5]));
    let near = similar(&graph, &params, 0, 0, 5);
    assert_eq!(near.len(), 2);
    assert_eq!(near[0].0, 2);
    assert!(near[1].1.is_nan(), "{near:?}");
}

#[test]
fn format_2_files_without_a_context_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let back = load_bytes(dir.path(), &forge(&sample(), 2)).unwrap();
    assert_eq!(back.context, None);
    assert_eq!(bits(&back), bits(&sample()));
}

/// [`sample`] with two kept draws of `q` (item, one lane) and `mu`.
fn with_draws() -> SavedModel {
    let mut model = sample();
    model.samples = Some(SavedSamples {
        tables: vec!["q".into(), "mu".into()],
        noise_precision: vec![1.5, 2.25],
        // Draw 1: q = [0.5, -0.0], mu = 3.25; draw 2: q = [f32::MIN_POSITIVE, 7], mu = -1.
        values: vec![0.5, -0.0, 3.25, f32::MIN_POSITIVE, 7.0, -1.0],
    });
    model
}

#[test]
fn kept_draws_round_trip_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.reccm");
    let model = with_draws();
    save(&path, &model).unwrap();
    let back = load(&path).unwrap();
    assert_eq!(bits(&back), bits(&model));
    assert_eq!(back.samples, model.samples);
    let (Some(a), Some(b)) = (&back.samples, &model.samples) else {
        panic!("the draws were lost")
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.values), bits(&b.values));
    // Each value is four bytes after the tables'.
    let plain = tempfile::tempdir().unwrap();
    let plain_path = plain.path().join("m.reccm");
    let mut without = model.clone();
    without.samples = None;
    save(&plain_path, &without).unwrap();
    let header_growth =
        serde_json::to_vec(&model).unwrap().len() - serde_json::to_vec(&without).unwrap().len();
    assert_eq!(
        fs::metadata(&path).unwrap().len() - fs::metadata(&plain_path).unwrap().len(),
        (header_growth + 6 * 4) as u64
    );
    // As the predictor reads them: tables by position, values in shape.
    let samples = back.samples().unwrap().unwrap();
    assert_eq!(samples.tables, vec![2, 3]);
    assert_eq!(samples.draws.len(), 2);
    assert_eq!(samples.draws[1].noise_precision, 2.25);
    assert_eq!(samples.draws[0].tables[0].dim(), (2, 1));
    assert_eq!(samples.draws[1].tables[0][[1, 0]], 7.0);
    assert_eq!(samples.draws[1].tables[1][[0, 0]], -1.0);
}

#[test]
fn damaged_kept_draws_are_refused() {
    let (dir, _) = saved_bytes();
    let bytes = forge(&with_draws(), FORMAT_VERSION);
    // Cut inside the draws' values: the header promises more.
    let err = load_bytes(dir.path(), &bytes[..bytes.len() - 6]).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(err.to_string().contains("kept draws"), "{err}");

    let mut model = with_draws();
    if let Some(s) = &mut model.samples {
        s.tables = vec!["mu".into(), "q".into()];
    }
    refused(&model, &["kept draws", "`q`", "order"]);
    let mut model = with_draws();
    if let Some(s) = &mut model.samples {
        s.tables = vec!["r".into()];
    }
    refused(&model, &["kept draws", "`r`", "not in the file"]);
    let mut model = with_draws();
    if let Some(s) = &mut model.samples {
        s.noise_precision = vec![1.0, -2.0];
    }
    refused(&model, &["noise precision", "-2"]);
    let mut model = with_draws();
    if let Some(s) = &mut model.samples {
        s.noise_precision = vec![1.0];
        s.values.truncate(3);
    }
    // Consistent, one draw: read.
    load_bytes(dir.path(), &forge(&model, FORMAT_VERSION)).unwrap();
    // A header that says there are three draws of three values: the bytes
    // for one are not there.
    if let Some(s) = &mut model.samples {
        s.noise_precision = vec![1.0, 1.0, 1.0];
    }
    let err = load_bytes(dir.path(), &forge(&model, FORMAT_VERSION)).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// A format 3 file (before the kept draws) is read as it was written.
#[test]
fn a_format_3_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let back = load_bytes(dir.path(), &forge(&sample(), SAMPLELESS_FORMAT_VERSION)).unwrap();
    assert_eq!(bits(&back), bits(&sample()));
    assert!(back.samples.is_none());
}
