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
    /// The hyperbolic tangent: libm's in f64; in f32 a rational approximation (Eigen's
    /// `generic_fast_tanh_float`), within 5e-7 of the true value, which needs no call into libm
    /// and so runs in vector registers.
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
        // odd numerator and even denominator, in x², for x clamped to where tanh rounds to ±1
        const ALPHA: [f32; 7] = [
            4.893_524_6e-3,
            6.372_619_3e-4,
            1.485_722_4e-5,
            5.122_297e-8,
            -8.604_672e-11,
            2.000_188e-13,
            -2.760_768_5e-16,
        ];
        const BETA: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347e-4, 1.198_258_4e-6];
        const CLAMP: f32 = 7.905_311;
        let x = self.clamp(-CLAMP, CLAMP);
        let x2 = x * x;
        let p = ALPHA.iter().rev().fold(0.0, |p, &a| p * x2 + a) * x;
        let q = BETA.iter().rev().fold(0.0, |q, &b| q * x2 + b);
        p / q
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The f32 tanh is within 5e-7 of the true value everywhere (checked against f64's at a
    /// million points from -12 to 12), odd, and ±1 far out.
    #[test]
    fn the_f32_tanh_is_within_its_bound() {
        let worst = (0..=1_000_000)
            .map(|i| -12.0 + 24.0 * i as f64 / 1e6)
            .map(|x| (Real::tanh(x as f32) as f64 - (x as f32 as f64).tanh()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 5e-7, "{worst}");
        assert_eq!(Real::tanh(-0.3f32), -Real::tanh(0.3f32));
        assert!((Real::tanh(50.0f32) - 1.0).abs() < 1e-6 && Real::tanh(0.0f32) == 0.0);
    }
}
