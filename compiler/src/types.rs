//! Shapes shared by the checked model and the IR.

use std::fmt;

/// The static shape of one value: a scalar, a vector or a matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    Scalar,
    Vec(usize),
    /// Rows, columns; stored row-major.
    Mat(usize, usize),
}

impl Shape {
    /// Number of scalars in one value of this shape.
    pub fn len(self) -> usize {
        match self {
            Shape::Scalar => 1,
            Shape::Vec(n) => n,
            Shape::Mat(r, c) => r * c,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    pub fn is_scalar(self) -> bool {
        self == Shape::Scalar
    }
}

/// `real`, `vec(32)`, `mat(4, 32)`: the spelling of the language.
impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Scalar => write!(f, "real"),
            Shape::Vec(n) => write!(f, "vec({n})"),
            Shape::Mat(r, c) => write!(f, "mat({r}, {c})"),
        }
    }
}

/// Elementwise unary functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnaryFn {
    Neg,
    Exp,
    Log,
    Sqrt,
    Abs,
    Sigmoid,
    LogSigmoid,
    Softplus,
    Tanh,
    Relu,
    /// 1 where x > 0, else 0. Appears in gradients; its own derivative is zero.
    Step,
    /// -1, 0 or 1. Appears in gradients; its own derivative is zero.
    Sign,
}

impl UnaryFn {
    pub fn name(self) -> &'static str {
        match self {
            UnaryFn::Neg => "neg",
            UnaryFn::Exp => "exp",
            UnaryFn::Log => "log",
            UnaryFn::Sqrt => "sqrt",
            UnaryFn::Abs => "abs",
            UnaryFn::Sigmoid => "sigmoid",
            UnaryFn::LogSigmoid => "log_sigmoid",
            UnaryFn::Softplus => "softplus",
            UnaryFn::Tanh => "tanh",
            UnaryFn::Relu => "relu",
            UnaryFn::Step => "step",
            UnaryFn::Sign => "sign",
        }
    }

    /// The function on one scalar. Written to stay finite where the naive
    /// formula overflows (softplus and log-sigmoid of large arguments).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            UnaryFn::Neg => -x,
            UnaryFn::Exp => x.exp(),
            UnaryFn::Log => x.ln(),
            UnaryFn::Sqrt => x.sqrt(),
            UnaryFn::Abs => x.abs(),
            UnaryFn::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            UnaryFn::LogSigmoid => -softplus(-x),
            UnaryFn::Softplus => softplus(x),
            UnaryFn::Tanh => x.tanh(),
            UnaryFn::Relu => x.max(0.0),
            UnaryFn::Step => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            UnaryFn::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
        }
    }
}

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// Elementwise binary functions; a scalar operand broadcasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinaryFn {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

impl BinaryFn {
    pub fn name(self) -> &'static str {
        match self {
            BinaryFn::Add => "add",
            BinaryFn::Sub => "sub",
            BinaryFn::Mul => "mul",
            BinaryFn::Div => "div",
            BinaryFn::Max => "max",
            BinaryFn::Min => "min",
        }
    }

    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinaryFn::Add => a + b,
            BinaryFn::Sub => a - b,
            BinaryFn::Mul => a * b,
            BinaryFn::Div => a / b,
            BinaryFn::Max => {
                if a > b {
                    a
                } else {
                    b
                }
            }
            BinaryFn::Min => {
                if a < b {
                    a
                } else {
                    b
                }
            }
        }
    }
}
