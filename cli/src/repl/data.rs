//! The commands that need data or a trained model: `:data`, `:split`,
//! `:train`, `:eval`, `:cv`, `:predict`, `:recommend`, `:similar`, `:save`,
//! `:open`, `:export`. Each parses its flags as the matching `recc`
//! command does and calls the same [`experiment`] function; what differs is
//! that the data stays loaded between commands, and the trained model with it.

use super::{runs, Answer, Out, Repl};
use crate::progress::{watched, Progress, StepBar};
use crate::run::{settings_line, DataArgs, FitArgs};
use clap::Parser;
use recc_compiler::model::Model;
use recc_runtime::data::{ColumnData, Dataset};
use recc_runtime::experiment::{
    self, format_metrics, printable, DataRequest, ExperimentError, Fitted, Measured, Prepared,
    Source, TrainRequest,
};
use recc_runtime::split::Split;
use recc_runtime::train::{Observer, OnInterrupt, TrainConfig};
use std::path::PathBuf;

/// Data loaded once and split, and what it was split for.
pub struct Loaded {
    pub prepared: Prepared,
    split_key: SplitKey,
}

/// What decides a split: as asked (or the default for a ranking model or
/// not), and the seed it was drawn with.
#[derive(Clone, Debug, PartialEq)]
struct SplitKey {
    asked: Option<String>,
    ranking: bool,
    seed: u64,
}

impl SplitKey {
    fn new(request: &DataRequest, model: Option<&Model>, seed: u64) -> SplitKey {
        SplitKey {
            asked: request.split.clone(),
            ranking: model.is_some_and(|m| !m.samplers.is_empty()),
            seed,
        }
    }
}

/// The trained model of the session, and the split it was measured on.
pub struct Current {
    pub fitted: Fitted,
    pub split: Split,
    /// Its number in `:runs`; none for a model file opened.
    pub run: Option<usize>,
}

/// The seed a model's data is split with when nothing else says: its `fit`
/// seed, as `recc train` splits.
fn model_seed(model: Option<&Model>) -> u64 {
    model.map_or_else(
        || recc_compiler::model::FitConfig::default().seed,
        |m| m.fit.seed,
    )
}

fn message(e: ExperimentError) -> String {
    e.message
}

/// Parse a command's words with its clap definition; `--help` is an answer,
/// not a failure.
fn parse<T: Parser>(out: &mut Out, words: &[String]) -> Result<Option<T>, String> {
    match T::try_parse_from(words) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            out.print(&e.render().to_string());
            Ok(None)
        }
        Err(e) => Err(e.render().to_string()),
    }
}

/// `:data SPEC [data flags]`
#[derive(Parser)]
#[command(name = ":data", about = "Load data once and keep it")]
struct DataCommand {
    /// builtin, ml-100k:DIR, lastfm:DIR, amazon:FILE, csv:FILE, tree:BxD or a path
    spec: String,
    #[command(flatten)]
    args: DataArgs,
}

/// `:split SPEC`
#[derive(Parser)]
#[command(name = ":split", about = "How the loaded data is split")]
struct SplitCommand {
    /// given[:u1..u5|ua|ub], random[:F], kfold[:K], user[:F], last[:N|P%], none
    spec: String,
}

/// `:train [fit flags]`, `:cv [fit flags]`
#[derive(Parser)]
#[command(
    about = "Train on the loaded data (the model's `fit`, overridden by flags)",
    allow_negative_numbers = true
)]
pub struct TrainCommand {
    #[command(flatten)]
    fit: FitArgs,
    /// Cut-off of the @k ranking metrics
    #[arg(short = 'k', long, default_value_t = 10, value_parser = crate::run::at_least_one)]
    k: usize,
}

/// `:eval [-k N]`
#[derive(Parser)]
#[command(
    name = ":eval",
    about = "Measure the trained model on its test rows again"
)]
struct EvalCommand {
    /// Cut-off of the @k ranking metrics
    #[arg(short = 'k', long, default_value_t = 10, value_parser = crate::run::at_least_one)]
    k: usize,
}

/// `:predict USER ITEM...`
#[derive(Parser)]
#[command(
    name = ":predict",
    about = "Score (user, item) pairs with the trained model"
)]
struct PredictCommand {
    /// A raw user id or label
    user: String,
    /// Raw item ids or labels
    #[arg(required = true)]
    items: Vec<String>,
    /// Score ids the model does not know as unknown ones (the mean of
    /// those learned) instead of refusing them
    #[arg(long)]
    allow_unknown: bool,
}

/// `:recommend USER [-k N] [--include-seen]`
#[derive(Parser)]
#[command(
    name = ":recommend",
    about = "The best items for a user, leaving out what they have"
)]
struct RecommendCommand {
    /// A raw user id or label
    user: String,
    /// How many items to list
    #[arg(short = 'k', long, default_value_t = 10, value_parser = crate::run::at_least_one)]
    k: usize,
    /// Rank for a user the model does not know as for an unknown one (the
    /// mean of those learned) instead of refusing
    #[arg(long)]
    allow_unknown: bool,
    /// Also list the items the user already has
    #[arg(long)]
    include_seen: bool,
}

/// `:similar ITEM [-k N] [--table T] [--domain D]`
#[derive(Parser)]
#[command(
    name = ":similar",
    about = "The nearest neighbours of an item in the trained embedding"
)]
struct SimilarCommand {
    /// The raw id or the label (a film's title) of the item
    item: String,
    /// How many neighbours to list
    #[arg(short = 'k', long, default_value_t = 10, value_parser = crate::run::at_least_one)]
    k: usize,
    /// The embedding table to compare in [default: the widest over the domain]
    #[arg(long)]
    table: Option<String>,
    /// The domain of the item [default: item, or the model's index input]
    #[arg(long)]
    domain: Option<String>,
}

/// `:save FILE.recm`, `:open FILE.recm`
#[derive(Parser)]
struct FileCommand {
    /// The model file
    file: PathBuf,
}

/// `:export DIR [--format csv|npy]`
#[derive(Parser)]
#[command(name = ":export", about = "Write the trained tables as files")]
struct ExportCommand {
    /// The directory to write into
    dir: PathBuf,
    /// csv or npy
    #[arg(long, default_value = "csv")]
    format: String,
}

/// The clap help of a data command, for `:help NAME`.
pub fn help(name: &str) -> Option<String> {
    use clap::CommandFactory;
    let mut command = match name {
        "data" => DataCommand::command(),
        "split" => SplitCommand::command(),
        "train" => TrainCommand::command().name(":train"),
        "cv" => TrainCommand::command()
            .name(":cv")
            .about("Cross-validate: train and test on every fold, then mean ± std"),
        "eval" => EvalCommand::command(),
        "predict" => PredictCommand::command(),
        "recommend" => RecommendCommand::command(),
        "similar" => SimilarCommand::command(),
        "save" => FileCommand::command()
            .name(":save")
            .about("Write the trained model"),
        "open" => FileCommand::command()
            .name(":open")
            .about("Open a trained model: its source, data and parameters"),
        "export" => ExportCommand::command(),
        _ => return None,
    };
    Some(command.render_help().to_string())
}

/// `user, item, rating:real, ts:time, genres:bag(genre)`: the columns as
/// `--columns` would name them.
fn describe_columns(data: &Dataset) -> String {
    data.columns
        .iter()
        .map(|c| match &c.data {
            ColumnData::Index { domain, .. } if *domain == c.name => c.name.clone(),
            ColumnData::Index { domain, .. } => format!("{}:{domain}", c.name),
            ColumnData::Real(_) => format!("{}:real", c.name),
            ColumnData::Time(_) => format!("{}:time", c.name),
            ColumnData::Bag { domain, .. } => format!("{}:bag({domain})", c.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn split_line(prepared: &Prepared) -> String {
    match prepared.splits.first() {
        Some((name, s)) => format!(
            "split {name}: {} train / {} test rows",
            s.train.len(),
            s.test.len()
        ),
        None => "the split produced nothing to train on".into(),
    }
}

/// A cross-validation's progress: each fold's epochs, then its line.
struct CvWatch<'a> {
    out: &'a mut Out,
    interactive: bool,
    watched: &'static str,
}

impl experiment::FoldObserver for CvWatch<'_> {
    fn fold_started(&mut self, name: &str, number: usize, folds: usize) -> Box<dyn Observer + '_> {
        let out = &mut *self.out;
        Box::new(
            Progress::through(|line| out.print(line), self.interactive, name, self.watched)
                .fold_of(number, folds),
        )
    }

    fn fold_finished(&mut self, result: &experiment::FoldResult) {
        self.out.print(&format!(
            "{}: {}",
            result.name,
            format_metrics(&result.metrics)
        ));
    }
}

impl Repl {
    /// The commands that need data or a trained model.
    pub(super) fn data_command(&mut self, words: &[String]) -> Answer {
        let name = words.first().map_or("", String::as_str);
        let mut argv = vec![format!(":{name}")];
        argv.extend(words[1..].iter().cloned());
        match name {
            "data" => self.load_data(&argv),
            "split" => self.split(&argv),
            "train" => self.train(&argv),
            "cv" => self.cross_validate(&argv),
            "eval" => self.eval(&argv),
            "predict" => self.predict(&argv),
            "recommend" => self.recommend(&argv),
            "similar" => self.similar(&argv),
            "save" => self.save(&argv),
            "open" => self.open(&argv),
            "export" => self.export(&argv),
            other => Err(super::commands::unknown(&format!(":{other}"))),
        }
    }

    /// Load the data for `self.request`, split for `model` with `seed`;
    /// data already loaded from the same source is split again in memory.
    fn prepare(&mut self, model: Option<&Model>, seed: u64) -> Answer {
        let same_data = self.loaded.as_ref().filter(|l| {
            DataRequest {
                split: None,
                ..l.prepared.request.clone()
            } == DataRequest {
                split: None,
                ..self.request.clone()
            }
        });
        let prepared = match same_data {
            Some(l) => experiment::resplit(
                &l.prepared,
                self.request.split.as_deref(),
                model,
                seed,
                false,
            ),
            None => experiment::prepare(&self.request, model, seed, false),
        }
        .map_err(message)?;
        for note in &prepared.notes {
            self.out.print(&format!("note: {note}"));
        }
        self.loaded = Some(Loaded {
            prepared,
            split_key: SplitKey::new(&self.request, model, seed),
        });
        Ok(())
    }

    fn load_data(&mut self, argv: &[String]) -> Answer {
        let Some(c) = parse::<DataCommand>(&mut self.out, argv)? else {
            return Ok(());
        };
        let mut request = c.args.request();
        request.data = c.spec;
        // A split set with :split stays, unless this one names its own.
        if request.split.is_none() {
            request.split = self.request.split.clone();
        }
        let previous = std::mem::replace(&mut self.request, request);
        // :data reads the data afresh, even from where it was read before.
        let kept = self.loaded.take();
        let model = self.buffer.model().cloned();
        if let Err(e) = self.prepare(model.as_ref(), model_seed(model.as_ref())) {
            self.request = previous;
            self.loaded = kept;
            return Err(e);
        }
        if self.current.take().is_some() {
            self.out
                .print("note: the trained model was bound to the previous data; :train again");
        }
        let Some(loaded) = &self.loaded else {
            return Ok(());
        };
        let data = &loaded.prepared.data;
        let lines = format!(
            "data: {}\n  columns {}\n  {}",
            experiment::describe_data(data),
            describe_columns(data),
            split_line(&loaded.prepared)
        );
        self.out.print(&lines);
        Ok(())
    }

    fn split(&mut self, argv: &[String]) -> Answer {
        let Some(c) = parse::<SplitCommand>(&mut self.out, argv)? else {
            return Ok(());
        };
        // A given fold is checked when its files are read; any other split
        // can be checked now, before there is data to apply it to.
        if !c.spec.starts_with("given") {
            c.spec
                .parse::<recc_runtime::split::SplitSpec>()
                .map_err(|e: recc_runtime::split::SplitSpecError| e.to_string())?;
        }
        let previous = self.request.split.replace(c.spec.clone());
        if self.loaded.is_none() {
            self.out.print(&format!(
                "split {} is kept for the data :data loads",
                c.spec
            ));
            return Ok(());
        }
        let model = self.buffer.model().cloned();
        if let Err(e) = self.prepare(model.as_ref(), model_seed(model.as_ref())) {
            self.request.split = previous;
            return Err(e);
        }
        if let Some(loaded) = &self.loaded {
            let line = split_line(&loaded.prepared);
            self.out.print(&line);
        }
        Ok(())
    }

    /// The current model as the API takes it; it must be complete.
    fn source(&self) -> Result<Source, String> {
        if self.buffer.model().is_none() {
            return Err(super::incomplete(&self.buffer));
        }
        experiment::compile_source(&self.buffer.name, self.buffer.text()).map_err(message)
    }

    /// Make sure data is loaded and split for `model` with `seed`; with no
    /// data loaded, the built-in data, as `recc train` defaults to.
    fn ensure_split(&mut self, model: &Model, seed: u64) -> Answer {
        if self.loaded.is_none() {
            self.out
                .print("no data loaded: using builtin (as :data builtin)");
        }
        let key = SplitKey::new(&self.request, Some(model), seed);
        let fresh = self.loaded.as_ref().is_some_and(|l| l.split_key == key);
        if !fresh {
            self.prepare(Some(model), seed)?;
        }
        Ok(())
    }

    fn train_setup(
        &mut self,
        argv: &[String],
    ) -> Result<Option<(Source, TrainConfig, usize)>, String> {
        let Some(c) = parse::<TrainCommand>(&mut self.out, argv)? else {
            return Ok(None);
        };
        let source = self.source()?;
        let (mut config, notes) =
            experiment::train_config(&source.model, &c.fit.overrides()).map_err(message)?;
        experiment::check_solver(&source, &config).map_err(message)?;
        // A run stopped with Ctrl-C keeps a whole number of epochs.
        config.on_interrupt = OnInterrupt::KeepLastEpoch;
        for note in notes {
            self.out.print(&format!("note: {note}"));
        }
        Ok(Some((source, config, c.k)))
    }

    fn train(&mut self, argv: &[String]) -> Answer {
        let Some((source, config, k)) = self.train_setup(argv)? else {
            return Ok(());
        };
        self.ensure_split(&source.model, config.seed)?;
        let Some(loaded) = &self.loaded else {
            return Err("no data loaded".into());
        };
        let Some((split_name, split)) = loaded.prepared.splits.first() else {
            return Err("the split produced nothing to train on".into());
        };
        self.out.print(&format!(
            "training {} on {}: {} train / {} test rows ({split_name})\n{}",
            source.model.name,
            experiment::describe_data(&loaded.prepared.data),
            split.train.len(),
            split.test.len(),
            settings_line(&config)
        ));
        let req = TrainRequest {
            source: &source,
            config: &config,
            request: &self.request,
            k,
            baseline: false,
        };
        let outcome = {
            let out = &mut self.out;
            let mut watch = Progress::through(
                |line| out.print(line),
                self.interactive,
                "",
                watched(&config),
            );
            experiment::train_split(&req, &loaded.prepared.data, split, &mut watch)
        }
        .map_err(message)?;
        let kept = outcome
            .trained
            .interrupted
            .map(|stop| experiment::describe_interruption(stop, outcome.trained.best_epoch));
        let best = outcome.trained.best_epoch;
        let seconds = outcome.seconds;
        let mut metrics = outcome.metrics.clone();
        let split = split.clone();
        let split_name = split_name.clone();
        let mut fitted = Fitted::from_outcome(&req, &loaded.prepared, outcome);
        // A stopped run keeps whole epochs, so it is measured like any other.
        if kept.is_some() && !split.test.is_empty() {
            metrics = experiment::evaluate(&fitted, &loaded.prepared.data, &split, k)
                .map_err(message)?
                .metrics();
            fitted.metrics = metrics.clone();
        }
        let id = self.runs.len() + 1;
        let mut settings = config.describe();
        settings.insert("data".into(), loaded.prepared.spec.to_string());
        settings.insert("split".into(), split_name);
        self.runs.push(runs::Run {
            id,
            model: source.model.name.clone(),
            source: source.text.clone(),
            settings,
            metrics: metrics.clone(),
            seconds,
            note: kept.as_ref().map(|k| format!("interrupted: kept {k}")),
        });
        if let Some(e) = best {
            self.out.print(&format!("early stopping kept epoch {e}"));
        }
        let mut summary = match &kept {
            Some(k) => format!("interrupted, kept {k}; "),
            None => String::new(),
        };
        if metrics.is_empty() {
            summary.push_str("no test rows: nothing measured");
        } else {
            summary.push_str(&format!("test {}", format_metrics(&metrics)));
        }
        self.out.print(&format!(
            "run {id}: {summary}  ({} of training)",
            runs::format_seconds(seconds)
        ));
        self.current = Some(Current {
            fitted,
            split,
            run: Some(id),
        });
        Ok(())
    }

    fn cross_validate(&mut self, argv: &[String]) -> Answer {
        let Some((source, config, k)) = self.train_setup(argv)? else {
            return Ok(());
        };
        let request = self.request.for_cross_validation();
        // The folds are made from the data in memory (given folds are read
        // from their files); the kept split stays as it is for :train.
        self.ensure_split(&source.model, config.seed)?;
        let Some(loaded) = &self.loaded else {
            return Err("no data loaded".into());
        };
        let prepared = experiment::resplit(
            &loaded.prepared,
            request.split.as_deref(),
            Some(&source.model),
            config.seed,
            true,
        )
        .map_err(message)?;
        self.out.print(&format!(
            "cross-validating {} on {}: {} folds ({})\n{}",
            source.model.name,
            experiment::describe_data(&prepared.data),
            prepared.splits.len(),
            prepared.split_text,
            settings_line(&config)
        ));
        let req = TrainRequest {
            source: &source,
            config: &config,
            request: &request,
            k,
            baseline: false,
        };
        let report = {
            let mut watch = CvWatch {
                out: &mut self.out,
                interactive: self.interactive,
                watched: watched(&config),
            };
            experiment::cross_validate(&req, &prepared, &mut watch)
        }
        .map_err(message)?;
        let line = experiment::format_mean_std(&report.mean, &report.std);
        match &report.interrupted {
            Some(fold) => self.out.print(&format!(
                "interrupted during {fold}; mean over the {} folds before it: {line}",
                report.folds.len()
            )),
            None => self.out.print(&format!(
                "mean over {} folds: {line}  ({})",
                report.folds.len(),
                runs::format_seconds(report.seconds)
            )),
        }
        Ok(())
    }

    /// The trained model, or why there is none.
    fn current(&self) -> Result<&Current, String> {
        self.current
            .as_ref()
            .ok_or_else(|| "no trained model: :train one, or :open FILE.recm".to_string())
    }

    fn data(&self) -> Result<&Dataset, String> {
        self.loaded
            .as_ref()
            .map(|l| &l.prepared.data)
            .ok_or_else(|| "no data loaded: :data SPEC".to_string())
    }

    fn eval(&mut self, argv: &[String]) -> Answer {
        let Some(c) = parse::<EvalCommand>(&mut self.out, argv)? else {
            return Ok(());
        };
        let current = self.current()?;
        let bar = StepBar::on_stderr(!self.interactive, "");
        let evaluation =
            experiment::evaluate_observed(&current.fitted, self.data()?, &current.split, c.k, &bar)
                .map_err(message)?;
        let mut text = match &evaluation.measured {
            Measured::Metrics(m) => format!("{} rows: {}", evaluation.rows, format_metrics(m)),
            Measured::Ranking(m) => recc_runtime::metrics::format_table(m),
            Measured::Nothing => String::new(),
        };
        if let Some(h) = &evaluation.hierarchy {
            text.push('\n');
            text.push_str(&experiment::format_hierarchy(h));
        }
        self.out.print(text.trim_start());
        Ok(())
    }

    fn predict(&mut self, argv: &[String]) -> Answer {
        let Some(c) = parse::<PredictCommand>(&mut self.out, argv)? else {
            return Ok(());
        };
        let current = self.current()?;
        let scores = experiment::predict_pairs(
            &current.fitted,
            self.data()?,
            std::slice::from_ref(&c.user),
            &c.items,
            c.allow_unknown,
        )
        .map_err(message)?;
        let mut text = String::new();
        for s in &scores {
            for note in &s.notes {
                text.push_str(&format!("note: {note}\n"));
            }
        }
        text.push_str("user\titem\tscore\n");
        for s in &scores {
            text.push_str(&format!(
                "{}\t{}\t{:.4}\n",
                printable(&s.user),
                printable(&s.item),
                s.score
            ));
        }
        self.out.print(&text);
        Ok(())
    }

    fn recommend(&mut self, argv: &[String]) -> Answer {
        let Some(c) = parse::<RecommendCommand>(&mut self.out, argv)? else {
            return Ok(());
        };
        let current = self.current()?;
        let recs = experiment::recommend(
            &current.fitted,
            self.data()?,
            &c.user,
            c.k,
            c.allow_unknown,
            if c.include_seen {
                experiment::SeenItems::Include
            } else {
                experiment::SeenItems::Exclude
            },
        )
        .map_err(message)?;
        let mut text = String::new();
        for note in &recs.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        text.push_str(&format!(
            "top {} for {} {}:\n",
            recs.items.len(),
            recs.domain,
            printable(&recs.user)
        ));
        for (rank, r) in recs.items.iter().enumerate() {
            let (label, id) = (printable(&r.label), printable(&r.item));
            if label == id {
                text.push_str(&format!("{:>3}. {id}  ({:.3})\n", rank + 1, r.score));
            } else {
                text.push_str(&format!(
                    "{:>3}. {label}  [{id}]  ({:.3})\n",
                    rank + 1,
                    r.score
                ));
            }
        }
        self.out.print(&text);
        Ok(())
    }

    fn similar(&mut self, argv: &[String]) -> Answer {
        let Some(c) = parse::<SimilarCommand>(&mut self.out, argv)? else {
            return Ok(());
        };
        let current = self.current()?;
        let near = experiment::similar(
            &current.fitted,
            &c.item,
            c.table.as_deref(),
            c.domain.as_deref(),
            c.k,
        )
        .map_err(message)?;
        let mut text = format!(
            "nearest to {} by `{}`:\n",
            crate::run::label_and_id(&near.label, &near.id),
            near.table
        );
        for (rank, n) in near.neighbours.iter().enumerate() {
            text.push_str(&format!(
                "{:>3}. {}  ({:.3})\n",
                rank + 1,
                crate::run::label_and_id(&n.label, &n.id),
                n.similarity
            ));
        }
        self.out.print(&text);
        Ok(())
    }

    fn save(&mut self, argv: &[String]) -> Answer {
        let Some(c) = parse::<FileCommand>(&mut self.out, argv)? else {
            return Ok(());
        };
        let current = self.current()?;
        current.fitted.save(&c.file).map_err(message)?;
        let line = match current.run {
            Some(run) => format!(
                "wrote {} (run {run}, model {})",
                c.file.display(),
                current.fitted.source.model.name
            ),
            None => format!(
                "wrote {} (model {})",
                c.file.display(),
                current.fitted.source.model.name
            ),
        };
        self.out.print(&line);
        Ok(())
    }

    fn open(&mut self, argv: &[String]) -> Answer {
        let Some(c) = parse::<FileCommand>(&mut self.out, argv)? else {
            return Ok(());
        };
        let reopened = experiment::reopen(&c.file, None).map_err(message)?;
        let source = &reopened.fitted.source;
        self.buffer.replace_all(&source.name, &source.text)?;
        self.buffer.file = None;
        self.out.print(&source.warnings);
        for note in &reopened.prepared.notes {
            self.out.print(&format!("note: {note}"));
        }
        let model = self.buffer.model().cloned();
        let seed = reopened.fitted.seed;
        let lines = format!(
            "opened {}: model {} trained on {}\n  {}",
            c.file.display(),
            source.model.name,
            experiment::describe_data(&reopened.prepared.data),
            split_line(&reopened.prepared)
        );
        self.request = reopened.request;
        self.loaded = Some(Loaded {
            split_key: SplitKey::new(&self.request, model.as_ref(), seed),
            prepared: reopened.prepared,
        });
        let metrics = format_metrics(&reopened.fitted.metrics);
        self.current = Some(Current {
            fitted: reopened.fitted,
            split: reopened.split,
            run: None,
        });
        self.out.print(&lines);
        if !metrics.is_empty() {
            self.out.print(&format!("  test: {metrics} (as saved)"));
        }
        Ok(())
    }

    fn export(&mut self, argv: &[String]) -> Answer {
        let Some(c) = parse::<ExportCommand>(&mut self.out, argv)? else {
            return Ok(());
        };
        let format = c
            .format
            .parse::<recc_runtime::export::ExportFormat>()
            .map_err(|e| e.to_string())?;
        let current = self.current()?;
        let written =
            experiment::export(&current.fitted.saved_model(), &c.dir, format).map_err(message)?;
        let text: Vec<String> = written
            .iter()
            .map(|p| printable(&p.display().to_string()).into_owned())
            .collect();
        self.out.print(&text.join("\n"));
        Ok(())
    }
}
