//! Validated inputs of a GGML run, its initialisation (`F_0`, `D_0`) and the losses it minimises.

use beamlab_core::Problem;
use beamlab_linalg_ops::{c64, inverse};
use ndarray::Array2;
use rand::{Rng, RngCore};

use crate::KanError;

/// The loss GGML minimises, as a function of the per-user rates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// `L = −Σ_k α_k R_k + β Var(R)` (GGML).
    Rate {
        /// `β`.
        var_weight: f64,
    },
    /// `L = Π_k e_k^{α_k} + β Var(e)`, `e_k = 2^{−R_k} = 1/(1 + SINR_k)` the MMSE of user `k` on
    /// the (worst-case) design channel (GGML-ImCSI, paper eqs. (32)–(34)).
    WorstCaseMmse {
        /// `β`.
        var_weight: f64,
    },
}

fn unbiased_var(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = if n > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    (mean, var)
}

impl Objective {
    /// The loss value and `∂L/∂R_k` for rates `rates` and weights `alpha` (summing to 1).
    #[must_use]
    pub fn value_and_rate_derivative(&self, rates: &[f64], alpha: &[f64]) -> (f64, Vec<f64>) {
        let n = rates.len();
        match *self {
            Objective::Rate { var_weight } => {
                let (mean, var) = unbiased_var(rates);
                let value = -rates.iter().zip(alpha).map(|(r, a)| r * a).sum::<f64>() + var_weight * var;
                let d = rates
                    .iter()
                    .zip(alpha)
                    .map(|(r, a)| -a + if n > 1 { var_weight * 2.0 * (r - mean) / (n - 1) as f64 } else { 0.0 })
                    .collect();
                (value, d)
            }
            Objective::WorstCaseMmse { var_weight } => {
                let ln2 = std::f64::consts::LN_2;
                let e: Vec<f64> = rates.iter().map(|r| (-r * ln2).exp()).collect();
                let prod = e.iter().zip(alpha).map(|(ek, a)| ek.powf(*a)).product::<f64>();
                let (mean, var) = unbiased_var(&e);
                let value = prod + var_weight * var;
                let d = e
                    .iter()
                    .zip(alpha)
                    .map(|(ek, a)| {
                        let dv = if n > 1 { var_weight * 2.0 * (ek - mean) / (n - 1) as f64 } else { 0.0 };
                        // ∂e_k/∂R_k = −ln 2 · e_k; ∂Π/∂e_k = α_k Π / e_k.
                        -ln2 * (a * prod + dv * ek)
                    })
                    .collect();
                (value, d)
            }
        }
    }
}

/// Random-phase `F_0: [N × M]`, `|F_ij| = 1`.
pub fn random_phase_analog(n_tx: usize, n_rf: usize, rng: &mut dyn RngCore) -> Array2<c64> {
    Array2::from_shape_fn((n_tx, n_rf), |_| c64::from_polar(1.0, rng.random_range(0.0..std::f64::consts::TAU)))
}

/// Zero-forcing digital precoder on the effective channel `H F: [K × M]`,
/// `D = (HF)^H (HF (HF)^H)^{-1}`, scaled to `‖F D‖_F² = power`.
///
/// # Errors
/// [`KanError::Linalg`] when `HF (HF)^H` is singular; [`KanError::DegenerateZfInit`] for a zero result.
pub fn zf_digital(h_stacked: &Array2<c64>, f: &Array2<c64>, power: f64) -> Result<Array2<c64>, KanError> {
    let hf = h_stacked.dot(f);
    let hfh = hf.t().mapv(|z| z.conj());
    let d = hfh.dot(&inverse(hf.dot(&hfh).view())?);
    let w = f.dot(&d);
    let n2: f64 = w.iter().map(|z| z.norm_sqr()).sum();
    if !(n2.is_finite() && n2 > 0.0) {
        return Err(KanError::DegenerateZfInit);
    }
    Ok(d.mapv(|z| z * (power / n2).sqrt()))
}

/// Validated inputs of one GGML run.
#[derive(Clone, Debug)]
pub struct HybridSetup {
    /// Design channel rows `h_k: [1 × N]`.
    pub h: Vec<Array2<c64>>,
    /// Noise powers.
    pub noise: Vec<f64>,
    /// Power budget `P`.
    pub power: f64,
    /// Normalised user weights `α_k` (sum 1).
    pub alpha: Vec<f64>,
    /// RF chains `M`.
    pub n_rf: usize,
    /// A channel on which every iterate is additionally scored (for convergence experiments with
    /// imperfect CSI, where it is the true channel). Never used by the method's decisions and
    /// never set by a [`Beamformer`](beamlab_core::Beamformer).
    pub score_channel: Option<Vec<Array2<c64>>>,
}

impl HybridSetup {
    /// Checks a problem for hybrid MISO precoding with `n_rf` RF chains (default `K`).
    ///
    /// # Errors
    /// [`KanError::MultiAntennaUser`], [`KanError::ZeroUserWeights`], [`KanError::DegenerateChannel`];
    /// [`KanError::TooFewRfChains`] / [`KanError::TooManyRfChains`] unless `K ≤ M ≤ N`.
    pub fn from_problem(problem: &Problem, n_rf: Option<usize>) -> Result<Self, KanError> {
        problem.validate()?;
        let h = problem.channel.blocks().to_vec();
        if let Some((user, b)) = h.iter().enumerate().find(|(_, b)| b.nrows() != 1) {
            return Err(KanError::MultiAntennaUser { user, n_rx: b.nrows() });
        }
        if h.iter().flat_map(|b| b.iter()).any(|z| !(z.re.is_finite() && z.im.is_finite())) {
            return Err(KanError::DegenerateChannel);
        }
        let (n_users, n_tx) = (problem.n_users(), problem.n_tx());
        let n_rf = n_rf.unwrap_or(n_users);
        if n_rf < n_users {
            return Err(KanError::TooFewRfChains { n_rf, n_users });
        }
        if n_rf > n_tx {
            return Err(KanError::TooManyRfChains { n_rf, n_tx });
        }
        let total: f64 = problem.weights.iter().sum();
        if !(total > 0.0) {
            return Err(KanError::ZeroUserWeights);
        }
        Ok(Self {
            h,
            noise: problem.noise_power.clone(),
            power: problem.power_budget,
            alpha: problem.weights.iter().map(|w| w / total).collect(),
            n_rf,
            score_channel: None,
        })
    }
}
