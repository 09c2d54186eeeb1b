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
    /// `e` to the power of this number: libm's in f64; in f32 Cephes' `expf` (a polynomial of
    /// the remainder after whole multiples of ln 2, then the exponent's bits), within 2 ulp
    /// of the true value, which needs no call into libm and so runs in vector registers; above
    /// 88.72 it stays at about 3.4e38 instead of overflowing to infinity (its callers pass
    /// `x - max <= 0`), and NaN stays NaN.
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
    #[inline(always)]
    fn exp(self) -> Self {
        // e^x = 2^n e^r with n = round(x / ln 2) and |r| <= ln 2 / 2 (ln 2 in two parts, so r is
        // exact); 2^n in two factors, so that n may reach into the subnormals and up to 128
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2: (f32, f32) = (0.693_359_4, -2.121_944_4e-4);
        const P: [f32; 6] = [1.987_569_1e-4, 1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
        const ROUND: f32 = 12_582_912.0; // 1.5 x 2^23: adding it rounds to a whole number
        let x = self.clamp(-104.0, 88.72); // e^x rounds to 0 below, overflows above; NaN stays
        let rounded = x * LOG2E + ROUND; // n in its last bits, read without a cast (which would not vectorize)
        let n = rounded - ROUND;
        let r = x - n * LN2.0 - n * LN2.1;
        let p = P.iter().fold(0.0, |p, &c| p * r + c);
        let e_r = p * r * r + r + 1.0;
        let n = (rounded.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
        let two_to = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
        e_r * two_to(n >> 1) * two_to(n - (n >> 1))
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

    /// The f32 exp is within 2 ulp of the true value from -87 to 88.7 (two million points), ends
    /// in 0 and f32's largest numbers, and keeps NaN.
    #[test]
    fn the_f32_exp_is_within_two_ulp() {
        let worst = (0..=2_000_000)
            .map(|i| (-87.0 + 175.7 * i as f64 / 2e6) as f32)
            .map(|x| {
                let truth = (x as f64).exp();
                let ulp = f64::from(f32::EPSILON) * f64::from(2f32.powi(truth.log2().floor() as i32));
                (Real::exp(x) as f64 - truth).abs() / ulp
            })
            .fold(0.0, f64::max);
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(Real::exp(0.0f32), 1.0);
        assert!(Real::exp(-200.0f32) < 1e-44 && Real::exp(-200.0f32) >= 0.0);
        assert!(Real::exp(89.0f32) > 3e38 && Real::exp(89.0f32).is_finite());
        assert!(Real::exp(f32::NAN).is_nan());
    }
}
