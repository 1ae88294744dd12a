//! The native backend's side of the runtime: f32 parameter storage, the
//! argument block a kernel reads, and running a kernel over columns.
//!
//! Input: a compiled [`Kernel`], [`Columns`] of examples and
//! [`NativeParams`]. Output: the parameters updated in place (a step kernel)
//! or one score per example (a predict kernel). The evaluator's f64
//! [`Params`] are converted in at the start of training and out at the end.
//!
//! **Invariant: nothing reaches a kernel unchecked.** A kernel does no
//! bounds checks of its own, so [`Runner::run`] calls [`validate`] on every
//! block before the kernel sees it: every index column and bag member is
//! inside its domain, bag offsets are monotone and inside their member
//! column, every column holds at least the block's examples, and every
//! table (values and the optimiser state the kernel's update reads) holds
//! at least `rows × lanes` of its domain's size. A bug in a reader, the
//! binder or a model file then becomes an [`InputError`], never an access
//! outside a buffer. The checks are linear in the block, a few percent of
//! the kernel's own work. A trainer's examples are checked once, when laid
//! out ([`LaidOut`]); each call over them then checks only its order (every
//! visit names an example laid out), its drawn columns and the tables.

use crate::bind::{Columns, SlotColumn};
use crate::init::{initialise_each, zeroed, InitError};
use recc_compiler::interp::Params;
use recc_compiler::ir::{Graph, SlotKind};
use recc_compiler::model::Optimizer;
use recc_jit::layout::{per_visit, TABLE_WORDS};
use recc_jit::{Kernel, KernelKind};

/// Parameters and optimiser state in f32, row-major, one `Vec` per table.
#[derive(Clone, Debug)]
pub struct NativeParams {
    pub tables: Vec<Vec<f32>>,
    /// Adagrad's squared-gradient sums, or Adam's first moments.
    pub first: Vec<Vec<f32>>,
    /// Adam's second moments.
    pub second: Vec<Vec<f32>>,
    /// Adam: updates each row has had.
    pub steps: Vec<Vec<u32>>,
    /// Rows a step has updated (1) or not (0).
    pub touched: Vec<Vec<u8>>,
    /// Lanes per row, by table.
    pub lanes: Vec<usize>,
    pub domain_sizes: Vec<usize>,
}

impl NativeParams {
    pub fn new(params: &Params, optimizer: Optimizer) -> NativeParams {
        let tables: Vec<Vec<f32>> = params
            .tables
            .iter()
            .map(|t| t.iter().map(|&v| v as f32).collect())
            .collect();
        let sized = |on: bool| -> Vec<Vec<f32>> {
            tables
                .iter()
                .map(|t| if on { vec![0.0; t.len()] } else { Vec::new() })
                .collect()
        };
        let (first, second) = match optimizer {
            Optimizer::Sgd => (sized(false), sized(false)),
            Optimizer::Adagrad => (sized(true), sized(false)),
            Optimizer::Adam { .. } => (sized(true), sized(true)),
        };
        let steps = params
            .tables
            .iter()
            .map(|t| match optimizer {
                Optimizer::Adam { .. } => vec![0; t.nrows()],
                _ => Vec::new(),
            })
            .collect();
        NativeParams {
            tables,
            first,
            second,
            steps,
            touched: params.tables.iter().map(|t| vec![0; t.nrows()]).collect(),
            lanes: params.tables.iter().map(|t| t.ncols()).collect(),
            domain_sizes: params.domain_sizes.clone(),
        }
    }

    /// Fresh parameters, drawn exactly as
    /// [`initialise`](crate::init::initialise) draws them, with
    /// zeroed optimiser state. Tables are converted to f32 one at a time,
    /// and every buffer is reserved fallibly: memory that cannot be had is
    /// an error naming the table, not an abort.
    pub fn initialise(
        g: &Graph,
        domain_sizes: &[usize],
        seed: u64,
        optimizer: Optimizer,
    ) -> Result<NativeParams, InitError> {
        let n = g.tables.len();
        let mut out = NativeParams {
            tables: Vec::with_capacity(n),
            first: Vec::with_capacity(n),
            second: Vec::with_capacity(n),
            steps: Vec::with_capacity(n),
            touched: Vec::with_capacity(n),
            lanes: Vec::with_capacity(n),
            domain_sizes: domain_sizes.to_vec(),
        };
        let (first, second, steps) = match optimizer {
            Optimizer::Sgd => (false, false, false),
            Optimizer::Adagrad => (true, false, false),
            Optimizer::Adam { .. } => (true, true, true),
        };
        initialise_each(g, domain_sizes, seed, |k, values| {
            let name = &g.tables[k].name;
            let (rows, lanes) = values.dim();
            let mut table: Vec<f32> = zeroed(0, name)?;
            table
                .try_reserve_exact(values.len())
                .map_err(|_| InitError::Memory(format!("cannot allocate `{name}` in f32")))?;
            table.extend(values.iter().map(|&v| v as f32));
            drop(values);
            out.tables.push(table);
            out.first
                .push(zeroed(if first { rows * lanes } else { 0 }, name)?);
            out.second
                .push(zeroed(if second { rows * lanes } else { 0 }, name)?);
            out.steps.push(zeroed(if steps { rows } else { 0 }, name)?);
            out.touched.push(zeroed(rows, name)?);
            out.lanes.push(lanes);
            Ok(())
        })?;
        Ok(out)
    }

    /// The parameters as the evaluator's f64 tables, consuming these: the
    /// optimiser state goes first, then each f32 table as soon as its f64
    /// copy exists, so the two precisions are never both held in full.
    pub fn into_params(self) -> Result<Params, InitError> {
        let NativeParams {
            tables,
            first,
            second,
            steps,
            touched,
            lanes,
            domain_sizes,
        } = self;
        drop((first, second, steps, touched));
        let mut out = Vec::with_capacity(tables.len());
        for (t, lanes) in tables.into_iter().zip(lanes) {
            let rows = t.len() / lanes.max(1);
            let mut wide: Vec<f64> = zeroed(0, "the trained parameters")?;
            wide.try_reserve_exact(rows * lanes).map_err(|_| {
                InitError::Memory("cannot allocate the trained parameters in f64".into())
            })?;
            wide.extend(t[..rows * lanes].iter().map(|&v| f64::from(v)));
            drop(t);
            out.push(
                ndarray::Array2::from_shape_vec((rows, lanes), wide)
                    .map_err(|e| InitError::Memory(e.to_string()))?,
            );
        }
        Ok(Params {
            domain_sizes,
            tables: out,
        })
    }

    /// The first parameter that is an infinity or a NaN, if any: one
    /// vectorised pass over every table, cheap beside an epoch.
    pub fn first_non_finite(&self) -> Option<NonFinite> {
        for (t, (values, &lanes)) in self.tables.iter().zip(&self.lanes).enumerate() {
            if all_finite(values) {
                continue;
            }
            let at = values.iter().position(|v| !v.is_finite())?;
            return Some(NonFinite {
                table: t,
                row: at / lanes.max(1),
                value: values[at],
            });
        }
        None
    }

    /// The parameters as the evaluator's f64 tables.
    pub fn to_params(&self) -> Params {
        let tables = self
            .tables
            .iter()
            .zip(&self.lanes)
            .map(|(t, &lanes)| {
                let rows = t.len() / lanes.max(1);
                ndarray::Array2::from_shape_fn((rows, lanes), |(r, c)| t[r * lanes + c] as f64)
            })
            .collect();
        Params {
            domain_sizes: self.domain_sizes.clone(),
            tables,
        }
    }

    pub fn touched(&self) -> Vec<Vec<bool>> {
        self.touched
            .iter()
            .map(|t| t.iter().map(|&b| b != 0).collect())
            .collect()
    }
}

/// Hyper-parameters a kernel reads at run time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
}

impl Hyper {
    pub fn new(optimizer: Optimizer, lr: f64) -> Hyper {
        let (beta1, beta2) = match optimizer {
            Optimizer::Adam { beta1, beta2 } => (beta1, beta2),
            _ => (0.0, 0.0),
        };
        Hyper { lr, beta1, beta2 }
    }
}

/// Pointers into [`NativeParams`], taken once so that several threads can
/// run kernels on the same tables (Hogwild): each word is an address. The
/// length of every buffer is kept beside its address, so that [`validate`]
/// can check a kernel's tables without the parameters at hand.
#[derive(Clone, Debug)]
pub struct TableWords {
    words: Vec<u64>,
    /// Per table, elements of: values, first, second, steps, touched.
    lens: Vec<[usize; TABLE_WORDS]>,
}

impl TableWords {
    pub fn new(params: &mut NativeParams) -> TableWords {
        let mut words = Vec::with_capacity(params.tables.len() * TABLE_WORDS);
        let mut lens = Vec::with_capacity(params.tables.len());
        for t in 0..params.tables.len() {
            words.push(params.tables[t].as_mut_ptr() as u64);
            words.push(params.first[t].as_mut_ptr() as u64);
            words.push(params.second[t].as_mut_ptr() as u64);
            words.push(params.steps[t].as_mut_ptr() as u64);
            words.push(params.touched[t].as_mut_ptr() as u64);
            lens.push([
                params.tables[t].len(),
                params.first[t].len(),
                params.second[t].len(),
                params.steps[t].len(),
                params.touched[t].len(),
            ]);
        }
        TableWords { words, lens }
    }

    /// Table `t`'s values (rows × lanes floats).
    pub fn values(&self, t: usize) -> *const f32 {
        self.words[t * TABLE_WORDS] as *const f32
    }
}

/// A kernel's inputs disagree with the layout it was compiled for. Always
/// a bug upstream (a reader, the binder, a model file): the kernel is not
/// run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refusing to run the native kernel of `{model}`: {reason}")]
pub struct InputError {
    pub model: String,
    pub reason: String,
}

/// Check every input a kernel of `g` will read against its layout: the
/// invariant in this module's documentation.
pub fn validate(
    kernel: &Kernel,
    g: &Graph,
    columns: &Columns,
    tables: &TableWords,
    domain_sizes: &[usize],
) -> Result<(), InputError> {
    validate_layout(kernel, g, domain_sizes)?;
    validate_columns(g, columns, columns.len, domain_sizes, |_| true)?;
    validate_tables(kernel, g, tables, domain_sizes)
}

fn input_error(g: &Graph, reason: String) -> InputError {
    InputError {
        model: g.name.clone(),
        reason,
    }
}

/// The kernel was compiled for `g`, and there is a size for every domain.
fn validate_layout(kernel: &Kernel, g: &Graph, domain_sizes: &[usize]) -> Result<(), InputError> {
    let fail = |reason: String| input_error(g, reason);
    let layout = &kernel.layout;
    if layout.slot.len() != g.slots.len()
        || layout.table.len() != g.tables.len()
        || layout.domain.len() != g.domains.len()
        || layout.bag_region.len() != g.nodes.len()
    {
        return Err(fail(format!(
            "it was compiled for another graph ({} slots, {} tables, {} domains; this one has {}, {}, {})",
            layout.slot.len(),
            layout.table.len(),
            layout.domain.len(),
            g.slots.len(),
            g.tables.len(),
            g.domains.len()
        )));
    }
    if domain_sizes.len() != g.domains.len() {
        return Err(fail(format!(
            "{} domain sizes given for {} domains",
            domain_sizes.len(),
            g.domains.len()
        )));
    }
    Ok(())
}

/// The columns of the slots `which` selects hold `n` entries each, every
/// index inside its domain and every bag well formed.
fn validate_columns(
    g: &Graph,
    columns: &Columns,
    n: usize,
    domain_sizes: &[usize],
    which: impl Fn(&SlotKind) -> bool,
) -> Result<(), InputError> {
    let fail = |reason: String| input_error(g, reason);
    if columns.slots.len() != g.slots.len() {
        return Err(fail(format!(
            "{} input columns given for {} slots",
            columns.slots.len(),
            g.slots.len()
        )));
    }
    let domain = |d: usize| (g.domains[d].name.as_str(), domain_sizes[d]);
    for (slot, column) in g.slots.iter().zip(&columns.slots) {
        if !which(&slot.kind) {
            continue;
        }
        let name = &slot.name;
        let short = |what: &str, have: usize, need: usize| {
            fail(format!(
                "slot `{name}`: its {what} holds {have} values, {need} needed for {n} examples"
            ))
        };
        match (&slot.kind, column) {
            (SlotKind::Index(d) | SlotKind::Negative { domain: d, .. }, SlotColumn::Index(v)) => {
                if v.len() < n {
                    return Err(short("column", v.len(), n));
                }
                let (dname, size) = domain(d.index());
                if let Some((k, x)) = first_outside(&v[..n], size) {
                    return Err(fail(format!(
                        "slot `{name}`: example {} holds index {x}, outside domain `{dname}` of {size} members",
                        k + 1
                    )));
                }
            }
            (SlotKind::Real | SlotKind::InverseCount(_), SlotColumn::Real(v)) => {
                if v.len() < n {
                    return Err(short("column", v.len(), n));
                }
            }
            (SlotKind::Noise(shape), SlotColumn::Real(v)) => {
                let need = n.saturating_mul(shape.len());
                if v.len() < need {
                    return Err(short("noise column", v.len(), need));
                }
            }
            (SlotKind::Pooled { shape, .. } | SlotKind::Dense(shape), SlotColumn::Real(v)) => {
                let need = n.saturating_mul(shape.len());
                if v.len() < need {
                    return Err(short("column", v.len(), need));
                }
            }
            (
                SlotKind::Bag { domain: d, .. },
                SlotColumn::Bag {
                    offsets,
                    members,
                    weights,
                },
            ) => {
                if offsets.len() < n + 1 {
                    return Err(short("offsets", offsets.len(), n + 1));
                }
                let offsets = &offsets[..=n];
                if let Some(k) = offsets.windows(2).position(|w| w[1] < w[0]) {
                    return Err(fail(format!(
                        "slot `{name}`: the bag of example {} ends (offset {}) before it starts (offset {})",
                        k + 1,
                        offsets[k + 1],
                        offsets[k]
                    )));
                }
                let (start, end) = (offsets[0] as usize, offsets[n] as usize);
                if end > members.len() || end > weights.len() {
                    return Err(fail(format!(
                        "slot `{name}`: bag offsets reach {end}, past its {} members and {} weights",
                        members.len(),
                        weights.len()
                    )));
                }
                let (dname, size) = domain(d.index());
                if let Some((k, x)) = first_outside(&members[start..end], size) {
                    let at = start + k;
                    let example = offsets.partition_point(|&o| o as usize <= at);
                    return Err(fail(format!(
                        "slot `{name}`: the bag of example {example} holds member {x}, outside domain `{dname}` of {size} members"
                    )));
                }
            }
            (kind, _) => {
                return Err(fail(format!(
                    "slot `{name}` ({kind:?}) was given a column of another kind"
                )))
            }
        }
    }
    Ok(())
}

/// Every table holds what the kernel's update reads of it.
fn validate_tables(
    kernel: &Kernel,
    g: &Graph,
    tables: &TableWords,
    domain_sizes: &[usize],
) -> Result<(), InputError> {
    let fail = |reason: String| input_error(g, reason);
    if tables.lens.len() != g.tables.len() {
        return Err(fail(format!(
            "{} tables given for {} in the graph",
            tables.lens.len(),
            g.tables.len()
        )));
    }
    let optimizer = match kernel.kind {
        KernelKind::Step(options) => Some(options.optimizer),
        KernelKind::Predict => None,
    };
    for (table, lens) in g.tables.iter().zip(&tables.lens) {
        let rows = table.domain.map_or(1, |d| domain_sizes[d.index()]);
        let lanes = table.shape.len();
        let values = rows.checked_mul(lanes).ok_or_else(|| {
            fail(format!(
                "table `{}`: {rows} rows × {lanes} lanes overflows",
                table.name
            ))
        })?;
        let [first, second, steps, touched] = match optimizer {
            None => [0; 4],
            Some(Optimizer::Sgd) => [0, 0, 0, rows],
            Some(Optimizer::Adagrad) => [values, 0, 0, rows],
            Some(Optimizer::Adam { .. }) => [values, values, rows, rows],
        };
        let need = [values, first, second, steps, touched];
        const FIELDS: [&str; TABLE_WORDS] = [
            "values",
            "optimiser state",
            "second moments",
            "step counts",
            "touched flags",
        ];
        for ((field, &have), &need) in FIELDS.iter().zip(lens).zip(&need) {
            if have < need {
                return Err(fail(format!(
                    "table `{}`: its {field} hold {have} entries, {need} needed ({rows} rows × {} lanes)",
                    table.name,
                    if *field == "step counts" || *field == "touched flags" {
                        1
                    } else {
                        lanes
                    }
                )));
            }
        }
    }
    Ok(())
}

/// The first value of `v` that is not below `size`, with its position.
fn first_outside(v: &[u32], size: usize) -> Option<(usize, u32)> {
    // The common case is one vectorised pass for the largest value.
    let max = v.iter().copied().max()?;
    if (max as usize) < size {
        return None;
    }
    v.iter()
        .copied()
        .enumerate()
        .find(|&(_, x)| x as usize >= size)
}

/// A parameter that is no longer a finite number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NonFinite {
    pub table: usize,
    pub row: usize,
    pub value: f32,
}

/// No infinity or NaN in `v`: one branch-free pass over the exponent bits.
fn all_finite(v: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    let bad = v.iter().fold(0u32, |acc, x| {
        acc | u32::from(x.to_bits() & EXPONENT == EXPONENT)
    });
    bad == 0
}

/// Per-thread buffers for running a kernel.
#[derive(Debug, Default)]
pub struct Runner {
    scratch: Vec<f32>,
    args: Vec<u64>,
    loss: f64,
    pub scores: Vec<f32>,
    /// By slot: a step's gradient of the loss with respect to each pooled
    /// input, the slot's lanes per example (empty for other slots).
    pub slot_grads: Vec<Vec<f32>>,
    /// `0, 1, 2, …`: the order of a call that visits its examples in turn.
    identity: Vec<u32>,
}

impl Runner {
    pub fn new() -> Runner {
        Runner::default()
    }

    /// Run `kernel` over every example of `columns`, in order. Returns how
    /// many examples finished (fewer than all when a loss was not finite)
    /// and the summed loss of those that did; an error, before the kernel
    /// runs, when any input fails [`validate`].
    ///
    /// `tables` must come from parameters still alive and not resized
    /// since it was taken; everything else is checked.
    pub fn run(
        &mut self,
        kernel: &Kernel,
        g: &Graph,
        columns: &Columns,
        tables: &TableWords,
        domain_sizes: &[usize],
        hyper: Hyper,
    ) -> Result<(usize, f64), InputError> {
        validate(kernel, g, columns, tables, domain_sizes)?;
        let n = columns.len;
        let visits = u32::try_from(n).map_err(|_| {
            input_error(
                g,
                format!("{n} examples in one call; at most {} are allowed", u32::MAX),
            )
        })?;
        // Visits read the examples in order.
        let mut order = std::mem::take(&mut self.identity);
        if order.len() < n {
            order.extend(order.len() as u32..visits);
        }
        let cap = columns.max_bag().max(1);
        let call = Call {
            kernel,
            g,
            examples: columns,
            visits: columns,
            order: &order[..n],
            cap,
            tables,
            domain_sizes,
            hyper,
        };
        let ran = self.launch(&call);
        self.identity = order;
        ran
    }

    /// Run `kernel` over the examples of `laid` that `order` names, in that
    /// order; `drawn` holds the per-visit columns (noise, negatives: see
    /// [`per_visit`]) of those visits, in visit order. Only the order, the
    /// drawn columns and the tables are checked here: the examples were
    /// checked when laid out.
    #[allow(clippy::too_many_arguments)]
    pub fn run_laid_out(
        &mut self,
        kernel: &Kernel,
        g: &Graph,
        laid: &LaidOut,
        order: &[u32],
        drawn: &Columns,
        tables: &TableWords,
        domain_sizes: &[usize],
        hyper: Hyper,
    ) -> Result<(usize, f64), InputError> {
        validate_layout(kernel, g, domain_sizes)?;
        if laid.slot_words != kernel.layout.slot || laid.domain_sizes != domain_sizes {
            return Err(input_error(
                g,
                "its examples were laid out for another kernel or other domains".into(),
            ));
        }
        if let Some((k, x)) = first_outside(order, laid.columns.len) {
            return Err(input_error(
                g,
                format!(
                    "visit {} names example {x} of {} laid out",
                    k + 1,
                    laid.columns.len
                ),
            ));
        }
        validate_columns(g, drawn, order.len(), domain_sizes, per_visit)?;
        validate_tables(kernel, g, tables, domain_sizes)?;
        let call = Call {
            kernel,
            g,
            examples: &laid.columns,
            visits: drawn,
            order,
            cap: laid.cap,
            tables,
            domain_sizes,
            hyper,
        };
        self.launch(&call)
    }

    /// Fill the argument block for `call` and run it: every input has
    /// been validated.
    fn launch(&mut self, call: &Call) -> Result<(usize, f64), InputError> {
        let Call {
            kernel,
            g,
            examples,
            visits,
            order,
            cap,
            tables,
            domain_sizes,
            hyper,
        } = *call;
        let n = order.len();
        let layout = &kernel.layout;
        // Offsets are monotone (validated), so `cap` bounds every bag.
        let need = layout
            .bag_lanes
            .checked_mul(cap)
            .ok_or_else(|| InputError {
                model: g.name.clone(),
                reason: format!(
                    "bag scratch of {} lanes × {cap} members overflows",
                    layout.bag_lanes
                ),
            })?;
        if self.scratch.len() < need {
            self.scratch.resize(need, 0.0);
        }
        // Only a predict kernel writes scores; a training step leaves them be.
        self.scores.clear();
        if kernel.kind == KernelKind::Predict {
            self.scores.resize(n, 0.0);
        }
        self.loss = 0.0;
        self.args.clear();
        self.args.resize(layout.words, 0);
        for (s, slot) in g.slots.iter().enumerate() {
            let w = layout.slot[s];
            let columns = if per_visit(&slot.kind) {
                visits
            } else {
                examples
            };
            match &columns.slots[s] {
                SlotColumn::Index(v) => self.args[w] = v.as_ptr() as u64,
                SlotColumn::Real(v) => self.args[w] = v.as_ptr() as u64,
                SlotColumn::Bag {
                    offsets,
                    members,
                    weights,
                } => {
                    self.args[w] = offsets.as_ptr() as u64;
                    self.args[w + 1] = members.as_ptr() as u64;
                    self.args[w + 2] = weights.as_ptr() as u64;
                }
            }
        }
        self.slot_grads.resize_with(g.slots.len(), Vec::new);
        for (s, slot) in g.slots.iter().enumerate() {
            if let Some(shape) = slot.kind.pooled_shape() {
                // Zeros where the loss does not depend on the value.
                let out = &mut self.slot_grads[s];
                out.clear();
                out.resize(n * shape.len(), 0.0);
                self.args[layout.slot[s] + 1] = out.as_mut_ptr() as u64;
            }
        }
        for (t, &w) in layout.table.iter().enumerate() {
            self.args[w..w + TABLE_WORDS]
                .copy_from_slice(&tables.words[t * TABLE_WORDS..(t + 1) * TABLE_WORDS]);
        }
        for (d, &w) in layout.domain.iter().enumerate() {
            self.args[w] = domain_sizes[d] as u64;
        }
        self.args[layout.scratch] = self.scratch.as_mut_ptr() as u64;
        self.args[layout.bag_cap] = cap as u64;
        self.args[layout.lr] = hyper.lr.to_bits();
        self.args[layout.beta1] = hyper.beta1.to_bits();
        self.args[layout.beta2] = hyper.beta2.to_bits();
        self.args[layout.loss_out] = &mut self.loss as *mut f64 as u64;
        self.args[layout.score_out] = self.scores.as_mut_ptr() as u64;
        self.args[layout.order] = order.as_ptr() as u64;
        // SAFETY: the words above follow the kernel's layout, and the
        // caller validated everything they point at: per-visit columns hold
        // `n` entries, every visit names an example the columns of examples
        // hold, every index is inside its domain, bag offsets are monotone
        // inside their members, every table holds its domain's rows, the
        // scratch holds `bag_lanes × cap` floats and no bag is longer than
        // `cap`.
        let done = unsafe { kernel.run(&self.args, 0, n) };
        Ok((done, self.loss))
    }
}

/// One kernel call's inputs, validated.
struct Call<'a> {
    kernel: &'a Kernel,
    g: &'a Graph,
    /// Columns of examples, read at `order[k]`.
    examples: &'a Columns,
    /// Per-visit columns, read at `k`.
    visits: &'a Columns,
    order: &'a [u32],
    /// The longest bag of `examples`.
    cap: usize,
    tables: &'a TableWords,
    domain_sizes: &'a [usize],
    hyper: Hyper,
}

/// Examples laid out once for many kernel calls (a trainer's whole
/// training set), checked once against a kernel's layout: every column of
/// examples holds them all, indices inside their domains, bags well formed.
/// Each call then names the examples it visits ([`Runner::run_laid_out`]).
#[derive(Debug)]
pub struct LaidOut {
    columns: Columns,
    /// The longest bag.
    cap: usize,
    /// What the columns were checked against.
    slot_words: Vec<usize>,
    domain_sizes: Vec<usize>,
}

impl LaidOut {
    /// Check the columns of examples of `columns` for `kernel`; per-visit
    /// columns are ignored (each call brings its own).
    pub fn new(
        kernel: &Kernel,
        g: &Graph,
        columns: Columns,
        domain_sizes: &[usize],
    ) -> Result<LaidOut, InputError> {
        validate_layout(kernel, g, domain_sizes)?;
        let n = columns.len;
        if u32::try_from(n).is_err() {
            return Err(input_error(
                g,
                format!("{n} examples laid out; at most {} are allowed", u32::MAX),
            ));
        }
        validate_columns(g, &columns, n, domain_sizes, |k| !per_visit(k))?;
        Ok(LaidOut {
            cap: columns.max_bag().max(1),
            columns,
            slot_words: kernel.layout.slot.clone(),
            domain_sizes: domain_sizes.to_vec(),
        })
    }

    /// Examples laid out.
    pub fn len(&self) -> usize {
        self.columns.len
    }

    /// Bytes the columns of examples hold.
    pub fn bytes(&self) -> usize {
        self.columns
            .slots
            .iter()
            .map(|c| match c {
                SlotColumn::Index(v) => 4 * v.len(),
                SlotColumn::Real(v) => 4 * v.len(),
                SlotColumn::Bag {
                    offsets,
                    members,
                    weights,
                } => 4 * (offsets.len() + members.len() + weights.len()),
            })
            .sum()
    }

    /// Copy the examples at `positions`, in that order, into the columns
    /// of examples of `out` (per-visit columns and `out.len` are left as
    /// they are): one pass of independent reads, where a kernel reading
    /// them in place would wait on each.
    pub fn gather(&self, positions: &[u32], out: &mut Columns) {
        for (from, to) in self.columns.slots.iter().zip(&mut out.slots) {
            match (from, to) {
                (SlotColumn::Index(a), SlotColumn::Index(b)) if !a.is_empty() => {
                    b.extend(positions.iter().map(|&p| a[p as usize]))
                }
                (SlotColumn::Real(a), SlotColumn::Real(b)) if !a.is_empty() => {
                    b.extend(positions.iter().map(|&p| a[p as usize]))
                }
                (
                    SlotColumn::Bag {
                        offsets,
                        members,
                        weights,
                    },
                    SlotColumn::Bag {
                        offsets: o,
                        members: m,
                        weights: w,
                    },
                ) => {
                    for &p in positions {
                        let (start, end) = (
                            offsets[p as usize] as usize,
                            offsets[p as usize + 1] as usize,
                        );
                        m.extend_from_slice(&members[start..end]);
                        w.extend_from_slice(&weights[start..end]);
                        o.push(m.len() as u32);
                    }
                }
                _ => {}
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.columns.len == 0
    }
}
