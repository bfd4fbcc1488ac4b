//! The one hand-written optimiser of beamlab: Adam over a flat `f64` parameter vector, for the
//! fast paths that compute their gradients by hand (MB-MAML's `fast` module, GGML's networks,
//! LAGD). Optimisers of candle graphs are candle-nn's, set up in `beamlab-candle-bridge`.
//!
//! The update is PyTorch's / candle-nn's Adam without weight decay, `β = (0.9, 0.999)`,
//! `ε = 1e-8`, bias-corrected:
//!
//! ```text
//! m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,   θ ← θ − lr · (m / c₁) / (√(v / c₂) + ε)
//! ```
//!
//! with `c_i = 1 − β_iᵗ`. Each operation is written in the form of candle's element-wise
//! `affine` (`x·a + b`) and in candle-nn's order, so a parameter updated here and the same
//! parameter updated by `candle_nn::AdamW` with zero decay agree to the last bit (tested in
//! `beamlab-candle-bridge`).
//!
//! ```
//! use beamlab_linalg_ops::optim::Adam;
//! // Minimise (θ − 3)² from θ = 0.
//! let mut theta = [0.0];
//! let mut adam: Adam = Adam::new(1);
//! for _ in 0..2000 {
//!     let g = [2.0 * (theta[0] - 3.0)];
//!     adam.step(&mut theta, &g, 0.05).unwrap();
//! }
//! assert!((theta[0] - 3.0).abs() < 1e-3);
//! ```

use crate::LinalgError;

/// First-moment decay `β₁`.
pub const BETA1: f64 = 0.9;
/// Second-moment decay `β₂`.
pub const BETA2: f64 = 0.999;
/// Denominator offset `ε`.
pub const EPS: f64 = 1e-8;

/// Element types Adam runs in: `f64` (every fast path) and `f32` (candle variables of
/// single-precision networks, updated in their own precision as candle-nn does).
pub trait AdamScalar:
    Copy
    + PartialEq
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::SubAssign
{
    /// Zero.
    const ZERO: Self;
    /// `x` rounded to this type (constants are computed in `f64`, as candle's `affine` does).
    fn from_f64(x: f64) -> Self;
    /// Square root.
    #[must_use]
    fn sqrt(self) -> Self;
}

impl AdamScalar for f64 {
    const ZERO: Self = 0.0;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

impl AdamScalar for f32 {
    const ZERO: Self = 0.0;
    #[allow(clippy::cast_possible_truncation)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

/// Adam moments for one flat parameter vector of element type `T` (`f64` unless stated).
#[derive(Clone, Debug, PartialEq)]
pub struct Adam<T = f64> {
    m: Vec<T>,
    v: Vec<T>,
    t: i32,
}

impl<T: AdamScalar> Adam<T> {
    /// Zero moments for `n` parameters.
    #[must_use]
    pub fn new(n: usize) -> Self {
        Self { m: vec![T::ZERO; n], v: vec![T::ZERO; n], t: 0 }
    }

    /// Number of parameters the moments are shaped for.
    #[must_use]
    pub fn len(&self) -> usize {
        self.m.len()
    }

    /// Whether the moments cover no parameter.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.m.is_empty()
    }

    /// Steps taken so far.
    #[must_use]
    pub fn steps(&self) -> i32 {
        self.t
    }

    /// Clears the moments and the step count (a fresh optimiser of the same size).
    pub fn reset(&mut self) {
        self.m.fill(T::ZERO);
        self.v.fill(T::ZERO);
        self.t = 0;
    }

    /// One step of `theta` (updated in place) along `grads` with learning rate `lr`.
    /// Allocation-free; the arithmetic is in `T`, with the step's constants computed in `f64` and
    /// rounded to `T` once (candle's `affine`).
    ///
    /// # Errors
    /// [`LinalgError::ShapeMismatch`] when `theta` or `grads` does not have [`Adam::len`] entries.
    pub fn step(&mut self, theta: &mut [T], grads: &[T], lr: f64) -> Result<(), LinalgError> {
        if theta.len() != self.m.len() || grads.len() != self.m.len() {
            return Err(LinalgError::ShapeMismatch {
                what: "Adam::step",
                expected: format!("{} parameters and gradients", self.m.len()),
                found: format!("{} parameters, {} gradients", theta.len(), grads.len()),
            });
        }
        self.t += 1;
        let c = |x: f64| T::from_f64(x);
        let (b1, b2, nb1, nb2) = (c(BETA1), c(BETA2), c(1.0 - BETA1), c(1.0 - BETA2));
        let ic1 = c(1.0 / (1.0 - BETA1.powi(self.t)));
        let ic2 = c(1.0 / (1.0 - BETA2.powi(self.t)));
        let (one, eps, lr, zero) = (c(1.0), c(EPS), c(lr), T::ZERO);
        for (((p, &g), m), v) in theta.iter_mut().zip(grads).zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
            // candle's affine form `x·a + 0`, in candle-nn's order.
            *m = (*m * b1 + zero) + (g * nb1 + zero);
            *v = (*v * b2 + zero) + ((g * g) * nb2 + zero);
            let m_hat = *m * ic1 + zero;
            let v_hat = *v * ic2 + zero;
            let upd = m_hat / (v_hat.sqrt() * one + eps);
            *p -= upd * lr + zero;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_every_coordinate_by_the_learning_rate() {
        // With zero moments, the bias-corrected first step is lr · g / (|g| + ε) ≈ lr · sign(g).
        let mut theta = [1.0, -2.0, 0.5];
        let g = [3.0, -0.25, 1e-3];
        let mut adam: Adam = Adam::new(3);
        adam.step(&mut theta, &g, 0.1).unwrap();
        for (i, (t, t0)) in theta.iter().zip([1.0, -2.0, 0.5]).enumerate() {
            let expect = t0 - 0.1 * g[i] / (g[i].abs() + EPS);
            assert!((t - expect).abs() < 1e-12, "{i}: {t} vs {expect}");
        }
        assert_eq!(adam.steps(), 1);
    }

    #[test]
    fn second_step_follows_the_closed_form() {
        let (g1, g2, lr) = (0.4, -1.3, 0.01);
        let mut theta = [0.0];
        let mut adam: Adam = Adam::new(1);
        adam.step(&mut theta, &[g1], lr).unwrap();
        adam.step(&mut theta, &[g2], lr).unwrap();
        let m = BETA1 * (1.0 - BETA1) * g1 + (1.0 - BETA1) * g2;
        let v = BETA2 * (1.0 - BETA2) * g1 * g1 + (1.0 - BETA2) * g2 * g2;
        let (mh, vh) = (m / (1.0 - BETA1 * BETA1), v / (1.0 - BETA2 * BETA2));
        let first = -lr * g1 / (g1.abs() + EPS);
        let expect = first - lr * mh / (vh.sqrt() + EPS);
        assert!((theta[0] - expect).abs() < 1e-14, "{} vs {expect}", theta[0]);
    }

    #[test]
    fn reset_restarts_and_lengths_are_checked() {
        let mut adam: Adam = Adam::new(2);
        let mut theta = [0.0, 0.0];
        adam.step(&mut theta, &[1.0, 1.0], 0.1).unwrap();
        let after_one = theta;
        adam.reset();
        let mut again = [0.0, 0.0];
        adam.step(&mut again, &[1.0, 1.0], 0.1).unwrap();
        assert_eq!(after_one, again);
        assert!(matches!(adam.step(&mut [0.0], &[1.0, 1.0], 0.1), Err(LinalgError::ShapeMismatch { .. })));
        assert!(adam.step(&mut theta, &[1.0], 0.1).is_err());
    }

    #[test]
    fn f32_steps_track_the_f64_steps() {
        let g = [0.3f64, -1.7, 2e-3, 0.0];
        let (mut t64, mut t32) = ([0.5f64, -0.25, 1.0, 0.0], [0.5f32, -0.25, 1.0, 0.0]);
        let (mut a64, mut a32): (Adam, Adam<f32>) = (Adam::new(4), Adam::new(4));
        for k in 0..50 {
            let s = (k as f64 * 0.3).cos();
            let g64: Vec<f64> = g.iter().map(|x| x * s).collect();
            #[allow(clippy::cast_possible_truncation)]
            let g32: Vec<f32> = g64.iter().map(|x| *x as f32).collect();
            a64.step(&mut t64, &g64, 0.01).unwrap();
            a32.step(&mut t32, &g32, 0.01).unwrap();
        }
        for (x, y) in t64.iter().zip(&t32) {
            assert!((x - f64::from(*y)).abs() < 1e-5, "{x} vs {y}");
        }
        assert_eq!(t32[3], 0.0, "a parameter without gradient stays");
    }
}
