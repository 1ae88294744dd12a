//! Splits: every split is sorted, disjoint and covering, sized as promised,
//! deterministic for a seed; `--split` text parses or says what it takes.

use std::collections::BTreeMap;

use recc_runtime::data::{Column, ColumnData, Dataset, IdMap};
use recc_runtime::split::{
    kfold, leave_last_out, per_user_holdout, random_holdout, Amount, Split, SplitSpec,
};

/// Both lists strictly increasing, no row in both, every row of `0..n` in one.
fn check_partition(s: &Split, n: usize) {
    assert!(s.train.windows(2).all(|w| w[0] < w[1]), "train not sorted");
    assert!(s.test.windows(2).all(|w| w[0] < w[1]), "test not sorted");
    let mut seen = vec![0u8; n];
    for &r in s.train.iter().chain(&s.test) {
        assert!(r < n, "row {r} outside 0..{n}");
        seen[r] += 1;
    }
    assert!(
        seen.iter().all(|&c| c == 1),
        "rows not covered exactly once"
    );
}

/// Users with uneven row counts (1 to 12 rows), rows interleaved.
fn users() -> Vec<u32> {
    let mut users = Vec::new();
    for round in 0..12u32 {
        for u in 0..40u32 {
            if round < 1 + u % 12 {
                users.push(u);
            }
        }
    }
    users
}

fn by_user(users: &[u32], rows: &[usize]) -> BTreeMap<u32, Vec<usize>> {
    let mut m: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &r in rows {
        m.entry(users[r]).or_default().push(r);
    }
    m
}

#[test]
fn random_holdout_partitions_and_sizes() {
    for (n, f, test) in [(1000, 0.2, 200), (10, 0.25, 3), (7, 0.5, 4), (0, 0.2, 0)] {
        let s = random_holdout(n, f, 1);
        check_partition(&s, n);
        assert_eq!(s.test.len(), test, "n {n} fraction {f}");
    }
    assert_eq!(random_holdout(500, 0.3, 9), random_holdout(500, 0.3, 9));
    assert_ne!(random_holdout(500, 0.3, 9), random_holdout(500, 0.3, 10));
}

#[test]
fn kfold_tests_each_row_once() {
    for (n, k) in [(103, 5), (10, 10), (12, 2)] {
        let folds = kfold(n, k, 3);
        assert_eq!(folds.len(), k);
        let mut tested = vec![0; n];
        for f in &folds {
            check_partition(f, n);
            assert!(f.test.len() == n / k || f.test.len() == n / k + 1);
            for &r in &f.test {
                tested[r] += 1;
            }
        }
        assert!(tested.iter().all(|&c| c == 1));
    }
    assert_eq!(kfold(100, 5, 1), kfold(100, 5, 1));
    assert_ne!(kfold(100, 5, 1), kfold(100, 5, 2));
    assert!(kfold(10, 0, 1).is_empty());
}

#[test]
fn per_user_holdout_keeps_train_rows() {
    let users = users();
    let n = users.len();
    let s = per_user_holdout(&users, 0.25, 7);
    check_partition(&s, n);
    let all = by_user(&users, &(0..n).collect::<Vec<_>>());
    let train = by_user(&users, &s.train);
    let test = by_user(&users, &s.test);
    for (u, rows) in &all {
        let count = rows.len();
        let want = ((0.25 * count as f64).round() as usize).min(count - 1);
        assert!(
            train.get(u).is_some_and(|t| !t.is_empty()),
            "user {u} has no train rows"
        );
        assert_eq!(
            test.get(u).map_or(0, Vec::len),
            want,
            "user {u} of {count} rows"
        );
    }
    // A user with one row is all train, whatever the fraction; a user with
    // two keeps one.
    let small = per_user_holdout(&[0, 1, 1], 0.9, 1);
    assert!(small.train.contains(&0) && small.test.len() == 1 && small.test[0] != 0);
    assert_eq!(per_user_holdout(&users, 0.25, 7), s);
    assert_ne!(per_user_holdout(&users, 0.25, 8), s);
}

#[test]
fn leave_last_out_tests_the_latest() {
    let users = users();
    let n = users.len();
    // Times run against row order, with ties every third row.
    let times: Vec<i64> = (0..n).map(|r| 1_000 - (r as i64 / 3)).collect();
    for last in [Amount::Count(1), Amount::Count(3), Amount::Fraction(0.2)] {
        for times in [Some(&times[..]), None] {
            let s = leave_last_out(&users, times, last);
            check_partition(&s, n);
            let train = by_user(&users, &s.train);
            let test = by_user(&users, &s.test);
            let when = |r: usize| times.map_or(r as i64, |t| t[r]);
            for (u, rows) in by_user(&users, &(0..n).collect::<Vec<_>>()) {
                let count = rows.len();
                let want = match last {
                    Amount::Count(c) => c,
                    Amount::Fraction(f) => (f * count as f64).round() as usize,
                }
                .min(count - 1);
                let tr = train.get(&u).cloned().unwrap_or_default();
                let te = test.get(&u).cloned().unwrap_or_default();
                assert!(!tr.is_empty(), "user {u} has no train rows");
                assert_eq!(te.len(), want, "user {u} of {count} rows, {last:?}");
                let latest_train = tr.iter().map(|&r| when(r)).max();
                assert!(te.iter().all(|&r| Some(when(r)) >= latest_train));
            }
        }
    }
    // Equal times: the later row is the later one.
    let s = leave_last_out(&[0, 0, 0], Some(&[5, 5, 5]), Amount::Count(1));
    assert_eq!(s.test, vec![2]);
}

fn dataset(users: &[u32], with_user: bool) -> Dataset {
    let mut ids = IdMap::new();
    for &u in users {
        ids.intern(&format!("u{u}"));
    }
    let n = users.len();
    Dataset {
        name: "test data".to_string(),
        columns: vec![
            Column {
                name: "user".to_string(),
                data: ColumnData::Index {
                    domain: "user".to_string(),
                    values: users.to_vec(),
                },
            },
            Column {
                name: "when".to_string(),
                data: ColumnData::Time((0..n as i64).collect()),
            },
        ],
        domains: [("user".to_string(), ids)].into_iter().collect(),
        user: with_user.then(|| "user".to_string()),
        time: Some("when".to_string()),
        ..Dataset::default()
    }
}

#[test]
fn spec_parses_every_form() {
    let cases = [
        ("given", SplitSpec::Given),
        ("random", SplitSpec::Random(0.2)),
        ("random:0.1", SplitSpec::Random(0.1)),
        ("kfold", SplitSpec::KFold(5)),
        ("kfold:10", SplitSpec::KFold(10)),
        ("user", SplitSpec::PerUser(0.2)),
        ("user:0.3", SplitSpec::PerUser(0.3)),
        ("last", SplitSpec::LastOut(Amount::Count(1))),
        ("last:2", SplitSpec::LastOut(Amount::Count(2))),
        ("last:20%", SplitSpec::LastOut(Amount::Fraction(0.2))),
        ("none", SplitSpec::None),
    ];
    for (text, spec) in cases {
        assert_eq!(text.parse::<SplitSpec>(), Ok(spec), "{text}");
        // Display writes text that parses back to the same spec.
        assert_eq!(spec.to_string().parse::<SplitSpec>(), Ok(spec), "{spec}");
    }
}

#[test]
fn spec_parse_errors_list_the_forms() {
    for (text, why) in [
        ("shuffle", "unknown split `shuffle`"),
        ("random:1.5", "between 0 and 1"),
        ("random:0", "between 0 and 1"),
        ("random:x", "`x` is not a fraction"),
        ("kfold:1", "at least 2 folds"),
        ("kfold:2.5", "not a fold count"),
        ("user:-0.1", "between 0 and 1"),
        ("last:0", "would test nothing"),
        ("last:100%", "between 0 and 1"),
        ("last:many", "neither a row count nor a percentage"),
        ("none:1", "takes no argument"),
    ] {
        let Err(e) = text.parse::<SplitSpec>() else {
            panic!("`{text}` parsed");
        };
        let m = e.to_string();
        assert!(m.contains(why), "`{text}`: {m}");
        assert!(
            m.contains("kfold[:K]") && m.contains("last:P%"),
            "`{text}`: {m}"
        );
    }
}

#[test]
fn spec_applies_to_a_dataset() {
    let users = users();
    let n = users.len();
    let data = dataset(&users, true);
    let one = |spec: SplitSpec| {
        let splits = spec.apply(&data, 4).unwrap_or_default();
        assert_eq!(splits.len(), 1, "{spec}");
        check_partition(&splits[0], n);
        splits[0].clone()
    };
    assert_eq!(one(SplitSpec::Random(0.2)), random_holdout(n, 0.2, 4));
    assert_eq!(
        one(SplitSpec::PerUser(0.2)),
        per_user_holdout(&users, 0.2, 4)
    );
    let times: Vec<i64> = (0..n as i64).collect();
    assert_eq!(
        one(SplitSpec::LastOut(Amount::Count(1))),
        leave_last_out(&users, Some(&times), Amount::Count(1))
    );
    let none = one(SplitSpec::None);
    assert!(none.test.is_empty() && none.train.len() == n);
    assert_eq!(
        SplitSpec::KFold(4).apply(&data, 4).ok(),
        Some(kfold(n, 4, 4))
    );

    let error = |spec: SplitSpec, data: &Dataset| match spec.apply(data, 4) {
        Ok(_) => panic!("{spec} applied"),
        Err(e) => e.to_string(),
    };
    assert!(error(SplitSpec::Given, &data).contains("data's own files"));
    assert!(error(SplitSpec::KFold(n + 1), &data).contains("need at least"));
    assert!(error(SplitSpec::KFold(1), &data).contains("at least 2 folds"));
    assert!(error(SplitSpec::Random(1.0), &data).contains("between 0 and 1"));
    assert!(error(SplitSpec::LastOut(Amount::Fraction(0.0)), &data).contains("between 0 and 1"));
    let anonymous = dataset(&users, false);
    assert!(error(SplitSpec::PerUser(0.2), &anonymous).contains("needs a user column"));
    assert!(error(SplitSpec::LastOut(Amount::Count(1)), &anonymous).contains("needs a user column"));
    // Splits that need no users still work without them.
    assert!(SplitSpec::Random(0.2).apply(&anonymous, 1).is_ok());
}
