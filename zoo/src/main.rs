//! `recc-zoo`: trains every model family in `models/` on the shared
//! datasets, with the defaults a user gets, and writes `docs/RESULTS.md`.
//!
//! It drives the `recc` binary exactly as a user would (`--json` output),
//! runs LightFM beside it where the issue asks for a peer, and checks each
//! measured figure against its target. Nothing here is tuned: every run
//! uses the model file's own `fit` block and a stated seed.
//!
//! ```text
//! bench/results.sh                      # builds, then runs this
//! recc-zoo --data ../shared/data --out docs/RESULTS.md [--only explicit,lastfm]
//! ```

mod report;
mod runs;
mod speed;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::report::{Page, Report};
use crate::runs::Zoo;

#[derive(Parser)]
#[command(name = "recc-zoo", version, about)]
struct Args {
    /// The folder with `ml-100k/`, `lastfm-2k/` and `amazon-musical-instruments/`.
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Which page to write: the accuracy results or the speed page.
    #[arg(long, value_enum, default_value = "results")]
    page: Page,
    /// Where to write the page [default: docs/RESULTS.md or docs/SPEED.md].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `recc` binary [default: beside this program].
    #[arg(long)]
    recc: Option<PathBuf>,
    /// A Python with LightFM, for the peer columns [default: $PYTHON, else python3].
    #[arg(long)]
    python: Option<String>,
    /// Only these sections (comma-separated). Results: explicit, temporal,
    /// implicit, lastfm, sequence, item2vec, text, poincare. Speed: models,
    /// peers, ceiling, work.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let zoo = match Zoo::new(args.recc, args.data, args.python) {
        Ok(z) => z,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let sections: &[(&str, runs::SectionFn)] = match args.page {
        Page::Results => runs::SECTIONS,
        Page::Speed => speed::SECTIONS,
    };
    if let Some(unknown) = args
        .only
        .iter()
        .find(|o| !sections.iter().any(|(name, _)| name == o))
    {
        let names: Vec<&str> = sections.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "error: the {} page has no section `{unknown}` (it has: {})",
            args.page.title().to_lowercase(),
            names.join(", ")
        );
        return ExitCode::from(2);
    }
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(args.page.default_out()));
    let started = Instant::now();
    let mut report = Report::default();
    for (name, section) in sections {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("== {name}");
        if let Err(e) = section(&zoo, &mut report) {
            eprintln!("error in section {name}: {e}");
            report.failed(name, &e.to_string());
        }
    }
    let setup = match args.page {
        Page::Results => zoo.describe(),
        Page::Speed => zoo.describe_speed(),
    };
    let page = report.render(args.page, &setup, started.elapsed().as_secs_f64());
    if let Err(e) = report::write_atomically(&out, &page) {
        eprintln!("error: cannot write {e}");
        return ExitCode::from(1);
    }
    eprintln!(
        "wrote {} ({} of {} figures met, {:.0} s)",
        out.display(),
        report.met(),
        report.checked(),
        started.elapsed().as_secs_f64()
    );
    if report.has_failures() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
