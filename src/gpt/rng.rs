//! Python-compatible random numbers: CPython's `random` module, bit for bit.
//!
//! The reference (microgpt.py) seeds `random` once and then shuffles the documents, draws every
//! initial weight with `gauss`, and draws each sampled token with `choices`. Reproducing those
//! streams exactly is what lets the default run print the reference's numbers and names.
//! The generator itself is MT19937 from `rand_mt`; only the few functions on top live here.
//! Deliberately left out: everything of `random` that microgpt.py does not call.

use rand_mt::Mt;

/// CPython's `random.Random`, restricted to what the reference uses.
#[derive(Clone)]
pub struct PyRandom {
    mt: Mt,
    /// `gauss` computes two normals at a time and keeps the second for the next call.
    gauss_next: Option<f64>,
}

impl PyRandom {
    /// `random.seed(seed)`: `init_by_array` with the seed's 32-bit words, least significant
    /// first (0 gives the key `[0]`).
    pub fn new(seed: u64) -> Self {
        let key: Vec<u32> = if seed >> 32 == 0 { vec![seed as u32] } else { vec![seed as u32, (seed >> 32) as u32] };
        Self { mt: Mt::new_with_key(key), gauss_next: None }
    }

    /// `random()`: a float in [0, 1) with 53 random bits.
    pub fn random(&mut self) -> f64 {
        let a = (self.mt.next_u32() >> 5) as f64;
        let b = (self.mt.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `getrandbits(k)` for 1 <= k <= 32.
    fn getrandbits(&mut self, k: u32) -> u32 {
        debug_assert!((1..=32).contains(&k));
        self.mt.next_u32() >> (32 - k)
    }

    /// `_randbelow(n)`: uniform in [0, n) by rejection sampling on `bit_length(n)` bits.
    pub fn randbelow(&mut self, n: u32) -> u32 {
        assert!(n > 0, "randbelow needs a positive bound");
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `shuffle(x)`: Fisher-Yates from the end, as CPython does it.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let bound = u32::try_from(i + 1).expect("shuffle supports at most 2^32 items");
            let j = self.randbelow(bound) as usize;
            x.swap(i, j);
        }
    }

    /// `gauss(mu, sigma)`: Box-Muller, caching the second value.
    pub fn gauss(&mut self, mu: f64, sigma: f64) -> f64 {
        let z = match self.gauss_next.take() {
            Some(z) => z,
            None => {
                let x2pi = self.random() * std::f64::consts::TAU;
                let g2rad = (-2.0 * (1.0 - self.random()).ln()).sqrt();
                self.gauss_next = Some(x2pi.sin() * g2rad);
                x2pi.cos() * g2rad
            }
        };
        mu + z * sigma
    }

    /// `choices(range(len(weights)), weights=weights)[0]`: one weighted draw. Refuses, as
    /// CPython does, weights whose total is not finite (a NaN or an infinity among them) or not
    /// above zero, rather than returning the first index.
    pub fn choices(&mut self, weights: &[f64]) -> Result<usize, ChoicesError> {
        let mut cum = Vec::with_capacity(weights.len());
        let mut total = 0.0;
        for w in weights {
            total += w;
            cum.push(total);
        }
        if !total.is_finite() {
            return Err(ChoicesError::NotFinite);
        }
        if total <= 0.0 {
            return Err(ChoicesError::NotPositive);
        }
        let x = self.random() * total;
        // bisect_right(cum, x, 0, n - 1)
        Ok(cum[..weights.len() - 1].partition_point(|&c| c <= x))
    }
}

/// Why [`PyRandom::choices`] cannot draw: CPython's two `ValueError`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChoicesError {
    /// "Total of weights must be finite".
    NotFinite,
    /// "Total of weights must be greater than zero" (also: no weights at all).
    NotPositive,
}

impl std::fmt::Display for ChoicesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChoicesError::NotFinite => "the total of the weights is not finite",
            ChoicesError::NotPositive => "the total of the weights is not above zero",
        })
    }
}

impl std::error::Error for ChoicesError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_matches_cpython_seed_42() {
        // python3 -c "import random; random.seed(42); print([random.random() for _ in range(3)])"
        let mut r = PyRandom::new(42);
        let got: Vec<f64> = (0..3).map(|_| r.random()).collect();
        assert_eq!(got, [0.6394267984578837, 0.025010755222666936, 0.27502931836911926]);
    }

    #[test]
    fn randbelow_and_shuffle_match_cpython() {
        // python3 -c "import random; random.seed(1); x=list(range(10)); random.shuffle(x); print(x)"
        let mut r = PyRandom::new(1);
        let mut x: Vec<u32> = (0..10).collect();
        r.shuffle(&mut x);
        assert_eq!(x, [6, 8, 9, 7, 5, 3, 0, 4, 1, 2]);
    }

    #[test]
    fn gauss_matches_cpython() {
        // python3 -c "import random; random.seed(42); print([random.gauss(0, 1) for _ in range(3)])"
        let mut r = PyRandom::new(42);
        let got: Vec<f64> = (0..3).map(|_| r.gauss(0.0, 1.0)).collect();
        assert_eq!(got, [-0.14409032957792836, -0.1729036003315193, -0.11131586156766246]);
    }

    #[test]
    fn choices_is_bisect_right_on_running_sums() {
        // python3 -c "import random; random.seed(7); print([random.choices(range(3), weights=[0.2,0.5,0.3])[0] for _ in range(10)])"
        let mut r = PyRandom::new(7);
        let got: Vec<usize> = (0..10).map(|_| r.choices(&[0.2, 0.5, 0.3]).unwrap()).collect();
        assert_eq!(got, [1, 0, 1, 0, 1, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn choices_refuses_what_cpython_refuses() {
        // CPython: ValueError('Total of weights must be finite') / '... greater than zero'
        let mut r = PyRandom::new(7);
        assert_eq!(r.choices(&[0.2, f64::NAN, 0.3]), Err(ChoicesError::NotFinite));
        assert_eq!(r.choices(&[f64::INFINITY, 1.0]), Err(ChoicesError::NotFinite));
        assert_eq!(r.choices(&[0.0, 0.0]), Err(ChoicesError::NotPositive));
        assert_eq!(r.choices(&[]), Err(ChoicesError::NotPositive));
        // a refusal draws nothing: the stream goes on as if it had not been asked
        assert_eq!(r.choices(&[0.2, 0.5, 0.3]), Ok(1));
    }

    #[test]
    fn large_seeds_use_two_key_words() {
        // python3 -c "import random; random.seed(2**32 + 5); print(random.random())"
        let mut r = PyRandom::new((1 << 32) + 5);
        assert_eq!(r.random(), 0.15727238718789782);
    }
}
