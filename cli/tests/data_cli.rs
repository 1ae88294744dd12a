//! Data specs and task notes as a user meets them: the `recc` binary run on
//! small files written for each test.

mod common;

use common::recc;
use std::path::Path;

/// A comma-separated file of `rows` ratings of numeric ids under `header`.
fn ratings(dir: &Path, name: &str, header: &str, rows: usize) -> String {
    let mut text = format!("{header}\n");
    for k in 0..rows {
        text.push_str(&format!(
            "{},{},{}\n",
            k % 40 + 1,
            (k * 7) % 60 + 1,
            k % 5 + 1
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn train(data: &str, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "train",
        "models/biased_mf.rec",
        "--data",
        data,
        "--epochs",
        "1",
        "-q",
        "-o",
    ];
    let out = tempfile::tempdir().unwrap();
    let model = out.path().join("m.recm").display().to_string();
    args.push(&model);
    args.extend_from_slice(extra);
    recc(&args)
}

#[test]
fn a_misspelt_kind_names_the_closest() {
    let run = train("ml100k:data/ml-100k", &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("unknown kind `ml100k`; did you mean ml-100k?"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_folder_and_a_missing_file_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("nowhere").display().to_string();
    let run = train(&format!("ml-100k:{nowhere}"), &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains(&format!("there is no folder {nowhere}")),
        "{}",
        run.stderr
    );
    let run = train(&format!("lastfm:{}", dir.path().display()), &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("the folder has no user_artists.dat"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_header_is_detected_and_numeric_ids_bind() {
    let dir = tempfile::tempdir().unwrap();
    let plain = ratings(dir.path(), "r.csv", "user,item,rating", 400);
    let run = train(&plain, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("as a header"), "{}", run.stderr);

    let custom = ratings(dir.path(), "c.csv", "customer,product,stars", 400);
    let run = train(&custom, &["--bind", "u=customer", "--bind", "i=product"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("rmse"), "{}", run.stdout);
}

#[test]
fn gzip_files_are_read() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let plain = ratings(dir.path(), "r.csv", "user,item,rating", 400);
    let gz = dir.path().join("r.csv.gz");
    let mut enc = gzip_writer(&gz);
    enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
    drop(enc);
    let run = train(&gz.display().to_string(), &["--header"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// A gzip stream written with the system's `gzip`, so the test needs no
/// compression crate of its own.
fn gzip_writer(path: &Path) -> impl std::io::Write {
    struct Gzip(std::process::Child);
    impl std::io::Write for Gzip {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.stdin.as_mut().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Drop for Gzip {
        fn drop(&mut self) {
            drop(self.0.stdin.take());
            let _ = self.0.wait();
        }
    }
    let out = std::fs::File::create(path).unwrap();
    Gzip(
        std::process::Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(out)
            .spawn()
            .expect("gzip"),
    )
}

#[test]
fn binary_garbage_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.csv");
    let mut bytes = b"\x1b]0;pwned\x07,\x1b[31mred,x\n1,2,3\n".to_vec();
    bytes.extend(std::iter::repeat_n(0x9bu8, 3000));
    std::fs::write(&path, bytes).unwrap();
    let run = train(&path.display().to_string(), &["--header"]);
    assert_eq!(run.code, 2);
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
    assert!(run.stderr.len() < 400, "{:?}", run.stderr);
}

#[test]
fn split_files_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let split = dir.path().join("split").display().to_string();
    let run = train("builtin", &["--write-split", &split]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The side-feature model reads the genres bag and the occupation.
    let train_file = format!("{split}/train.tsv");
    let run = recc(&[
        "train",
        "models/side_mf.rec",
        "--data",
        &train_file,
        "--epochs",
        "1",
        "-q",
        "-o",
        &format!("{split}/side.recm"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_change_of_task_is_said() {
    let run = train("builtin", &["--bind", "r=age"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("note: input `r` reads `age` (--bind), not the data's target `rating`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("mean loss"), "{}", run.stderr);

    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("mse_neg.rec");
    std::fs::write(
        &model,
        "model mse_neg\nuse stdlib.losses\ninput u: user\ninput i: item\ninput r: real\n\
         param p[user]: vec(4) init normal(0, 0.1)\nparam q[item]: vec(4) init normal(0, 0.1)\n\
         let R(u, i) = dot(p[u], q[i])\n\
         loss mse(R(u, i), r) + mse(R(u, j), 0) where j ~ negative(item)\n\
         fit { optimizer: sgd(lr: 0.01), epochs: 1, seed: 1 }\n",
    )
    .unwrap();
    let out = dir.path().join("m.recm").display().to_string();
    let run = recc(&["train", &model.display().to_string(), "-q", "-o", &out]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("so it is a ranking model"),
        "{}",
        run.stderr
    );
}
