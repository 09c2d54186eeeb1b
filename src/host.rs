//! What the loops on the host share (the CPU's own operations, Adam's update, adding and
//! clipping gradients): the float types they run in, and the size of the pieces they split
//! their numbers into over the cores.

use core::ops::{Add, Div, Mul, Sub};

use burn::tensor::Element;

/// Numbers per piece of the host loops over a parameter or a gradient: enough to be worth a
/// core, and a fixed split, so that sums come out the same on every run.
pub const PIECE: usize = 1 << 14;

/// The float types the host loops run in: f32 and f64.
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Element
    + bytemuck::Pod
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    /// `x` rounded to this type.
    fn of(x: f64) -> Self;
    /// The square root.
    fn sqrt(self) -> Self;
    /// `e` to the power of this number.
    fn exp(self) -> Self;
    /// The hyperbolic tangent.
    fn tanh(self) -> Self;
    /// This number as an f64 (exact).
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn to_f64(self) -> f64 {
        self
    }
}
