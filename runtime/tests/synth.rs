//! The built-in synthetic dataset: deterministic, well-formed, ml-100k-shaped,
//! and with structure a model with user and item terms can find.

use std::collections::HashMap;

use recc_runtime::data::{ColumnData, Dataset};
use recc_runtime::split::random_holdout;
use recc_runtime::synth::{generate, SynthConfig};

fn ratings(data: &Dataset) -> &[f64] {
    match data.column("rating").map(|c| &c.data) {
        Some(ColumnData::Real(r)) => r,
        _ => panic!("no real column `rating`"),
    }
}

#[test]
fn deterministic_for_a_seed() {
    let config = SynthConfig::default();
    let a = generate(&config);
    assert_eq!(a, generate(&config));
    let other = generate(&SynthConfig {
        seed: config.seed + 1,
        ..config
    });
    assert_ne!(ratings(&a), ratings(&other));
}

#[test]
fn sizes_and_columns() {
    let config = SynthConfig::default();
    let data = generate(&config);
    data.validate().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        (25_000..35_000).contains(&data.len()),
        "{} rows",
        data.len()
    );
    assert_eq!(data.domain_size("user"), config.users);
    assert_eq!(data.domain_size("item"), config.items);
    assert_eq!(data.domain_size("age_group"), 7);
    assert_eq!(data.domain_size("gender"), 2);
    assert_eq!(data.domain_size("occupation"), 10);
    assert_eq!(data.domain_size("genre"), 8);
    let kinds: Vec<(String, String)> = data
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.data.kind()))
        .collect();
    let want = [
        ("user", "index(user)"),
        ("item", "index(item)"),
        ("rating", "real"),
        ("timestamp", "time"),
        ("age", "real"),
        ("age_group", "index(age_group)"),
        ("gender", "index(gender)"),
        ("occupation", "index(occupation)"),
        ("genres", "bag(genre)"),
        ("year", "index(year)"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect();
    assert_eq!(kinds, want);
    assert_eq!(data.target.as_deref(), Some("rating"));
    assert_eq!(data.user.as_deref(), Some("user"));
    assert_eq!(data.item.as_deref(), Some("item"));
    assert_eq!(data.time.as_deref(), Some("timestamp"));

    assert!(ratings(&data)
        .iter()
        .all(|&r| (1.0..=5.0).contains(&r) && r.fract() == 0.0));
    for c in &data.columns {
        match &c.data {
            ColumnData::Index { domain, values } => {
                let size = data.domain_size(domain);
                assert!(values.iter().all(|&v| (v as usize) < size), "{}", c.name);
            }
            ColumnData::Bag {
                domain,
                offsets,
                members,
                weights,
            } => {
                let size = data.domain_size(domain);
                assert!(members.iter().all(|&v| (v as usize) < size));
                assert!(weights.iter().all(|&w| w == 1.0));
                assert!(offsets.windows(2).all(|w| (1..=3).contains(&(w[1] - w[0]))));
            }
            ColumnData::Real(_) | ColumnData::Time(_) => {}
        }
    }
    let times = data.times().unwrap_or_default();
    let (first, last) = (times.iter().min(), times.iter().max());
    let span = last.zip(first).map_or(0, |(l, f)| l - f);
    assert!(span > 600 * 86_400 && span <= 730 * 86_400, "span {span}");
    let items = &data.domains["item"];
    assert_eq!(items.name(16), "i17");
    assert!(
        items.label(16).starts_with("Item 17 ("),
        "{}",
        items.label(16)
    );
    assert_eq!(data.domains["user"].name(0), "u1");
}

#[test]
fn small_and_empty_configs() {
    for (users, items, per_user) in [(0, 10, 5), (10, 0, 5), (5, 3, 50), (1, 1, 0)] {
        let data = generate(&SynthConfig {
            users,
            items,
            ratings_per_user: per_user,
            seed: 1,
        });
        data.validate().unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Global mean, user and item offsets (shrunk means of residuals from the
/// global mean) fitted on 80% of the rows beat the global mean on the rest.
#[test]
fn planted_biases_beat_the_global_mean() {
    let data = generate(&SynthConfig::default());
    let r = ratings(&data);
    let (_, users) = data.users().unwrap_or_default();
    let (_, items) = data.items().unwrap_or_default();
    let split = random_holdout(data.len(), 0.2, 11);

    let mean = split.train.iter().map(|&i| r[i]).sum::<f64>() / split.train.len() as f64;
    let offsets = |keys: &[u32]| {
        let mut sums: HashMap<u32, (f64, f64)> = HashMap::new();
        for &i in &split.train {
            let e = sums.entry(keys[i]).or_default();
            e.0 += r[i] - mean;
            e.1 += 1.0;
        }
        sums.into_iter()
            .map(|(k, (s, n))| (k, s / (n + 5.0)))
            .collect::<HashMap<u32, f64>>()
    };
    let (user_offset, item_offset) = (offsets(users), offsets(items));

    let rmse = |predict: &dyn Fn(usize) -> f64| {
        let sum: f64 = split
            .test
            .iter()
            .map(|&i| (r[i] - predict(i)).powi(2))
            .sum();
        (sum / split.test.len() as f64).sqrt()
    };
    let global = rmse(&|_| mean);
    let biased = rmse(&|i| {
        mean + user_offset.get(&users[i]).unwrap_or(&0.0)
            + item_offset.get(&items[i]).unwrap_or(&0.0)
    });
    assert!((1.0..1.2).contains(&global), "global-mean RMSE {global}");
    assert!(
        biased < 0.92 * global,
        "biases {biased} vs global mean {global}"
    );
}
