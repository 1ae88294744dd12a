//! Benchmark support: the Zipf ratings set is deterministic, skewed as asked
//! and well-formed; its cache round-trips and heals; the hand-written biased
//! MF loop learns, follows the model's update rule, and gives the same
//! parameters with and without prefetching.

use recc_runtime::bench::{
    default_cache_dir, generate_zipf, load_or_generate_zipf, peak_memory_bytes,
    HandwrittenBiasedMf, RatingTriples, ZipfConfig,
};
use recc_runtime::data::{ColumnData, Dataset};

fn small() -> ZipfConfig {
    ZipfConfig {
        users: 2_000,
        items: 500,
        ratings: 50_000,
        exponent: 1.0,
        seed: 7,
    }
}

fn ratings(data: &Dataset) -> &[f64] {
    match data.column("rating").map(|c| &c.data) {
        Some(ColumnData::Real(r)) => r,
        _ => panic!("no real column `rating`"),
    }
}

fn items(data: &Dataset) -> &[u32] {
    data.items().expect("an item column").1
}

/// Per-item counts, most popular first.
fn popularity(data: &Dataset, n: usize) -> Vec<usize> {
    let mut counts = vec![0usize; n];
    for &i in items(data) {
        counts[i as usize] += 1;
    }
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts
}

/// The least-squares slope of `ln count` against `ln rank` over ranks
/// 1..=`top`, negated: the exponent the counts follow.
fn fitted_exponent(counts: &[usize], top: usize) -> f64 {
    let points: Vec<(f64, f64)> = counts[..top]
        .iter()
        .enumerate()
        .map(|(r, &c)| (((r + 1) as f64).ln(), (c.max(1) as f64).ln()))
        .collect();
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    -sxy / sxx
}

#[test]
fn deterministic_for_a_seed() {
    let config = small();
    let a = generate_zipf(&config);
    assert_eq!(a, generate_zipf(&config));
    let other = generate_zipf(&ZipfConfig { seed: 8, ..config });
    assert_ne!(ratings(&a), ratings(&other));
    assert_ne!(items(&a), items(&other));
}

#[test]
fn independent_of_thread_count() {
    let config = ZipfConfig {
        ratings: 300_000,
        ..small()
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a pool")
        .install(|| generate_zipf(&config));
    let four = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .expect("a pool")
        .install(|| generate_zipf(&config));
    assert_eq!(one, four);
}

#[test]
fn layout_domains_and_ranges() {
    let config = small();
    let data = generate_zipf(&config);
    data.validate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.len(), config.ratings);
    assert_eq!(data.name, "zipf-50k");
    assert_eq!(ZipfConfig::large().name(), "zipf-20m");
    assert_eq!(data.domain_size("user"), config.users);
    assert_eq!(data.domain_size("item"), config.items);
    assert_eq!(data.user.as_deref(), Some("user"));
    assert_eq!(data.item.as_deref(), Some("item"));
    assert_eq!(data.target.as_deref(), Some("rating"));
    let (user_domain, users) = data.users().expect("users");
    let (item_domain, _) = data.items().expect("items");
    assert_eq!((user_domain, item_domain), ("user", "item"));
    assert!(users.iter().all(|&u| (u as usize) < config.users));
    assert!(items(&data).iter().all(|&i| (i as usize) < config.items));
    let r = ratings(&data);
    assert!(r
        .iter()
        .all(|&x| (1.0..=5.0).contains(&x) && x.fract() == 0.0));
    let mean = r.iter().sum::<f64>() / r.len() as f64;
    assert!((3.2..3.8).contains(&mean), "mean rating {mean}");
    // Every star is used: the planted structure spreads the ratings out.
    for star in 1..=5 {
        assert!(r.iter().any(|&x| x == f64::from(star)), "no {star}");
    }
    let names = &data.domains["user"];
    assert_eq!(names.name(0), "u1");
    assert_eq!(data.domains["item"].name(41), "i42");
}

#[test]
fn item_popularity_follows_the_exponent() {
    let config = small();
    let counts = popularity(&generate_zipf(&config), config.items);
    let (top, median) = (counts[0], counts[config.items / 2]);
    // Weight 1 against 1/250: about 250 times as frequent.
    assert!(
        top > 100 * median.max(1),
        "top item {top} ratings, median {median}"
    );
    let s = fitted_exponent(&counts, 100);
    assert!((0.85..1.15).contains(&s), "fitted exponent {s}");

    let flatter = ZipfConfig {
        exponent: 0.5,
        ..small()
    };
    let counts = popularity(&generate_zipf(&flatter), flatter.items);
    let s = fitted_exponent(&counts, 100);
    assert!((0.35..0.65).contains(&s), "fitted exponent {s}");
}

#[test]
fn users_are_mildly_skewed() {
    let config = small();
    let data = generate_zipf(&config);
    let mut counts = vec![0usize; config.users];
    for &u in data.users().expect("users").1 {
        counts[u as usize] += 1;
    }
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let (top, median) = (counts[0], counts[config.users / 2]);
    assert!(top > 5 * median, "top user {top}, median {median}");
    assert!(top < 200 * median.max(1), "top user {top}, median {median}");
}

#[test]
fn degenerate_configs_have_no_rows() {
    for config in [
        ZipfConfig {
            users: 0,
            ..small()
        },
        ZipfConfig {
            items: 0,
            ..small()
        },
        ZipfConfig {
            ratings: 0,
            ..small()
        },
    ] {
        let data = generate_zipf(&config);
        assert!(data.is_empty());
        data.validate().unwrap_or_else(|e| panic!("{e}"));
    }
    // A non-finite exponent is uniform, not a panic.
    let data = generate_zipf(&ZipfConfig {
        exponent: f64::NAN,
        ..small()
    });
    data.validate().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn cache_round_trips() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = small();
    let drawn = generate_zipf(&config);
    let first = load_or_generate_zipf(&config, dir.path()).expect("written");
    assert_eq!(first, drawn);
    let path = dir.path().join(config.cache_file_name());
    assert_eq!(
        config.cache_file_name(),
        "zipf-u2000-i500-r50000-e1-s7-v1.bin"
    );
    let len = std::fs::metadata(&path).expect("a cache file").len();
    assert_eq!(len, 64 + 12 * config.ratings as u64);

    // Proof that the second call reads the file: change one rating in it.
    let mut bytes = std::fs::read(&path).expect("readable");
    let at = 64 + 8 * config.ratings;
    let old = f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let new = if old == 5.0 { 1.0f32 } else { 5.0 };
    bytes[at..at + 4].copy_from_slice(&new.to_le_bytes());
    std::fs::write(&path, &bytes).expect("writable");
    let read = load_or_generate_zipf(&config, dir.path()).expect("read");
    assert_eq!(ratings(&read)[0], f64::from(new));
    assert_eq!(ratings(&read)[1..], ratings(&drawn)[1..]);
    assert_eq!(read.columns[..2], drawn.columns[..2]);
    assert_eq!(read.domains, drawn.domains);

    // No temporary files are left behind.
    let entries = std::fs::read_dir(dir.path()).expect("listable").count();
    assert_eq!(entries, 1);
}

#[test]
fn corrupt_cache_is_regenerated() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = small();
    let drawn = generate_zipf(&config);
    let path = dir.path().join(config.cache_file_name());
    load_or_generate_zipf(&config, dir.path()).expect("written");
    let good = std::fs::read(&path).expect("readable");

    let mut out_of_domain = good.clone();
    out_of_domain[64..68].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut bad_rating = good.clone();
    let last = good.len() - 4;
    bad_rating[last..].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut bad_magic = good.clone();
    bad_magic[0] ^= 0xff;
    let mut bad_version = good.clone();
    bad_version[8] = 99;
    let mut other_seed = good.clone();
    other_seed[48] ^= 1;
    let corruptions: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", b"not a cache file".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("too long", [good.as_slice(), &[0u8; 12]].concat()),
        ("bad magic", bad_magic),
        ("bad version", bad_version),
        ("another seed", other_seed),
        ("index out of domain", out_of_domain),
        ("rating not a star", bad_rating),
    ];
    for (what, bytes) in corruptions {
        std::fs::write(&path, bytes).expect("writable");
        let data =
            load_or_generate_zipf(&config, dir.path()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(data, drawn, "{what}");
        assert_eq!(
            std::fs::read(&path).expect("readable"),
            good,
            "{what}: the file is rewritten"
        );
    }
}

#[test]
fn a_killed_writers_temporary_cache_file_is_removed_by_the_next_write() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = ZipfConfig {
        ratings: 1_000,
        ..small()
    };
    let name = config.cache_file_name();
    // Left by a process that is gone (no kernel hands out this pid).
    let stale = dir.path().join(format!(".{name}.recc-tmp-99999999-k1lLeD"));
    std::fs::write(&stale, vec![0u8; 4096]).expect("writable");
    load_or_generate_zipf(&config, dir.path()).expect("written");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("listable")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, [name]);
}

#[test]
fn cache_directory_is_created() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let nested = dir.path().join("a").join("b");
    let config = ZipfConfig {
        ratings: 1_000,
        ..small()
    };
    let data = load_or_generate_zipf(&config, &nested).expect("written");
    assert_eq!(data.len(), 1_000);
    assert!(nested.join(config.cache_file_name()).is_file());
}

/// The only test that touches the environment, so nothing races with it.
#[test]
fn cache_dir_precedence() {
    let saved: Vec<_> = ["RECC_CACHE_DIR", "XDG_CACHE_HOME", "HOME"]
        .map(|v| (v, std::env::var_os(v)))
        .into();
    std::env::set_var("RECC_CACHE_DIR", "/tmp/recc-x");
    std::env::set_var("XDG_CACHE_HOME", "/tmp/xdg");
    std::env::set_var("HOME", "/home/someone");
    assert_eq!(default_cache_dir(), std::path::Path::new("/tmp/recc-x"));
    std::env::set_var("RECC_CACHE_DIR", "");
    assert_eq!(default_cache_dir(), std::path::Path::new("/tmp/xdg/recc"));
    std::env::remove_var("XDG_CACHE_HOME");
    assert_eq!(
        default_cache_dir(),
        std::path::Path::new("/home/someone/.cache/recc")
    );
    std::env::remove_var("HOME");
    assert_eq!(
        default_cache_dir(),
        std::path::Path::new("target/recc-cache")
    );
    for (v, value) in saved {
        match value {
            Some(x) => std::env::set_var(v, x),
            None => std::env::remove_var(v),
        }
    }
}

/// A shuffled order of `n` rows, fixed by `seed`.
fn shuffled(n: usize, seed: u64) -> Vec<u32> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    order
}

fn mse(m: &HandwrittenBiasedMf, t: &RatingTriples) -> f64 {
    let mut sum = 0.0;
    for ((&u, &i), &r) in t.users.iter().zip(t.items).zip(&t.ratings) {
        let e = f64::from(m.predict(u, i).expect("in range") - r);
        sum += e * e;
    }
    sum / t.ratings.len() as f64
}

#[test]
fn handwritten_loop_learns() {
    let config = small();
    let data = generate_zipf(&config);
    let t = RatingTriples::of(&data).expect("columns");
    let mut m = HandwrittenBiasedMf::new(config.users, config.items, 32, 42);
    let order = shuffled(data.len(), 1);
    let mut losses = Vec::new();
    for _ in 0..6 {
        losses.push(m.epoch(t.users, t.items, &t.ratings, &order, 0.005, 0.08, 0));
    }
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "losses {losses:?}");
    // Better than the best constant: the biases, at least, were found.
    let mean = t.ratings.iter().map(|&r| f64::from(r)).sum::<f64>() / t.ratings.len() as f64;
    let variance = t
        .ratings
        .iter()
        .map(|&r| (f64::from(r) - mean).powi(2))
        .sum::<f64>()
        / t.ratings.len() as f64;
    let trained = mse(&m, &t);
    assert!(
        trained < 0.9 * variance,
        "mse {trained}, variance {variance}"
    );
}

#[test]
fn prefetch_never_changes_results() {
    let config = small();
    let data = generate_zipf(&config);
    let t = RatingTriples::of(&data).expect("columns");
    let order = shuffled(data.len(), 3);
    // 32 lanes is four full blocks; 13 has a scalar tail.
    for k in [32, 13] {
        let mut plain = HandwrittenBiasedMf::new(config.users, config.items, k, 5);
        let mut fetched = plain.clone();
        let mut far = plain.clone();
        for _ in 0..2 {
            let a = plain.epoch(t.users, t.items, &t.ratings, &order, 0.01, 0.05, 0);
            let b = fetched.epoch(t.users, t.items, &t.ratings, &order, 0.01, 0.05, 8);
            let c = far.epoch(t.users, t.items, &t.ratings, &order, 0.01, 0.05, 1_000_000);
            assert_eq!(a.to_bits(), b.to_bits(), "k {k}");
            assert_eq!(a.to_bits(), c.to_bits(), "k {k}");
        }
        assert_eq!(plain, fetched, "k {k}");
        assert_eq!(plain, far, "k {k}");
    }
}

/// One step against the update rule written out in `f64`: the gradient of
/// `(R − r)² + reg·(|p|² + |q|² + w² + m²)`, applied from the old values.
#[test]
fn one_step_follows_the_model() {
    let k = 19;
    let mut m = HandwrittenBiasedMf::new(3, 4, k, 11);
    m.global = 3.0;
    m.user_bias[1] = 0.2;
    m.item_bias[2] = -0.3;
    let before = m.clone();
    let (lr, reg, rating) = (0.05f32, 0.1f32, 4.0f32);
    let loss = m.epoch(&[1], &[2], &[rating], &[0], lr, reg, 0);

    let p: Vec<f64> = before.user_factors[k..2 * k]
        .iter()
        .map(|&x| f64::from(x))
        .collect();
    let q: Vec<f64> = before.item_factors[2 * k..3 * k]
        .iter()
        .map(|&x| f64::from(x))
        .collect();
    let (w, mi) = (
        f64::from(before.user_bias[1]),
        f64::from(before.item_bias[2]),
    );
    let dot: f64 = p.iter().zip(&q).map(|(a, b)| a * b).sum();
    let e = f64::from(before.global) + w + mi + dot - f64::from(rating);
    let (lr, reg) = (f64::from(lr), f64::from(reg));
    let sq = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
    let expected_loss = e * e + reg * (sq(&p) + sq(&q) + w * w + mi * mi);
    let close = |a: f64, b: f64, what: &str| {
        assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{what}: {a} vs {b}");
    };
    close(loss, expected_loss, "loss");
    close(
        f64::from(m.global),
        f64::from(before.global) - lr * 2.0 * e,
        "b",
    );
    close(
        f64::from(m.user_bias[1]),
        w - lr * (2.0 * e + 2.0 * reg * w),
        "w",
    );
    close(
        f64::from(m.item_bias[2]),
        mi - lr * (2.0 * e + 2.0 * reg * mi),
        "m",
    );
    for d in 0..k {
        let pd = p[d] - lr * (2.0 * e * q[d] + 2.0 * reg * p[d]);
        let qd = q[d] - lr * (2.0 * e * p[d] + 2.0 * reg * q[d]);
        close(f64::from(m.user_factors[k + d]), pd, "p");
        close(f64::from(m.item_factors[2 * k + d]), qd, "q");
    }
    // Untouched rows stay as they were.
    assert_eq!(m.user_factors[..k], before.user_factors[..k]);
    assert_eq!(m.item_factors[3 * k..], before.item_factors[3 * k..]);
    assert_eq!(m.user_bias[0], 0.0);
}

#[test]
fn out_of_range_examples_are_skipped() {
    let mut m = HandwrittenBiasedMf::new(2, 2, 8, 1);
    let before = m.clone();
    // Row 5 past the data, user 9 and item 7 outside the model.
    let loss = m.epoch(&[0, 9, 1], &[0, 1, 7], &[3.0, 4.0], &[5, 1, 2], 0.1, 0.1, 4);
    assert_eq!(loss, 0.0);
    assert_eq!(m, before);
    assert_eq!(m.predict(2, 0), None);
    assert!(m.predict(1, 1).is_some());
}

#[test]
fn rating_triples_need_the_columns() {
    let mut data = generate_zipf(&ZipfConfig {
        ratings: 100,
        ..small()
    });
    let t = RatingTriples::of(&data).expect("columns");
    assert_eq!(t.ratings.len(), 100);
    data.target = None;
    assert!(RatingTriples::of(&data).is_err());
}

#[cfg(target_os = "linux")]
#[test]
fn peak_memory_is_reported() {
    let peak = peak_memory_bytes().expect("VmHWM on Linux");
    assert!(peak > 0);
    // At least what a megabyte buffer, touched, adds.
    let buffer = vec![1u8; 1 << 20];
    assert!(peak_memory_bytes().expect("VmHWM") >= buffer.len() as u64);
}
