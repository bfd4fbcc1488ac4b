//! # beamlab-linalg-ops
//!
//! The numerical core of beamlab: the only crate that touches LAPACK (through ndarray-linalg and
//! OpenBLAS), plus the system-model maths every method shares.
//!
//! - [`decomp`]: Hermitian and generalised Hermitian eigendecompositions, Cholesky and Cholesky
//!   solve, LU solve and inverse, log-determinant, SVD and pseudo-inverse, norms.
//! - [`rates`]: SINR, rate, weighted sum rate and MSE for MU-MIMO users with `N_k ≥ 1` receive
//!   antennas, for digital `W` and hybrid `(F, D)` precoders.
//! - [`grad`]: analytic Wirtinger gradients `∂/∂W*` (and `∂/∂F*`, `∂/∂D*`, `∂/∂X*` by the chain
//!   rule) of rates, weighted sum rate and the variance-penalised losses of GLNN and GGML.
//! - [`project`]: total-power normalisation, unit-modulus projection, constraint checks.
//! - [`small`]: allocation-free factorisations and solves of tiny dense systems (complex,
//!   split-complex and real) for the hot loops where a LAPACK call costs more than the arithmetic.
//! - [`optim`]: the one hand-written optimiser (Adam over a flat `f64` vector) of the fast paths.
//!
//! Conventions: `f64` and [`c64`] (`Complex64`) throughout; a precoder `W` is `[M × K]`
//! (antennas × users); a channel is a slice of per-user blocks `H_k: [N_k × M]`; rates are in
//! bit/s/Hz. Gradients are `∂f/∂W*` (PyTorch's complex `.grad` is twice this).
//!
//! ```
//! use beamlab_linalg_ops::{c64, user_rates, wsr_gradient};
//! use ndarray::array;
//! // One user, two transmit antennas, MRT with power 1: rate = log2(1 + ‖h‖²/σ²).
//! let h = vec![array![[c64::new(1.0, 0.0), c64::new(0.0, 1.0)]]];
//! let w = array![[c64::new(1.0, 0.0)], [c64::new(0.0, -1.0)]].mapv(|z| z / 2f64.sqrt());
//! let r = user_rates(&h, w.view(), &[1.0]).unwrap();
//! assert!((r[0] - 3f64.log2()).abs() < 1e-12);
//! let (wsr, grad) = wsr_gradient(&h, w.view(), &[1.0], &[1.0]).unwrap();
//! assert_eq!(grad.dim(), (2, 1));
//! assert!((wsr - r[0]).abs() < 1e-12);
//! ```

use ndarray::ArrayView2;

pub mod decomp;
pub mod grad;
pub mod optim;
pub mod project;
pub mod rates;
pub mod small;

pub use decomp::{
    Eigen, Svd, cholesky, cholesky_solve, frobenius_norm, generalized_self_adjoint_eigen, inverse, log_det_hpd,
    lu_solve, pinv, self_adjoint_eigen, self_adjoint_eigen_batch, spectral_norm, svd,
};
pub use grad::{
    HybridGradient, LossGradient, PenalisedLoss, base_matrix_chain_rule, hybrid_chain_rule, hybrid_rate_gradient,
    penalised_loss_gradient, power_normalization_chain_rule, rate_gradient, wsr_gradient,
};
pub use project::{
    check_power, check_unit_modulus, normalize_total_power, project_power_ball, project_unit_modulus, total_power,
};
pub use rates::{
    check_system, hybrid_product, hybrid_user_rates, miso_blocks, stack_blocks, user_mmse, user_mse_with_receivers,
    user_rates, user_rates_log_det, user_sinrs, weighted_sum_rate,
};
pub use small::small_hpd_solve;

/// Double-precision complex number, the element type of every channel and precoder.
#[allow(non_camel_case_types)]
pub type c64 = num_complex::Complex64;

/// Errors of the linear-algebra layer: bad input or numerical breakdown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinalgError {
    /// A matrix that must be square is not.
    #[error("{what}: matrix must be square, got {rows}x{cols}")]
    NotSquare {
        /// Operation.
        what: &'static str,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// An input has no entries.
    #[error("{what}: empty input")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// Shapes do not agree.
    #[error("{what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// What was checked.
        what: &'static str,
        /// Expected shape.
        expected: String,
        /// Actual shape.
        found: String,
    },
    /// NaN or infinite entry.
    #[error("{what}: non-finite entry at ({row}, {col})")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Row of the first offending entry.
        row: usize,
        /// Column of the first offending entry.
        col: usize,
    },
    /// A matrix that must be Hermitian positive definite is not.
    #[error("{what}: matrix is not Hermitian positive definite")]
    NotPositiveDefinite {
        /// Operation.
        what: &'static str,
    },
    /// A matrix is singular to working precision.
    #[error("{what}: matrix is singular to working precision")]
    Singular {
        /// Operation.
        what: &'static str,
    },
    /// A scalar parameter is out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The input admits no meaningful result (for example an all-zero precoder to normalise).
    #[error("degenerate input: {0}")]
    Degenerate(String),
    /// A power constraint is violated.
    #[error("power {used} exceeds the budget {budget}")]
    PowerExceeded {
        /// `‖W‖_F²`.
        used: f64,
        /// Budget.
        budget: f64,
    },
    /// An error in one member of a batched call.
    #[error("batch member {index}: {source}")]
    InBatch {
        /// Index in the batch.
        index: usize,
        /// The member's error.
        source: Box<LinalgError>,
    },
    /// LAPACK reported a failure.
    #[error("LAPACK failure: {0}")]
    Lapack(String),
}

pub(crate) fn check_square(a: ArrayView2<'_, c64>, what: &'static str) -> Result<(), LinalgError> {
    if a.is_empty() {
        return Err(LinalgError::Empty { what });
    }
    if a.nrows() != a.ncols() {
        return Err(LinalgError::NotSquare { what, rows: a.nrows(), cols: a.ncols() });
    }
    Ok(())
}

/// Checks that every entry is finite.
///
/// # Errors
/// [`LinalgError::NonFinite`] with the position of the first bad entry.
pub fn check_finite(a: ArrayView2<'_, c64>, what: &'static str) -> Result<(), LinalgError> {
    match a.indexed_iter().find(|(_, z)| !(z.re.is_finite() && z.im.is_finite())) {
        Some(((row, col), _)) => Err(LinalgError::NonFinite { what, row, col }),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::c64;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    pub fn rand_mat(m: usize, n: usize, seed: u64) -> Array2<c64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((m, n), |_| {
            let re: f64 = StandardNormal.sample(&mut rng);
            let im: f64 = StandardNormal.sample(&mut rng);
            c64::new(re, im) * std::f64::consts::FRAC_1_SQRT_2
        })
    }
    pub fn rand_hermitian(n: usize, seed: u64) -> Array2<c64> {
        let a = rand_mat(n, n, seed);
        (&a + &a.t().mapv(|z| z.conj())).mapv(|z| z * 0.5)
    }
    pub fn rand_hpd(n: usize, seed: u64) -> Array2<c64> {
        let a = rand_mat(n, n, seed);
        a.dot(&a.t().mapv(|z| z.conj())) + Array2::<c64>::eye(n) * c64::from(0.1)
    }
    pub fn rand_blocks(k: usize, nk: usize, m: usize, seed: u64) -> Vec<Array2<c64>> {
        (0..k).map(|i| rand_mat(nk, m, seed * 1000 + i as u64)).collect()
    }
    pub fn max_abs(a: &Array2<c64>) -> f64 {
        a.iter().map(|z| z.norm()).fold(0.0, f64::max)
    }
}

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
