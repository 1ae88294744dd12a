//! A kernel plan as CUDA C++: one `step` or one `predict` kernel.
//!
//! The text is a pure function of the plan (no addresses, no hash order), so it can be
//! snapshotted and cached by its hash. Each warp takes one example at a time and strides over
//! the examples of the launch; a vector value is spread over the warp the way the plan says
//! (lane `j` holds elements `j, j + 32, …`), so every row is read and written in coalesced
//! 128-byte transactions; reductions are butterflies of `__shfl_xor_sync`; bags are loops over
//! their members that the whole warp runs together. Updates are written in place with no
//! locks: warps race on shared rows as in batch-Hogwild (cuMF_SGD), which is what makes a GPU
//! run reproducible only up to those races.
//!
//! The launch contract (the runtime's validation guarantees it, as for the JIT): every index
//! below its domain's size, bag offsets monotone and inside their members, every table and
//! optimiser state at least `rows × lanes` floats, `scratch` at least
//! `warps × bag_cap × BAG_LANES` floats with `bag_cap` the most members of any bag in the
//! launch, and `*stopped` set to `n` before the launch.

use crate::plan::{
    Combine, Expr, Instr, KernelKind, KernelPlan, Layout, Output, Partial, Piece, RowStep,
    SlotInput, Update, ValueId, BUTTERFLY, EPSILON, WARP,
};
use recc_compiler::ir::{SlotId, TableId};
use recc_compiler::model::{Constraint, Optimizer};
use recc_compiler::types::{BinaryFn, UnaryFn};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The kernel's entry point: `step` for a training step, `predict` for scores.
pub fn kernel_name(plan: &KernelPlan) -> &'static str {
    match plan.kind {
        KernelKind::Step(_) => "step",
        KernelKind::Predict => "predict",
    }
}

/// The plan's kernel as CUDA C++ source.
pub fn render(plan: &KernelPlan) -> String {
    let mut r = Renderer {
        plan,
        out: Writer::default(),
        loops: Vec::new(),
    };
    r.file();
    r.out.text
}

/// Generated text with indentation handled in one place.
#[derive(Default)]
struct Writer {
    text: String,
    depth: usize,
}

impl Writer {
    fn line(&mut self, s: impl AsRef<str>) {
        let s = s.as_ref();
        if !s.is_empty() {
            for _ in 0..self.depth {
                self.text.push_str("    ");
            }
            self.text.push_str(s);
        }
        self.text.push('\n');
    }

    fn open(&mut self, s: impl AsRef<str>) {
        match s.as_ref() {
            "" => self.line("{"),
            s => self.line(format!("{s} {{")),
        }
        self.depth += 1;
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.line("}");
    }
}

/// The enclosing loop over a bag's members, and the per-member values defined in it so far.
struct Loop {
    slot: SlotId,
    defined: BTreeSet<ValueId>,
}

struct Renderer<'a> {
    plan: &'a KernelPlan,
    out: Writer,
    loops: Vec<Loop>,
}

/// A float literal C++ reads back as the same `f32`.
fn float(x: f32) -> String {
    if x.is_nan() {
        "__int_as_float(0x7fc00000)".to_string()
    } else if x.is_infinite() {
        if x > 0.0 {
            "__int_as_float(0x7f800000)".to_string()
        } else {
            "__int_as_float(0xff800000)".to_string()
        }
    } else {
        // Rust's shortest round-trip form; it always has a `.` or an exponent.
        format!("{x:?}f")
    }
}

/// A value's comment (`  // %3`, or nothing) with a note added.
fn with_note(comment: &str, note: &str) -> String {
    if comment.is_empty() {
        format!("  // {note}")
    } else {
        format!("{comment}: {note}")
    }
}

/// `table[row * lanes + element]`, plain `table[row]` for one float per row.
fn row_element(table: TableId, row: &str, lanes: usize, element: &str) -> String {
    if lanes == 1 && element == "0u" {
        format!("{table}[{row}]")
    } else {
        format!("{table}[(size_t){row} * {lanes}u + {element}]")
    }
}

/// The element a lane holds in register `r`: `lane + 32 r`.
fn element(r: usize) -> String {
    if r == 0 {
        "lane".to_string()
    } else {
        format!("(lane + {}u)", WARP * r)
    }
}

/// `cond` for the lanes of register `r` that hold one of `n` elements, or `None` when all do.
fn in_bounds(r: usize, n: usize) -> Option<String> {
    if (r + 1) * WARP <= n {
        None
    } else {
        Some(format!("{} < {n}u", element(r)))
    }
}

fn unary_helper(f: UnaryFn) -> (&'static str, &'static str) {
    // Transcendentals in double, rounded to float, with the evaluator's formulas: the same
    // numbers the evaluator, the JIT and the plan's emulator compute.
    match f {
        UnaryFn::Neg => ("neg", "return -x;"),
        UnaryFn::Exp => ("exp", "return (float)exp((double)x);"),
        UnaryFn::Log => ("log", "return (float)log((double)x);"),
        UnaryFn::Sqrt => ("sqrt", "return sqrtf(x);"),
        UnaryFn::Abs => ("abs", "return fabsf(x);"),
        UnaryFn::Sigmoid => (
            "sigmoid",
            "double d = x; if (d >= 0.0) return (float)(1.0 / (1.0 + exp(-d))); \
             double e = exp(d); return (float)(e / (1.0 + e));",
        ),
        UnaryFn::LogSigmoid => ("log_sigmoid", "return (float)-recc_softplus_d(-(double)x);"),
        UnaryFn::Softplus => ("softplus", "return (float)recc_softplus_d((double)x);"),
        UnaryFn::Tanh => ("tanh", "return (float)tanh((double)x);"),
        UnaryFn::Relu => ("relu", "return fmaxf(x, 0.0f);"),
        UnaryFn::Step => ("step", "return x > 0.0f ? 1.0f : 0.0f;"),
        UnaryFn::Sign => (
            "sign",
            "return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);",
        ),
    }
}

fn binary(f: BinaryFn, a: &str, b: &str) -> String {
    match f {
        BinaryFn::Add => format!("{a} + {b}"),
        BinaryFn::Sub => format!("{a} - {b}"),
        BinaryFn::Mul => format!("{a} * {b}"),
        BinaryFn::Div => format!("{a} / {b}"),
        // The evaluator's comparisons, so a NaN picks the same side.
        BinaryFn::Max => format!("({a} > {b} ? {a} : {b})"),
        BinaryFn::Min => format!("({a} < {b} ? {a} : {b})"),
    }
}

fn walk<'b>(body: &'b [Instr], f: &mut impl FnMut(&'b Instr)) {
    for instr in body {
        f(instr);
        if let Instr::ForMembers { body, .. } = instr {
            walk(body, f);
        }
    }
}

/// The values an expression reads.
fn operands(expr: &Expr) -> Vec<ValueId> {
    match expr {
        Expr::Const(_)
        | Expr::Zeros
        | Expr::Input(_)
        | Expr::MemberRow { .. }
        | Expr::MemberWeight
        | Expr::BagLen(_) => Vec::new(),
        Expr::Shift { index, .. } => vec![*index],
        Expr::InRange(v) | Expr::Unary(_, v) | Expr::Copy(v) => vec![*v],
        Expr::Extract { x, .. } => vec![*x],
        Expr::Load { row, .. } => row.iter().copied().collect(),
        Expr::Binary(_, a, b) => vec![*a, *b],
        Expr::Broadcast { x, .. } => vec![*x],
        Expr::Partial(Partial::Dot(a, b)) => vec![*a, *b],
        Expr::Partial(Partial::Sum(a) | Partial::Max(a)) => vec![*a],
        Expr::Butterfly { x, .. } => vec![*x],
        Expr::Move { pieces, .. } => pieces.iter().map(|p| p.src).collect(),
    }
}

impl Renderer<'_> {
    fn layout(&self, v: ValueId) -> Layout {
        self.plan
            .values
            .get(v.index())
            .map_or(Layout::Uniform, |info| info.layout)
    }

    fn registers(&self, v: ValueId) -> usize {
        self.layout(v).registers()
    }

    /// `v` as an operand in register `r`: scalars broadcast.
    fn at(&self, v: ValueId, r: usize) -> String {
        match self.layout(v) {
            Layout::Spread(_) => format!("{v}[{r}]"),
            _ => v.to_string(),
        }
    }

    fn table_name(&self, t: TableId) -> &str {
        self.plan
            .tables
            .get(t.index())
            .map_or("?", |table| table.name.as_str())
    }

    fn table_lanes(&self, t: TableId) -> usize {
        self.plan
            .tables
            .get(t.index())
            .map_or(1, |table| table.lanes)
    }

    fn domain_name(&self, d: recc_compiler::ir::DomainId) -> &str {
        self.plan
            .domains
            .get(d.index())
            .map_or("?", |name| name.as_str())
    }

    fn optimizer(&self) -> Option<Optimizer> {
        match self.plan.kind {
            KernelKind::Step(options) => Some(options.optimizer),
            KernelKind::Predict => None,
        }
    }

    fn file(&mut self) {
        let plan = self.plan;
        let name = kernel_name(plan);
        let ball = plan.tables.iter().any(|t| t.constraint == Constraint::Ball);
        let what = match plan.kind {
            KernelKind::Step(options) if ball => format!(
                "one training step per example ({}; rows on the ball kept inside norm {})",
                options.optimizer, options.max_ball_norm
            ),
            KernelKind::Step(options) => {
                format!("one training step per example ({})", options.optimizer)
            }
            KernelKind::Predict => "the score of each example".to_string(),
        };
        self.out.line(format!(
            "// recc: model `{}`, kernel `{name}`: {what}.",
            plan.model
        ));
        self.out
            .line("// Generated from the model's kernel plan: one warp per example, vectors");
        self.out
            .line("// spread over the warp's lanes, reductions by warp shuffles.");
        self.out.line("");
        // A namespace per kernel, so a step and a predict kernel can share one source file.
        self.out.line(format!("namespace recc_{name} {{"));
        self.out.line("");
        self.out
            .line("constexpr unsigned int FULL_MASK = 0xffffffffu;");
        self.out
            .line("// Scratch floats per bag member (per warp: bag_cap members).");
        self.out.line(format!(
            "constexpr unsigned int BAG_LANES = {}u;",
            plan.bag_lanes
        ));
        self.out.line("");
        self.helpers();
        self.signature();
        self.kernel_body();
        self.out.line("");
        self.out.line(format!("}}  // namespace recc_{name}"));
    }

    fn helpers(&mut self) {
        let mut unary = BTreeSet::new();
        let mut moves = false;
        let (mut sum, mut max) = (false, false);
        walk(&self.plan.body, &mut |instr| {
            if let Instr::Let { expr, .. } = instr {
                match expr {
                    Expr::Unary(f, _) => {
                        unary.insert(*f);
                    }
                    Expr::Move { .. } => moves = true,
                    Expr::Butterfly {
                        op: Combine::Sum, ..
                    } => sum = true,
                    Expr::Butterfly {
                        op: Combine::Max, ..
                    } => max = true,
                    _ => {}
                }
            }
        });
        if let Output::Step { updates, .. } = &self.plan.output {
            // The ball's steps take the row's norm.
            sum |= updates
                .iter()
                .flat_map(|u| u.steps())
                .any(|step| matches!(step, RowStep::BallMetric | RowStep::BallShrink { .. }));
        }
        if unary.contains(&UnaryFn::Softplus) || unary.contains(&UnaryFn::LogSigmoid) {
            self.out
                .line("// log(1 + e^x) without overflow, as the evaluator computes it.");
            self.out
                .open("__device__ __forceinline__ double recc_softplus_d(double x)");
            self.out
                .line("return x > 0.0 ? x + log1p(exp(-x)) : log1p(exp(x));");
            self.out.close();
        }
        for f in unary {
            let (name, body) = unary_helper(f);
            self.out.line(format!(
                "__device__ __forceinline__ float recc_{name}(float x) {{ {body} }}"
            ));
        }
        let offsets: Vec<String> = BUTTERFLY.iter().map(|d| d.to_string()).collect();
        self.out.line("");
        self.out.line(format!(
            "// The warp's total: a butterfly over lane offsets {}; every lane ends with it.",
            offsets.join(", ")
        ));
        let butterflies = [(sum, "sum", "x + y"), (max, "max", "(x > y ? x : y)")];
        for (_, name, combine) in butterflies.into_iter().filter(|b| b.0) {
            self.out.open(format!(
                "__device__ __forceinline__ float warp_{name}(float x)"
            ));
            for d in BUTTERFLY {
                self.out.line(format!(
                    "{{ float y = __shfl_xor_sync(FULL_MASK, x, {d}); x = {combine}; }}"
                ));
            }
            self.out.line("return x;");
            self.out.close();
        }
        if moves {
            self.out.line("");
            self.out
                .line("// Element `s` of a vector spread over the warp in `regs` registers, for");
            self.out.line(
                "// every lane at once (every lane takes part in each shuffle); 0 off the end.",
            );
            self.out.line("template <int REGS>");
            self.out.open(
                "__device__ __forceinline__ float warp_element(const float (&src)[REGS], int s)",
            );
            self.out.line("float out = 0.0f;");
            self.out.line("#pragma unroll");
            self.out.open("for (int q = 0; q < REGS; ++q)");
            self.out
                .line("float t = __shfl_sync(FULL_MASK, src[q], s & 31);");
            self.out.line("if (s >= 0 && (s >> 5) == q) out = t;");
            self.out.close();
            self.out.line("return out;");
            self.out.close();
        }
        self.out.line("");
    }

    fn signature(&mut self) {
        let plan = self.plan;
        let mut params: Vec<(String, String)> = vec![(
            "unsigned int n".to_string(),
            "examples in this launch".to_string(),
        )];
        for (i, slot) in plan.slots.iter().enumerate() {
            let s = SlotId(i as u32);
            match slot {
                SlotInput::Index(d) => params.push((
                    format!("const unsigned int* __restrict__ {s}"),
                    format!("slot {s}: a row of `{}` per example", self.domain_name(*d)),
                )),
                SlotInput::Real => params.push((
                    format!("const float* __restrict__ {s}"),
                    format!("slot {s}: a real per example"),
                )),
                SlotInput::Bag(d) => {
                    params.push((
                        format!("const unsigned int* __restrict__ {s}_offsets"),
                        format!(
                            "slot {s}: a bag of `{}` (n + 1 offsets)",
                            self.domain_name(*d)
                        ),
                    ));
                    params.push((
                        format!("const unsigned int* __restrict__ {s}_members"),
                        String::new(),
                    ));
                    params.push((
                        format!("const float* __restrict__ {s}_weights"),
                        String::new(),
                    ));
                }
                SlotInput::Noise { lanes } => params.push((
                    format!("const float* __restrict__ {s}"),
                    format!("slot {s}: {lanes} noise floats per example"),
                )),
            }
        }
        let step = self.optimizer();
        for (i, table) in plan.tables.iter().enumerate() {
            let t = TableId(i as u32);
            let rows = match table.domain {
                Some(d) => format!("a row per `{}`", self.domain_name(d)),
                None => "global".to_string(),
            };
            let constraint = match table.constraint {
                Constraint::None => "",
                Constraint::Ball => ", on ball",
                Constraint::Nonneg => ", nonneg",
            };
            let constness = if step.is_some() { "" } else { "const " };
            params.push((
                format!("{constness}float* {t}"),
                format!(
                    "table {t} `{}`: {rows}, {} float{}{constraint}",
                    table.name,
                    table.lanes,
                    if table.lanes == 1 { "" } else { "s" }
                ),
            ));
            match step {
                None | Some(Optimizer::Sgd) => {}
                Some(Optimizer::Adagrad) => {
                    params.push((format!("float* {t}_first"), "  its sums of squares".into()))
                }
                Some(Optimizer::Adam { .. }) => {
                    params.push((format!("float* {t}_first"), "  its first moments".into()));
                    params.push((format!("float* {t}_second"), "  its second moments".into()));
                    params.push((
                        format!("unsigned int* {t}_steps"),
                        "  its step count per row".into(),
                    ));
                }
            }
            if step.is_some() {
                params.push((
                    format!("unsigned char* {t}_touched"),
                    "  1 for each row this launch updated".into(),
                ));
            }
        }
        for (i, name) in plan.domains.iter().enumerate() {
            params.push((
                format!("unsigned int d{i}_size"),
                format!("rows of domain `{name}`"),
            ));
        }
        params.push((
            "float* __restrict__ scratch".into(),
            "per warp: bag_cap × BAG_LANES floats".into(),
        ));
        params.push((
            "unsigned int bag_cap".into(),
            "the most members of any bag in this launch".into(),
        ));
        match step {
            Some(_) => {
                params.push(("float lr".into(), "the learning rate".into()));
                params.push(("double beta1".into(), "Adam's β₁ (unused otherwise)".into()));
                params.push(("double beta2".into(), "Adam's β₂ (unused otherwise)".into()));
                params.push((
                    "double* loss_total".into(),
                    "each warp adds its examples' losses".into(),
                ));
                params.push((
                    "unsigned int* stopped".into(),
                    "n before the launch; the first example whose loss is not finite".into(),
                ));
            }
            None => params.push((
                "float* __restrict__ scores".into(),
                "the score of each example".into(),
            )),
        }
        self.out.line(format!(
            "extern \"C\" __global__ void {}(",
            kernel_name(self.plan)
        ));
        let last = params.len().saturating_sub(1);
        for (i, (decl, comment)) in params.into_iter().enumerate() {
            let sep = if i == last { "" } else { "," };
            let text = format!("    {decl}{sep}");
            if comment.is_empty() {
                self.out.line(text);
            } else {
                self.out.line(format!("{text:<48} // {comment}"));
            }
        }
        self.out.line(")");
    }

    fn kernel_body(&mut self) {
        self.out.open("");
        self.out
            .line("const unsigned int lane = threadIdx.x & 31u;");
        self.out
            .line("const unsigned int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;");
        self.out
            .line("const unsigned int warps = (gridDim.x * blockDim.x) >> 5;");
        self.out
            .line("float* const warp_scratch = scratch + (size_t)warp * bag_cap * BAG_LANES;");
        self.out.line("(void)warp_scratch;");
        let step = self.optimizer().is_some();
        if step {
            self.out
                .line("double loss_sum = 0.0;  // this warp's examples, added once at the end");
        }
        self.out
            .open("for (unsigned int e = warp; e < n; e += warps)");
        if step {
            self.out.line(
                "// Another warp met a loss that is not finite: stop taking examples after it.",
            );
            self.out
                .line("if (e > *(volatile unsigned int*)stopped) break;");
        }
        for (i, slot) in self.plan.slots.iter().enumerate() {
            if let SlotInput::Bag(_) = slot {
                let s = SlotId(i as u32);
                self.out.line(format!(
                    "const unsigned int {s}_begin = {s}_offsets[e], {s}_len = {s}_offsets[e + 1] - {s}_begin;"
                ));
            }
        }
        let body = &self.plan.body;
        for instr in body {
            self.instr(instr);
        }
        match &self.plan.output {
            Output::Step { loss, updates } => {
                self.out.line("");
                self.out.open(format!("if (!isfinite({loss}))"));
                self.out
                    .line("// As the JIT: no update from this example, and no examples after it.");
                self.out.line("if (lane == 0) atomicMin(stopped, e);");
                self.out.line("break;");
                self.out.close();
                self.out.line(format!("loss_sum += (double){loss};"));
                for update in updates {
                    self.update(update);
                }
            }
            Output::Predict { score } => {
                self.out
                    .line(format!("if (lane == 0) scores[e] = {score};"));
            }
        }
        self.out.close();
        if step {
            self.out
                .line("if (lane == 0 && loss_sum != 0.0) atomicAdd(loss_total, loss_sum);");
        }
        self.out.close();
    }

    fn comment_for(&self, out: ValueId) -> String {
        match self.plan.values.get(out.index()).and_then(|info| info.node) {
            Some(node) => format!("  // {node}"),
            None => String::new(),
        }
    }

    fn instr(&mut self, instr: &Instr) {
        match instr {
            Instr::Let { out, expr } => {
                self.let_(*out, expr);
                self.store_member(*out);
                if let Some(l) = self.loops.last_mut() {
                    l.defined.insert(*out);
                }
            }
            Instr::Accumulate { acc, x } => {
                let regs = self.registers(*acc);
                if regs == 1 && !matches!(self.layout(*acc), Layout::Spread(_)) {
                    self.out.line(format!("{acc} += {};", self.at(*x, 0)));
                } else {
                    for r in 0..regs {
                        self.out.line(format!("{acc}[{r}] += {};", self.at(*x, r)));
                    }
                }
            }
            Instr::ForMembers { slot, body } => self.for_members(*slot, body),
        }
    }

    fn for_members(&mut self, slot: SlotId, body: &[Instr]) {
        let domain = match self.plan.slots.get(slot.index()) {
            Some(SlotInput::Bag(d)) => self.domain_name(*d).to_string(),
            _ => "?".to_string(),
        };
        self.out.line(format!(
            "// Each member of bag {slot} (`{domain}`), the whole warp together."
        ));
        self.out.open(format!(
            "for (unsigned int {slot}_i = 0; {slot}_i < {slot}_len; ++{slot}_i)"
        ));
        let (rows, weights) = body
            .iter()
            .fold((false, false), |(r, w), instr| match instr {
                Instr::Let {
                    expr: Expr::MemberRow { .. },
                    ..
                } => (true, true),
                Instr::Let {
                    expr: Expr::MemberWeight,
                    ..
                } => (r, true),
                _ => (r, w),
            });
        if rows {
            self.out.line(format!(
                "const unsigned int {slot}_member = {slot}_members[{slot}_begin + {slot}_i];"
            ));
        }
        if weights {
            self.out.line(format!(
                "const float {slot}_weight = {slot}_weights[{slot}_begin + {slot}_i];"
            ));
        }
        // Per-member values of an earlier loop over this bag come back from scratch.
        let mut defined_here = BTreeSet::new();
        let mut used = BTreeSet::new();
        walk(body, &mut |instr| match instr {
            Instr::Let { out, expr } => {
                defined_here.insert(*out);
                used.extend(operands(expr));
            }
            Instr::Accumulate { x, .. } => {
                used.insert(*x);
            }
            Instr::ForMembers { .. } => {}
        });
        for v in used.difference(&defined_here) {
            let info = self.plan.values.get(v.index()).copied();
            if let Some(info) = info {
                if info.member_of == Some(slot) {
                    self.load_member(*v, slot);
                }
            }
        }
        self.loops.push(Loop {
            slot,
            defined: BTreeSet::new(),
        });
        for instr in body {
            self.instr(instr);
        }
        self.loops.pop();
        self.out.close();
    }

    /// Scratch of member `index` of the bag for value `v`'s region.
    fn scratch_at(&self, v: ValueId, index: &str) -> Option<String> {
        let offset = self.plan.values.get(v.index())?.scratch?;
        Some(format!(
            "warp_scratch[(size_t){index} * BAG_LANES + {offset}u"
        ))
    }

    fn store_member(&mut self, v: ValueId) {
        let Some(slot) = self.loops.last().map(|l| l.slot) else {
            return;
        };
        let index = format!("{slot}_i");
        let Some(base) = self.scratch_at(v, &index) else {
            return;
        };
        match self.layout(v) {
            Layout::Spread(n) => {
                for r in 0..self.registers(v) {
                    let store = format!("{base} + {}] = {v}[{r}];", element(r));
                    self.guarded(in_bounds(r, n), store);
                }
            }
            // Every lane writes the same value, so each later reads back its own write.
            _ => self.out.line(format!("{base}] = {v};")),
        }
    }

    fn load_member(&mut self, v: ValueId, slot: SlotId) {
        let index = format!("{slot}_i");
        let Some(base) = self.scratch_at(v, &index) else {
            self.out.line(format!(
                "// {v} is needed here but has no scratch (a plan error)"
            ));
            return;
        };
        match self.layout(v) {
            Layout::Spread(n) => {
                let regs = self.registers(v);
                self.out
                    .line(format!("float {v}[{regs}];  // from scratch"));
                for r in 0..regs {
                    let value = format!("{base} + {}]", element(r));
                    match in_bounds(r, n) {
                        None => self.out.line(format!("{v}[{r}] = {value};")),
                        Some(c) => self.out.line(format!("{v}[{r}] = {c} ? {value} : 0.0f;")),
                    }
                }
            }
            _ => self
                .out
                .line(format!("const float {v} = {base}];  // from scratch")),
        }
    }

    fn guarded(&mut self, cond: Option<String>, stmt: String) {
        match cond {
            Some(c) => self.out.line(format!("if ({c}) {stmt}")),
            None => self.out.line(stmt),
        }
    }

    /// Declares `out` and fills each register with `value(r)`, zero in the padding lanes.
    fn spread(&mut self, out: ValueId, n: usize, comment: &str, value: impl Fn(usize) -> String) {
        let regs = n.div_ceil(WARP);
        self.out.line(format!("float {out}[{regs}];{comment}"));
        for r in 0..regs {
            let v = value(r);
            match in_bounds(r, n) {
                None => self.out.line(format!("{out}[{r}] = {v};")),
                Some(c) => self.out.line(format!("{out}[{r}] = {c} ? {v} : 0.0f;")),
            }
        }
    }

    /// Declares a numeric `out` of its layout from an element formula.
    fn numeric(&mut self, out: ValueId, comment: &str, value: impl Fn(usize) -> String) {
        match self.layout(out) {
            Layout::Spread(n) => self.spread(out, n, comment, value),
            _ => self
                .out
                .line(format!("const float {out} = {};{comment}", value(0))),
        }
    }

    fn let_(&mut self, out: ValueId, expr: &Expr) {
        let c = self.comment_for(out);
        // The element register `r` of `out` holds: a scalar is element 0 in every lane.
        let spread = matches!(self.layout(out), Layout::Spread(_));
        let el = move |r: usize| if spread { element(r) } else { "0u".to_string() };
        match expr {
            Expr::Const(x) => self.numeric(out, &c, |_| float(*x)),
            Expr::Zeros => match self.layout(out) {
                Layout::Spread(n) => {
                    let regs = n.div_ceil(WARP);
                    let zeros = vec!["0.0f"; regs].join(", ");
                    self.out
                        .line(format!("float {out}[{regs}] = {{{zeros}}};{c}"));
                }
                _ => self.out.line(format!("float {out} = 0.0f;{c}")),
            },
            Expr::Input(slot) => {
                let s = *slot;
                match self.plan.slots.get(s.index()) {
                    Some(SlotInput::Index(_)) => {
                        self.out
                            .line(format!("const unsigned int {out} = {s}[e];{c}"));
                        self.out.line(format!("const bool {out}_ok = true;"));
                    }
                    Some(SlotInput::Real) => {
                        self.out.line(format!("const float {out} = {s}[e];{c}"))
                    }
                    Some(SlotInput::Bag(_)) => {
                        let note = c.trim_start().trim_start_matches("// ");
                        let at = if note.is_empty() {
                            String::new()
                        } else {
                            format!(" ({note})")
                        };
                        self.out.line(format!(
                            "// {out}{at}: the members of bag {s}, {s}_begin .. {s}_begin + {s}_len"
                        ))
                    }
                    Some(SlotInput::Noise { lanes }) => {
                        let lanes = *lanes;
                        self.numeric(out, &c, |r| {
                            format!("{s}[(size_t)e * {lanes}u + {}]", el(r))
                        })
                    }
                    None => self.out.line(format!(
                        "// {out}: slot {s} is not in the plan (a plan error)"
                    )),
                }
            }
            Expr::Shift { index, by, domain } => {
                let d = domain.index();
                self.out.line(format!(
                    "const long long {out}_at = (long long){index} + ({by}LL);{c}"
                ));
                self.out.line(format!(
                    "const bool {out}_ok = {index}_ok && {out}_at >= 0 && {out}_at < (long long)d{d}_size;"
                ));
                self.out.line(format!(
                    "const unsigned int {out} = {out}_ok ? (unsigned int){out}_at : 0u;"
                ));
            }
            Expr::InRange(index) => self
                .out
                .line(format!("const float {out} = {index}_ok ? 1.0f : 0.0f;{c}")),
            Expr::Load { table, row } => {
                let lanes = self.table_lanes(*table);
                let name = self.table_name(*table).to_string();
                let c = with_note(&c, &format!("`{name}`"));
                let t = *table;
                match row {
                    Some(row) => {
                        let row = *row;
                        self.numeric(out, &c, |r| {
                            format!(
                                "({row}_ok ? {} : 0.0f)",
                                row_element(t, &row.to_string(), lanes, &el(r))
                            )
                        })
                    }
                    None => self.numeric(out, &c, |r| format!("{t}[{}]", el(r))),
                }
            }
            Expr::MemberRow { table } => {
                let slot = self.loops.last().map_or(SlotId(0), |l| l.slot);
                let lanes = self.table_lanes(*table);
                let name = self.table_name(*table).to_string();
                let c = with_note(&c, &format!("`{name}` of the member, weighted"));
                let t = *table;
                self.numeric(out, &c, |r| {
                    format!(
                        "{slot}_weight * {}",
                        row_element(t, &format!("{slot}_member"), lanes, &el(r))
                    )
                })
            }
            Expr::MemberWeight => {
                let slot = self.loops.last().map_or(SlotId(0), |l| l.slot);
                self.out
                    .line(format!("const float {out} = {slot}_weight;{c}"));
            }
            Expr::BagLen(slot) => self.out.line(format!(
                "const float {out} = (float)({slot}_len > 1u ? {slot}_len : 1u);{c}"
            )),
            Expr::Unary(f, x) => {
                let (name, _) = unary_helper(*f);
                let x = *x;
                let operand = |r| self.at(x, r);
                let values: Vec<String> = (0..self.registers(out))
                    .map(|r| format!("recc_{name}({})", operand(r)))
                    .collect();
                self.numeric(out, &c, |r| values[r].clone())
            }
            Expr::Binary(f, a, b) => {
                let values: Vec<String> = (0..self.registers(out))
                    .map(|r| binary(*f, &self.at(*a, r), &self.at(*b, r)))
                    .collect();
                self.numeric(out, &c, |r| values[r].clone())
            }
            Expr::Broadcast { x, .. } => {
                let x = *x;
                self.numeric(out, &c, |_| x.to_string())
            }
            Expr::Extract { x, index } => {
                let value = match self.layout(*x) {
                    // One shuffle from the lane and register that hold the element.
                    Layout::Spread(_) => format!(
                        "__shfl_sync(FULL_MASK, {x}[{}], {})",
                        index / WARP,
                        index % WARP
                    ),
                    _ => x.to_string(),
                };
                self.out.line(format!("const float {out} = {value};{c}"));
            }
            Expr::Copy(x) if matches!(self.layout(*x), Layout::Row(_)) => {
                self.out.line(format!("const unsigned int {out} = {x};{c}"));
                self.out.line(format!("const bool {out}_ok = {x}_ok;"));
            }
            Expr::Copy(x) => {
                let values: Vec<String> =
                    (0..self.registers(out)).map(|r| self.at(*x, r)).collect();
                self.numeric(out, &c, |r| values[r].clone())
            }
            Expr::Partial(partial) => self.partial(out, *partial, &c),
            Expr::Butterfly { x, op } => {
                let f = match op {
                    Combine::Sum => "warp_sum",
                    Combine::Max => "warp_max",
                };
                self.out.line(format!("const float {out} = {f}({x});{c}"));
            }
            Expr::Move { len, pieces } => self.move_(out, *len, pieces, &c),
        }
    }

    fn partial(&mut self, out: ValueId, partial: Partial, c: &str) {
        let (first, init) = match partial {
            Partial::Dot(a, _) | Partial::Sum(a) => (a, "0.0f".to_string()),
            Partial::Max(a) => (a, float(f32::NEG_INFINITY)),
        };
        let n = match partial {
            Partial::Dot(a, b) => self
                .layout(a)
                .elements()
                .max(self.layout(b).elements())
                .unwrap_or(1),
            _ => self.layout(first).elements().unwrap_or(1),
        };
        self.out.line(format!("float {out} = {init};{c}"));
        for r in 0..n.div_ceil(WARP) {
            let stmt = match partial {
                Partial::Dot(a, b) => {
                    format!("{out} += {} * {};", self.at(a, r), self.at(b, r))
                }
                Partial::Sum(a) => format!("{out} += {};", self.at(a, r)),
                Partial::Max(a) => {
                    let x = self.at(a, r);
                    format!("{out} = {x} > {out} ? {x} : {out};")
                }
            };
            // A scalar operand is one element, held by lane 0.
            let cond = if n == 1 {
                Some("lane == 0".to_string())
            } else {
                in_bounds(r, n)
            };
            self.guarded(cond, stmt);
        }
    }

    fn move_(&mut self, out: ValueId, len: usize, pieces: &[Piece], c: &str) {
        let regs = len.div_ceil(WARP);
        self.out.line(format!(
            "float {out}[{regs}] = {{{}}};{c}",
            vec!["0.0f"; regs].join(", ")
        ));
        for piece in pieces {
            let src = piece.src;
            let shift = piece.src_start as i64 - piece.dst_start as i64;
            self.out.line(format!(
                "// {out}[{}..{}] = {src}[{}..{}]",
                piece.dst_start,
                piece.dst_start + piece.len,
                piece.src_start,
                piece.src_start + piece.len
            ));
            for r in 0..regs {
                let k = element(r);
                let end = piece.dst_start + piece.len;
                let cond = if piece.dst_start == 0 {
                    format!("{k} < {end}u")
                } else {
                    format!("{k} >= {}u && {k} < {end}u", piece.dst_start)
                };
                match self.layout(src) {
                    Layout::Spread(_) => {
                        if shift.rem_euclid(WARP as i64) == 0 {
                            // The element stays in its lane: no shuffle.
                            let q = r as i64 + shift / WARP as i64;
                            if q >= 0 && (q as usize) < self.registers(src) {
                                self.out
                                    .line(format!("if ({cond}) {out}[{r}] = {src}[{q}];"));
                            }
                        } else {
                            self.out.open("");
                            self.out.line(format!(
                                "const float moved = warp_element({src}, (int){k} + ({shift}));"
                            ));
                            self.out.line(format!("if ({cond}) {out}[{r}] = moved;"));
                            self.out.close();
                        }
                    }
                    _ => {
                        // A scalar is a one-element vector: it lands at `dst_start`.
                        if piece.src_start == 0 && piece.len >= 1 {
                            let at = piece.dst_start;
                            if at / WARP == r {
                                self.out
                                    .line(format!("if ({k} == {at}u) {out}[{r}] = {src};"));
                            }
                        }
                    }
                }
            }
        }
    }

    fn update(&mut self, update: &Update) {
        let t = update.table();
        let name = self.table_name(t).to_string();
        self.out.line("");
        match update {
            Update::Global { grad, steps, .. } => {
                self.out
                    .line(format!("// Update the global `{name}` ({t})."));
                self.out.open("");
                self.apply(t, "0u", &[(*grad, None)], steps);
                self.out.close();
            }
            Update::Row {
                row,
                grad,
                also,
                unless,
                steps,
                ..
            } => {
                self.out
                    .line(format!("// Update row {row} of `{name}` ({t})."));
                let mut cond = format!("{row}_ok");
                for u in unless {
                    // That index names the same row and applies the summed gradient.
                    let _ = write!(cond, " && !({u}_ok && {u} == {row})");
                }
                self.out.open(format!("if ({cond})"));
                let mut grads = vec![(*grad, None)];
                grads.extend(also.iter().map(|(r, g)| (*g, Some(*r))));
                self.apply(t, &row.to_string(), &grads, steps);
                self.out.close();
            }
            Update::BagRows {
                slot, grad, steps, ..
            } => {
                self.out.line(format!(
                    "// Update `{name}` ({t}) at each member of bag {slot}, one after another."
                ));
                self.out.open(format!(
                    "for (unsigned int {slot}_i = 0; {slot}_i < {slot}_len; ++{slot}_i)"
                ));
                self.out.line(format!(
                    "const unsigned int {slot}_member = {slot}_members[{slot}_begin + {slot}_i];"
                ));
                self.load_member(*grad, *slot);
                self.apply(t, &format!("{slot}_member"), &[(*grad, None)], steps);
                self.out.close();
            }
        }
    }

    /// The row steps on row `row` of table `t`, with the gradient the sum of `grads` (each
    /// counted when its index, if any, names `row`). Lane `j` owns elements `j, j + 32, …`.
    fn apply(
        &mut self,
        t: TableId,
        row: &str,
        grads: &[(ValueId, Option<ValueId>)],
        steps: &[RowStep],
    ) {
        let lanes = self.table_lanes(t);
        let regs = lanes.div_ceil(WARP);
        self.out.line(format!(
            "float* const row = {t} + (size_t){row} * {lanes}u;"
        ));
        self.out.line(format!("float g[{regs}], x[{regs}];"));
        for r in 0..regs {
            let mut sum = self.grad_at(grads[0].0, r);
            for (g, index) in &grads[1..] {
                let part = self.grad_at(*g, r);
                match index {
                    Some(i) => {
                        let _ = write!(sum, " + ({i}_ok && {i} == {row} ? {part} : 0.0f)");
                    }
                    None => {
                        let _ = write!(sum, " + {part}");
                    }
                }
            }
            let k = element(r);
            match in_bounds(r, lanes) {
                None => {
                    self.out.line(format!("g[{r}] = {sum};"));
                    self.out.line(format!("x[{r}] = row[{k}];"));
                }
                Some(c) => {
                    self.out.line(format!("g[{r}] = {c} ? {sum} : 0.0f;"));
                    self.out.line(format!("x[{r}] = {c} ? row[{k}] : 0.0f;"));
                }
            }
        }
        let state = |suffix: &str| format!("{t}_{suffix} + (size_t){row} * {lanes}u");
        for step in steps {
            match step {
                RowStep::BallMetric => {
                    self.out.open("");
                    self.out.line("// The Poincaré metric scales the gradient.");
                    self.norm2("x", regs);
                    self.out
                        .line("const float metric = (1.0f - norm2) * (1.0f - norm2) * 0.25f;");
                    self.each(regs, lanes, "g[r] *= metric;");
                    self.out.close();
                }
                RowStep::Sgd => self.each(regs, lanes, "x[r] -= g[r] * lr;"),
                RowStep::Adagrad => {
                    self.out.open("");
                    self.out
                        .line(format!("float* const sq = {};", state("first")));
                    self.each(
                        regs,
                        lanes,
                        &format!(
                            "{{ const float a = sq[k] + g[r] * g[r]; sq[k] = a; x[r] -= g[r] / (sqrtf(a) + {}) * lr; }}",
                            float(EPSILON)
                        ),
                    );
                    self.out.close();
                }
                RowStep::Adam => {
                    self.out.open("");
                    self.out.line(format!(
                        "float* const m = {}; float* const s = {};",
                        state("first"),
                        state("second")
                    ));
                    self.out.line(
                        "// Count the row's step; every lane reads it before lane 0 writes it.",
                    );
                    self.out
                        .line(format!("const unsigned int t = {t}_steps[{row}] + 1u;"));
                    self.out.line("__syncwarp();");
                    self.out
                        .line(format!("if (lane == 0) {t}_steps[{row}] = t;"));
                    self.out.line(
                        "const float c1 = (float)(1.0 - pow(beta1, (double)t)), c2 = (float)(1.0 - pow(beta2, (double)t));",
                    );
                    self.out.line(
                        "const float b1 = (float)beta1, b2 = (float)beta2, nb1 = 1.0f - b1, nb2 = 1.0f - b2;",
                    );
                    self.each(
                        regs,
                        lanes,
                        &format!(
                            "{{ const float mk = m[k] * b1 + g[r] * nb1; const float sk = s[k] * b2 + g[r] * g[r] * nb2; \
                             m[k] = mk; s[k] = sk; x[r] -= mk / c1 / (sqrtf(sk / c2) + {}) * lr; }}",
                            float(EPSILON)
                        ),
                    );
                    self.out.close();
                }
                RowStep::Nonneg => self.each(regs, lanes, "x[r] = fmaxf(x[r], 0.0f);"),
                RowStep::BallShrink { max_norm } => {
                    self.out.open("");
                    self.out.line("// Pull the row back inside the ball.");
                    self.norm2("x", regs);
                    self.out.line("const float norm = sqrtf(norm2);");
                    let m = float(*max_norm);
                    self.out.open(format!("if (norm >= {m})"));
                    self.out.line(format!("const float f = {m} / norm;"));
                    self.each(regs, lanes, "x[r] *= f;");
                    self.out.close();
                    self.out.close();
                }
                RowStep::Touch => self
                    .out
                    .line(format!("if (lane == 0) {t}_touched[{row}] = 1;")),
            }
        }
        // Written back in place, without locks (batch-Hogwild).
        self.each(regs, lanes, "row[k] = x[r];");
        // Lane 0 alone wrote a one-float row and the step count, which every lane may read
        // next: make the warp's writes visible to the whole warp.
        self.out.line("__syncwarp();");
    }

    fn grad_at(&self, g: ValueId, r: usize) -> String {
        self.at(g, r)
    }

    /// `norm2`: Σ x² over the row, by a butterfly (padding lanes hold 0).
    fn norm2(&mut self, x: &str, regs: usize) {
        self.out.line("float part = 0.0f;");
        for r in 0..regs {
            self.out.line(format!("part += {x}[{r}] * {x}[{r}];"));
        }
        self.out.line("const float norm2 = warp_sum(part);");
    }

    /// `stmt` for each register `r` and its element `k` inside the row's `lanes`.
    fn each(&mut self, regs: usize, lanes: usize, stmt: &str) {
        for r in 0..regs {
            let s = stmt.replace("[r]", &format!("[{r}]"));
            let k = element(r);
            let s = s.replace("[k]", &format!("[{k}]"));
            self.guarded(in_bounds(r, lanes), s);
        }
    }
}
