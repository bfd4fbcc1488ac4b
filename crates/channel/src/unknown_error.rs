//! Unknown-statistics CSI error of MB-MAML (spec `mbmaml-offline-online.md` §1): per coherence
//! block the transmitter sees `N` noisy samples of each user's MISO channel and nothing else.
//!
//! System model, user `k`, one block (`M` transmit antennas, column convention: the received
//! signal is `h_kᴴ v`, so `h_k = H_k[0, :]ᴴ` for a `[1 × M]` channel block):
//!
//! ```text
//! R_e,k = Q Λ_k Qᴴ,  Q: [M × M] Haar unitary (one per experiment), Λ_k = diag(λ_k,1..M)
//! tr R_e,k = ‖h_k‖² 10^{−γ_dB/10}                  (error level γ = ‖h‖/‖e‖ in dB)
//! ĥ_k,n = h_k + e_k,n,   e_k,n = Q Λ_k^{1/2} z,  z ~ CN(0, I),   n = 1..N
//! h̄_k = (1/N) Σ_n ĥ_k,n,   R^S_k = (1/N) Σ_n (ĥ_k,n − h̄_k)(ĥ_k,n − h̄_k)ᴴ
//! ```
//!
//! Eigenvalue laws ([`EigenProfile`]): ex-Gaussian `λ = max(floor, g + x)`, `g ~ N(0, 0.3²)`,
//! `x ~ Exp(1)` (the paper's "exponential-Gaussian", spec decision), or log-normal. `N = 1` gives
//! `R^S = 0` (documented fallback: the sample covariance is simply zero, which robust WMMSE
//! treats as "no error information").

use beamlab_core::Channel;
use ndarray::{Array1, Array2};
use num_complex::Complex64 as c64;
use rand::Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};

use crate::{ChannelError, standard_complex_normal};

/// Law of the per-block error eigenvalues (before the trace rescaling).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EigenProfile {
    /// `λ = max(floor, g + x)`, `g ~ N(0, gauss_std²)`, `x ~ Exp(mean exp_mean)`.
    ExGaussian {
        /// Standard deviation of the Gaussian part (spec: 0.3).
        gauss_std: f64,
        /// Mean of the exponential part (spec: 1).
        exp_mean: f64,
    },
    /// `λ = exp(σ z)`, `z ~ N(0, 1)` (an out-of-distribution law).
    LogNormal {
        /// `σ` of the log.
        sigma: f64,
    },
}

impl Default for EigenProfile {
    fn default() -> Self {
        Self::ExGaussian { gauss_std: 0.3, exp_mean: 1.0 }
    }
}

/// Parameters of the unknown-statistics error model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnknownErrorParams {
    /// Samples per block `N` (spec: 2; `N = 1` gives a zero sample covariance).
    pub n_samples: usize,
    /// Error level `γ = 10 log10(‖h‖² / tr R_e)` in dB (0 dB: error as strong as the channel).
    pub error_level_db: f64,
    /// Eigenvalue law.
    pub profile: EigenProfile,
    /// Floor of the eigenvalues before rescaling (spec: 1e-3).
    pub eigen_floor: f64,
}

impl Default for UnknownErrorParams {
    fn default() -> Self {
        Self { n_samples: 2, error_level_db: 0.0, profile: EigenProfile::default(), eigen_floor: 1e-3 }
    }
}

impl UnknownErrorParams {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for `n_samples = 0`, a non-finite level, a negative or
    /// non-finite profile parameter or floor.
    pub fn check(&self) -> Result<(), ChannelError> {
        let bad = |m: String| Err(ChannelError::InvalidParameter(m));
        if self.n_samples == 0 {
            return bad("unknown-statistics error needs n_samples >= 1".into());
        }
        if !self.error_level_db.is_finite() {
            return bad(format!("error level must be finite, got {} dB", self.error_level_db));
        }
        if !(self.eigen_floor.is_finite() && self.eigen_floor > 0.0) {
            return bad(format!("eigenvalue floor must be finite and > 0, got {}", self.eigen_floor));
        }
        let ok = match self.profile {
            EigenProfile::ExGaussian { gauss_std, exp_mean } => {
                gauss_std.is_finite() && gauss_std >= 0.0 && exp_mean.is_finite() && exp_mean > 0.0
            }
            EigenProfile::LogNormal { sigma } => sigma.is_finite() && sigma >= 0.0,
        };
        if !ok {
            return bad(format!("invalid eigenvalue profile {:?}", self.profile));
        }
        Ok(())
    }
}

/// A Haar-distributed `n × n` unitary: modified Gram–Schmidt QR of a `CN(0, 1)` matrix with the
/// phases fixed so that `diag(R) > 0` (which is what makes the law Haar).
///
/// # Errors
/// [`ChannelError::InvalidParameter`] for `n = 0`.
pub fn haar_unitary<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Result<Array2<c64>, ChannelError> {
    if n == 0 {
        return Err(ChannelError::InvalidParameter("Haar unitary needs n >= 1".into()));
    }
    let mut q = Array2::from_shape_fn((n, n), |_| standard_complex_normal(rng));
    for j in 0..n {
        for i in 0..j {
            let proj: c64 = (0..n).map(|r| q[[r, i]].conj() * q[[r, j]]).sum();
            for r in 0..n {
                let qi = q[[r, i]];
                q[[r, j]] -= proj * qi;
            }
        }
        let norm = (0..n).map(|r| q[[r, j]].norm_sqr()).sum::<f64>().sqrt();
        // A CN(0,1) matrix is full rank with probability one.
        for r in 0..n {
            q[[r, j]] /= norm;
        }
    }
    Ok(q)
}

/// Draws `m` eigenvalues of the given law (before trace rescaling).
pub fn sample_eigenvalues<R: Rng + ?Sized>(params: &UnknownErrorParams, m: usize, rng: &mut R) -> Array1<f64> {
    Array1::from_shape_fn(m, |_| match params.profile {
        EigenProfile::ExGaussian { gauss_std, exp_mean } => {
            let g: f64 = StandardNormal.sample(rng);
            let x: f64 = Exp1.sample(rng);
            (gauss_std * g + exp_mean * x).max(params.eigen_floor)
        }
        EigenProfile::LogNormal { sigma } => {
            let z: f64 = StandardNormal.sample(rng);
            (sigma * z).exp().max(params.eigen_floor)
        }
    })
}

/// `Q diag(λ) Qᴴ`.
#[must_use]
pub fn compose_covariance(q: &Array2<c64>, lambda: &Array1<f64>) -> Array2<c64> {
    let ql = Array2::from_shape_fn(q.raw_dim(), |(i, j)| q[[i, j]] * lambda[j]);
    ql.dot(&q.t().mapv(|z| z.conj()))
}

/// One user's draw of one block.
#[derive(Clone, Debug, PartialEq)]
pub struct UserErrorBlock {
    /// True channel `h_k: [M]` (column convention).
    pub h_true: Array1<c64>,
    /// Eigenvalues of `R_e,k` (after the trace rescaling), shape `[M]`.
    pub eigenvalues: Array1<f64>,
    /// True error covariance `R_e,k = Q Λ_k Qᴴ: [M × M]`.
    pub error_covariance: Array2<c64>,
    /// The `N` samples `ĥ_k,n`, each `[M]`.
    pub samples: Vec<Array1<c64>>,
    /// Sample mean `h̄_k: [M]`.
    pub sample_mean: Array1<c64>,
    /// Sample covariance `R^S_k: [M × M]` (zero for `N = 1`).
    pub sample_covariance: Array2<c64>,
}

/// Column channels `h_k = H_k[0, :]ᴴ` of a MISO channel.
///
/// # Errors
/// [`ChannelError::InvalidParameter`] if some user has more than one receive antenna.
pub fn miso_columns(h: &Channel) -> Result<Vec<Array1<c64>>, ChannelError> {
    h.blocks()
        .iter()
        .map(|b| {
            if b.nrows() != 1 {
                return Err(ChannelError::InvalidParameter(format!(
                    "unknown-statistics error model is MISO, got a user with {} receive antennas",
                    b.nrows()
                )));
            }
            Ok(b.row(0).mapv(|z| z.conj()))
        })
        .collect()
}

/// The MISO channel whose blocks are `h_kᴴ` (inverse of [`miso_columns`]).
///
/// # Errors
/// [`ChannelError::Core`] for an empty list, unequal lengths or non-finite entries.
pub fn channel_from_columns(cols: &[Array1<c64>]) -> Result<Channel, ChannelError> {
    Ok(Channel::new(cols.iter().map(|c| Array2::from_shape_fn((1, c.len()), |(_, j)| c[j].conj())).collect())?)
}

/// Sample mean and sample covariance `(h̄, R^S)` of `N` samples (`R^S` uses `1/N`, so
/// `(1/N) Σ ĥĥᴴ = h̄h̄ᴴ + R^S`; it is zero for `N = 1`).
///
/// # Errors
/// [`ChannelError::InvalidParameter`] for no samples, empty or unequal lengths, or non-finite
/// entries.
pub fn sample_mean_covariance(samples: &[Array1<c64>]) -> Result<(Array1<c64>, Array2<c64>), ChannelError> {
    let Some(first) = samples.first() else {
        return Err(ChannelError::InvalidParameter("sample covariance needs at least one sample".into()));
    };
    let m = first.len();
    if m == 0 || samples.iter().any(|s| s.len() != m) {
        return Err(ChannelError::InvalidParameter("samples must be non-empty and of equal length".into()));
    }
    if samples.iter().any(|s| s.iter().any(|z| !(z.re.is_finite() && z.im.is_finite()))) {
        return Err(ChannelError::InvalidParameter("samples contain non-finite entries".into()));
    }
    let n = samples.len() as f64;
    let mut mean = Array1::<c64>::zeros(m);
    for s in samples {
        mean += s;
    }
    mean.mapv_inplace(|z| z / n);
    let mut cov = Array2::<c64>::zeros((m, m));
    for s in samples {
        let d = s - &mean;
        for i in 0..m {
            for j in 0..m {
                cov[[i, j]] += d[i] * d[j].conj();
            }
        }
    }
    cov.mapv_inplace(|z| z / n);
    Ok((mean, cov))
}

/// Draws one block: per user, eigenvalues, `R_e,k`, `N` samples, `h̄_k` and `R^S_k`.
///
/// `q` is the experiment's shared error subspace ([`haar_unitary`]); `h` a MISO channel whose
/// users have `M` = `q.nrows()` antennas.
///
/// # Errors
/// [`ChannelError::InvalidParameter`] for bad parameters, a non-MISO channel, a `q` of the wrong
/// size or non-finite, or a user with `h_k = 0`.
pub fn sample_error_block<R: Rng + ?Sized>(
    h: &Channel,
    q: &Array2<c64>,
    params: &UnknownErrorParams,
    rng: &mut R,
) -> Result<Vec<UserErrorBlock>, ChannelError> {
    params.check()?;
    let m = h.n_tx();
    if q.dim() != (m, m) || q.iter().any(|z| !(z.re.is_finite() && z.im.is_finite())) {
        return Err(ChannelError::InvalidParameter(format!(
            "error subspace must be a finite {m}x{m} matrix, got {:?}",
            q.dim()
        )));
    }
    let cols = miso_columns(h)?;
    cols.into_iter()
        .map(|h_true| {
            let energy: f64 = h_true.iter().map(|z| z.norm_sqr()).sum();
            if !(energy > 0.0) {
                return Err(ChannelError::InvalidParameter("a user's channel is zero".into()));
            }
            let raw = sample_eigenvalues(params, m, rng);
            let target = energy * 10f64.powf(-params.error_level_db / 10.0);
            let eigenvalues = raw.mapv(|l| l * target / raw.sum());
            let sqrt_l = eigenvalues.mapv(f64::sqrt);
            let samples: Vec<Array1<c64>> = (0..params.n_samples)
                .map(|_| {
                    let z = Array1::from_shape_fn(m, |j| standard_complex_normal(rng) * sqrt_l[j]);
                    &h_true + &q.dot(&z)
                })
                .collect();
            let (sample_mean, sample_covariance) = sample_mean_covariance(&samples)?;
            Ok(UserErrorBlock {
                error_covariance: compose_covariance(q, &eigenvalues),
                h_true,
                eigenvalues,
                samples,
                sample_mean,
                sample_covariance,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn max_abs(a: &Array2<c64>) -> f64 {
        a.iter().map(|z| z.norm()).fold(0.0, f64::max)
    }

    #[test]
    fn haar_is_unitary_and_phase_fixed() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let q = haar_unitary(16, &mut rng).unwrap();
        let qq = q.t().mapv(|z| z.conj()).dot(&q) - Array2::<c64>::eye(16);
        assert!(max_abs(&qq) < 1e-12);
        assert!(haar_unitary(0, &mut rng).is_err());
    }

    #[test]
    fn haar_first_entry_is_uniform_on_the_sphere() {
        // For Haar Q, |Q_00|² ~ Beta(1, n−1): mean 1/n.
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let n = 8;
        let mean: f64 = (0..2000).map(|_| haar_unitary(n, &mut rng).unwrap()[[0, 0]].norm_sqr()).sum::<f64>() / 2000.0;
        assert!((mean - 1.0 / n as f64).abs() < 0.01, "{mean}");
    }

    #[test]
    fn block_has_the_requested_error_level_and_identity() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let h = crate::rayleigh(4, 1, 16, &mut rng).unwrap();
        let q = haar_unitary(16, &mut rng).unwrap();
        let p = UnknownErrorParams { n_samples: 3, error_level_db: 10.0, ..Default::default() };
        let b = sample_error_block(&h, &q, &p, &mut rng).unwrap();
        for u in &b {
            let e: f64 = u.h_true.iter().map(|z| z.norm_sqr()).sum();
            let tr: f64 = u.error_covariance.diag().iter().map(|z| z.re).sum();
            assert!((tr / e - 0.1).abs() < 1e-10);
            assert!(u.eigenvalues.iter().all(|&l| l > 0.0));
            // (1/N) Σ ĥĥᴴ = h̄h̄ᴴ + R^S.
            let mut lhs = Array2::<c64>::zeros((16, 16));
            for s in &u.samples {
                for i in 0..16 {
                    for j in 0..16 {
                        lhs[[i, j]] += s[i] * s[j].conj() / 3.0;
                    }
                }
            }
            let hm = &u.sample_mean;
            let rhs = Array2::from_shape_fn((16, 16), |(i, j)| hm[i] * hm[j].conj()) + &u.sample_covariance;
            assert!(max_abs(&(lhs - rhs)) < 1e-10);
        }
    }

    #[test]
    fn error_samples_have_the_covariance() {
        // Monte-Carlo: the empirical error covariance approaches R_e.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let m = 4;
        let h = crate::rayleigh(1, 1, m, &mut rng).unwrap();
        let q = haar_unitary(m, &mut rng).unwrap();
        let p = UnknownErrorParams { n_samples: 20_000, ..Default::default() };
        let b = sample_error_block(&h, &q, &p, &mut rng).unwrap();
        let u = &b[0];
        let mut emp = Array2::<c64>::zeros((m, m));
        for s in &u.samples {
            let d = s - &u.h_true;
            for i in 0..m {
                for j in 0..m {
                    emp[[i, j]] += d[i] * d[j].conj() / 20_000.0;
                }
            }
        }
        let scale = max_abs(&u.error_covariance);
        assert!(max_abs(&(emp - &u.error_covariance)) < 0.05 * scale);
    }

    #[test]
    fn single_sample_gives_zero_covariance_and_bad_input_is_rejected() {
        let x = Array1::from(vec![c64::new(1.0, 2.0), c64::new(0.5, 0.0)]);
        let (m, c) = sample_mean_covariance(std::slice::from_ref(&x)).unwrap();
        assert_eq!(m, x);
        assert!(max_abs(&c) == 0.0);
        assert!(sample_mean_covariance(&[]).is_err());
        let y = Array1::from(vec![c64::new(f64::NAN, 0.0), c64::new(0.0, 0.0)]);
        assert!(sample_mean_covariance(&[x.clone(), y]).is_err());
        assert!(sample_mean_covariance(&[x, Array1::zeros(3)]).is_err());
        assert!(UnknownErrorParams { n_samples: 0, ..Default::default() }.check().is_err());
        assert!(UnknownErrorParams { error_level_db: f64::NAN, ..Default::default() }.check().is_err());
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let h = crate::rayleigh(2, 2, 4, &mut rng).unwrap();
        let q = haar_unitary(4, &mut rng).unwrap();
        assert!(sample_error_block(&h, &q, &UnknownErrorParams::default(), &mut rng).is_err());
    }

    #[test]
    fn columns_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let h = crate::rayleigh(3, 1, 5, &mut rng).unwrap();
        let cols = miso_columns(&h).unwrap();
        assert_eq!(channel_from_columns(&cols).unwrap(), h);
    }
}
