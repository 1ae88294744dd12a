//! The native backend's side of the runtime: f32 parameter storage, the
//! argument block a kernel reads, and running a kernel over columns.
//!
//! Input: a compiled [`Kernel`], [`Columns`] of examples and
//! [`NativeParams`]. Output: the parameters updated in place (a step kernel)
//! or one score per example (a predict kernel). The evaluator's f64
//! [`Params`] are converted in at the start of training and out at the end.

use crate::bind::{Columns, SlotColumn};
use recc_compiler::interp::Params;
use recc_compiler::ir::Graph;
use recc_compiler::model::Optimizer;
use recc_jit::layout::TABLE_WORDS;
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
/// run kernels on the same tables (Hogwild): each word is an address.
#[derive(Clone, Debug)]
pub struct TableWords(Vec<u64>);

impl TableWords {
    pub fn new(params: &mut NativeParams) -> TableWords {
        let mut words = Vec::with_capacity(params.tables.len() * TABLE_WORDS);
        for t in 0..params.tables.len() {
            words.push(params.tables[t].as_mut_ptr() as u64);
            words.push(params.first[t].as_mut_ptr() as u64);
            words.push(params.second[t].as_mut_ptr() as u64);
            words.push(params.steps[t].as_mut_ptr() as u64);
            words.push(params.touched[t].as_mut_ptr() as u64);
        }
        TableWords(words)
    }
}

/// Per-thread buffers for running a kernel.
#[derive(Debug, Default)]
pub struct Runner {
    scratch: Vec<f32>,
    args: Vec<u64>,
    loss: f64,
    pub scores: Vec<f32>,
}

impl Runner {
    pub fn new() -> Runner {
        Runner::default()
    }

    /// Run `kernel` over every example of `columns`. Returns how many
    /// examples finished (fewer than all when a loss was not finite) and
    /// the summed loss of those that did.
    ///
    /// `tables` must come from the parameters the kernel was compiled for,
    /// still alive and not resized; `columns` must come from the binding of
    /// the same graph (so every index is inside its table).
    pub fn run(
        &mut self,
        kernel: &Kernel,
        g: &Graph,
        columns: &Columns,
        tables: &TableWords,
        domain_sizes: &[usize],
        hyper: Hyper,
    ) -> (usize, f64) {
        let layout = &kernel.layout;
        let cap = columns.max_bag().max(1);
        let need = layout.bag_lanes * cap;
        if self.scratch.len() < need {
            self.scratch.resize(need, 0.0);
        }
        // Only a predict kernel writes scores; a training step leaves them be.
        self.scores.clear();
        if kernel.kind == KernelKind::Predict {
            self.scores.resize(columns.len, 0.0);
        }
        self.loss = 0.0;
        self.args.clear();
        self.args.resize(layout.words, 0);
        for (s, column) in columns.slots.iter().enumerate().take(g.slots.len()) {
            let w = layout.slot[s];
            match column {
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
        for (t, &w) in layout.table.iter().enumerate() {
            self.args[w..w + TABLE_WORDS]
                .copy_from_slice(&tables.0[t * TABLE_WORDS..(t + 1) * TABLE_WORDS]);
        }
        for (d, &w) in layout.domain.iter().enumerate() {
            self.args[w] = domain_sizes.get(d).copied().unwrap_or(0) as u64;
        }
        self.args[layout.scratch] = self.scratch.as_mut_ptr() as u64;
        self.args[layout.bag_cap] = cap as u64;
        self.args[layout.lr] = hyper.lr.to_bits();
        self.args[layout.beta1] = hyper.beta1.to_bits();
        self.args[layout.beta2] = hyper.beta2.to_bits();
        self.args[layout.loss_out] = &mut self.loss as *mut f64 as u64;
        self.args[layout.score_out] = self.scores.as_mut_ptr() as u64;
        // SAFETY: the words above follow the kernel's layout: columns hold
        // `columns.len` examples validated by the binding, the scratch
        // holds `bag_lanes × cap` floats, no bag is longer than `cap`, and
        // the table words point at live tables of the compiled graph.
        let done = unsafe { kernel.run(&self.args, 0, columns.len) };
        (done, self.loss)
    }
}
