//! The unrolled forward pass of U-G-HBF and its gradient with respect to the virtual-channel
//! coefficients (spec §3–4), in plain ndarray (the network lives in [`crate::model`]).
//!
//! For one instance with estimates `ĥ_k: [N]`, `R̂_k = ĥ_k ĥ_k^H`, `τ_k = tr(R̂_k)/N` and positive
//! coefficients `c_k = (c_k1, c_k2, c_k3, c_k4)` (`coeffs: [K × 4]`), the virtual channels (25)-(27)
//! are `R̃^S_k = c_k1 R̂_k + c_k2 τ_k I` (wanted) and `R̃^I_k = c_k3 R̂_k + c_k4 τ_k I` (interference).
//!
//! Forward: SNR initialisation (34) on `R̂`, `T` greedy selections with the virtual channels and no
//! power cap (31), the baseband solution for the final `A` (its downlink powers (32)), then the
//! projection (33) `p ← p · min(1, P_max / Σ_k ω_k p_k)`. Baseband power weighting (`ω_k = 1`).
//!
//! Loss interface: the caller supplies `∂L/∂d_k` for the SINR margins `d_k = 10 log10(SINR_k/γ_k)`
//! on the **true** channel and `∂L/∂P` for the projected power `P = Σ_k p_k`; [`coefficient_gradient`]
//! returns `∂L/∂c: [K × 4]` through the implicit gradient of the final baseband problem
//! ([`crate::implicit`]) with the selection `A` held fixed (the greedy argmin is piecewise
//! constant); [`straight_through_gradient`] adds the straight-through softmin path (35) from
//! `∂L/∂A*` to the coefficients of the greedy trials.
//!
//! Files: this one (settings, virtual channels, the forward pass), `backward.rs` (the gradients),
//! `tests.rs` (finite-difference checks, shared test instances).

use beamlab_linalg_ops::c64;
use ndarray::{Array1, Array2, Axis};

use crate::Error;
use crate::data::Instance;
use crate::greedy::{
    GreedyOptions, GreedyResult, GreedyStep, PowerWeighting, greedy_hbf, rank_one_covariances, snr_init,
};
#[cfg(test)]
use crate::implicit::QosGradient;
use crate::outage::sinrs;
use crate::qos::{QosOptions, QosSolution, QosSystem, solve_qos};

/// Fixed settings of the unrolled forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct UnrollSettings {
    /// Codebook `[N × |C|]`.
    pub codebook: Array2<c64>,
    /// RF chains `M`.
    pub n_rf: usize,
    /// Greedy selections `T`.
    pub n_selections: usize,
    /// Power budget `P_max` of the projection (33).
    pub power_budget: f64,
    /// Baseband solver options.
    pub qos: QosOptions,
    /// Softmin sharpness `κ_b` of the straight-through selection gradient (35); 0 disables it.
    pub softmin_sharpness: f64,
}

/// Everything the forward pass computes for one instance.
#[derive(Clone, Debug)]
pub struct UnrolledOutput {
    /// Selected codewords `[M]`.
    pub selection: Vec<usize>,
    /// `A: [N × M]`.
    pub analog: Array2<c64>,
    /// The baseband problem with the virtual channels for `A`.
    pub(crate) system: QosSystem,
    /// Its solution (before the projection).
    pub solution: QosSolution,
    /// Projection factor `s = min(1, P_max / Σ p)`.
    pub scale: f64,
    /// Projected powers `s p_k`.
    pub powers: Vec<f64>,
    /// SINRs on the true channel.
    pub sinr: Vec<f64>,
    /// Margins `d_k = 10 log10(SINR_k / γ_k)` (dB).
    pub margin_db: Vec<f64>,
    /// The coefficients `[K × 4]` used.
    pub coeffs: Array2<f64>,
    /// The greedy steps with all trials (empty for an evaluation of a given selection).
    pub(crate) steps: Vec<GreedyStep>,
}

impl UnrolledOutput {
    /// Transmit power `Σ_k s p_k`.
    #[must_use]
    pub fn power(&self) -> f64 {
        self.powers.iter().sum()
    }

    /// Effective precoder `A [√p_k w_k]`, `[N × K]`.
    #[must_use]
    pub fn precoder(&self) -> Array2<c64> {
        let mut d = self.solution.beams.clone();
        for (mut c, p) in d.columns_mut().into_iter().zip(&self.powers) {
            c.mapv_inplace(|z| z * p.sqrt());
        }
        self.analog.dot(&d)
    }
}

/// Wanted and interference covariances `(R̃^S_k, R̃^I_k)`, `K` matrices `[N × N]` each.
pub(crate) type VirtualChannels = (Vec<Array2<c64>>, Vec<Array2<c64>>);

/// Virtual-channel covariances `(R̃^S_k, R̃^I_k)` from estimates `h_est` and `coeffs: [K × 4]`
/// (the rank-one case `R̂_k = ĥ_k ĥ_k^H` of [`virtual_channels_cov`]).
///
/// # Errors
/// As [`virtual_channels_cov`].
pub(crate) fn virtual_channels(h_est: &[Array1<c64>], coeffs: &Array2<f64>) -> Result<VirtualChannels, Error> {
    virtual_channels_cov(&rank_one_covariances(h_est), coeffs)
}

/// Virtual-channel covariances from (possibly full-rank) estimated covariances `R̂_k`:
/// `R̃^S_k = c_k1 R̂_k + c_k2 τ_k I`, `R̃^I_k = c_k3 R̂_k + c_k4 τ_k I`, `τ_k = tr(R̂_k)/N`
/// (statistical CSI of Table 4 uses the sample covariance of the fed-back samples).
///
/// # Errors
/// [`Error::ShapeMismatch`] when `coeffs` is not `[K × 4]` or a covariance is not square,
/// [`Error::InvalidParameter`] (`coeffs`) for a non-finite or negative coefficient.
pub(crate) fn virtual_channels_cov(r: &[Array2<c64>], coeffs: &Array2<f64>) -> Result<VirtualChannels, Error> {
    let k = r.len();
    if coeffs.dim() != (k, 4) {
        return Err(Error::shape("virtual-channel coefficients", format!("{k}x4"), format!("{:?}", coeffs.dim())));
    }
    if let Some(c) = coeffs.iter().find(|c| !(c.is_finite() && **c >= 0.0)) {
        return Err(Error::param("coeffs", format!("virtual-channel coefficients must be finite and >= 0, got {c}")));
    }
    if let Some(ru) = r.iter().find(|ru| ru.nrows() != ru.ncols()) {
        return Err(Error::shape("covariance", "a square matrix", format!("{:?}", ru.dim())));
    }
    let mut wanted = Vec::with_capacity(k);
    let mut interference = Vec::with_capacity(k);
    for (u, ru) in r.iter().enumerate() {
        let n = ru.nrows();
        let tau: f64 = ru.diag().iter().map(|z| z.re).sum::<f64>() / n as f64;
        let eye = Array2::<c64>::eye(n);
        wanted.push(ru.mapv(|z| z * coeffs[[u, 0]]) + eye.mapv(|z| z * (coeffs[[u, 1]] * tau)));
        interference.push(ru.mapv(|z| z * coeffs[[u, 2]]) + eye.mapv(|z| z * (coeffs[[u, 3]] * tau)));
    }
    Ok((wanted, interference))
}

/// The greedy selection with the virtual channels (no power cap); `record` keeps every trial.
///
/// # Errors
/// As [`greedy_hbf`] and [`virtual_channels`].
pub(crate) fn select(
    inst: &Instance,
    coeffs: &Array2<f64>,
    settings: &UnrollSettings,
    record: bool,
) -> Result<GreedyResult, Error> {
    select_cov(&rank_one_covariances(&inst.h_est), &inst.targets, coeffs, settings, record)
}

/// [`select`] on (possibly full-rank) estimated covariances `R̂_k` (statistical CSI, Table 4): SNR
/// initialisation (34) on `R̂`, greedy selection with [`virtual_channels_cov`].
///
/// # Errors
/// As [`greedy_hbf`] and [`virtual_channels_cov`].
pub(crate) fn select_cov(
    r_hat: &[Array2<c64>],
    targets: &[f64],
    coeffs: &Array2<f64>,
    settings: &UnrollSettings,
    record: bool,
) -> Result<GreedyResult, Error> {
    let (wanted, interference) = virtual_channels_cov(r_hat, coeffs)?;
    let init = snr_init(&settings.codebook, r_hat, settings.n_rf)?;
    let opts = GreedyOptions {
        n_selections: settings.n_selections,
        power_budget: None,
        weighting: PowerWeighting::Baseband,
        qos: settings.qos,
        record_trials: record,
    };
    greedy_hbf(&settings.codebook, &wanted, &interference, targets, &init, &opts)
}

/// The forward pass for a fixed selection (baseband solve, projection, true-channel SINRs).
///
/// # Errors
/// [`Error::InvalidSelection`] for an index outside the codebook; as [`solve_qos`] and
/// [`virtual_channels`].
pub(crate) fn evaluate_selection(
    inst: &Instance,
    coeffs: &Array2<f64>,
    selection: &[usize],
    settings: &UnrollSettings,
) -> Result<UnrolledOutput, Error> {
    if selection.iter().any(|&i| i >= settings.codebook.ncols()) {
        return Err(Error::InvalidSelection { selection: selection.to_vec(), n_codewords: settings.codebook.ncols() });
    }
    evaluate_analog(inst, coeffs, settings.codebook.select(Axis(1), selection), selection, settings)
}

/// [`evaluate_selection`] for an arbitrary analog matrix `a: [N × M]` (`selection` is only
/// recorded); used by gradient checks that move `A` continuously.
///
/// # Errors
/// As [`solve_qos`] and [`virtual_channels`].
pub(crate) fn evaluate_analog(
    inst: &Instance,
    coeffs: &Array2<f64>,
    a: Array2<c64>,
    selection: &[usize],
    settings: &UnrollSettings,
) -> Result<UnrolledOutput, Error> {
    let (wanted, interference) = virtual_channels(&inst.h_est, coeffs)?;
    debug_assert_eq!(a.ncols(), selection.len());
    let system = QosSystem::through_analog(&a, &wanted, &interference, inst.targets.clone())?;
    let solution = solve_qos(&system, &settings.qos, None)?;
    let total: f64 = solution.powers.iter().sum();
    let scale = (settings.power_budget / total).min(1.0);
    let powers: Vec<f64> = solution.powers.iter().map(|p| p * scale).collect();
    let mut out = UnrolledOutput {
        selection: selection.to_vec(),
        analog: a,
        system,
        solution,
        scale,
        powers,
        sinr: vec![],
        margin_db: vec![],
        coeffs: coeffs.clone(),
        steps: vec![],
    };
    out.sinr = sinrs(out.precoder().view(), &inst.h)?;
    out.margin_db = out.sinr.iter().zip(&inst.targets).map(|(s, g)| 10.0 * (s / g).log10()).collect();
    Ok(out)
}

/// Greedy selection followed by [`evaluate_selection`].
///
/// # Errors
/// As [`select`] and [`evaluate_selection`].
pub(crate) fn forward(
    inst: &Instance,
    coeffs: &Array2<f64>,
    settings: &UnrollSettings,
) -> Result<UnrolledOutput, Error> {
    let greedy = select(inst, coeffs, settings, settings.softmin_sharpness > 0.0)?;
    let mut out = evaluate_selection(inst, coeffs, &greedy.selection, settings)?;
    out.steps = greedy.steps;
    Ok(out)
}

/// Beamforming architecture of the learned model.
///
/// - `Hybrid` (U-G-HBF): `M` RF chains chosen by the greedy selection, as above.
/// - `FullyDigital` (U-FDBF, paper §5.1.3 "A = I_N effectively"): one RF chain per antenna,
///   `A = I_N`, no codeword selection; the same coefficients and virtual channels, the baseband
///   problem is solved directly on `R̃^S_k, R̃^I_k: [N × N]` with `Φ = I_N` (transmit power), then
///   the downlink powers and the projection (33). Its gradient is the coefficient part of
///   `backward` (there is no selection, hence no straight-through path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Greedy codebook hybrid beamforming (U-G-HBF).
    #[default]
    Hybrid,
    /// Fully digital beamforming, `A = I_N` (U-FDBF).
    FullyDigital,
}

/// The fully digital forward pass (`A = I_N`, see [`Architecture::FullyDigital`]); the output's
/// `selection` is `0..N` and `steps` is empty.
///
/// # Errors
/// [`Error::Empty`] for an instance without users; as [`evaluate_analog`].
pub(crate) fn forward_fully_digital(
    inst: &Instance,
    coeffs: &Array2<f64>,
    settings: &UnrollSettings,
) -> Result<UnrolledOutput, Error> {
    let n = inst.h_est.first().map(Array1::len).ok_or(Error::Empty { what: "instance users" })?;
    let selection: Vec<usize> = (0..n).collect();
    evaluate_analog(inst, coeffs, Array2::eye(n), &selection, settings)
}

/// The forward pass of `architecture`; `record` keeps the greedy trials (hybrid only, needed by
/// the straight-through gradient).
///
/// # Errors
/// As [`forward`], [`forward_untraced`] and [`forward_fully_digital`].
pub(crate) fn forward_arch(
    architecture: Architecture,
    inst: &Instance,
    coeffs: &Array2<f64>,
    settings: &UnrollSettings,
    record: bool,
) -> Result<UnrolledOutput, Error> {
    match (architecture, record) {
        (Architecture::Hybrid, true) => forward(inst, coeffs, settings),
        (Architecture::Hybrid, false) => forward_untraced(inst, coeffs, settings),
        (Architecture::FullyDigital, _) => forward_fully_digital(inst, coeffs, settings),
    }
}

mod backward;

#[cfg(test)]
use backward::{analog_chain_cov, coefficient_chain, coefficient_chain_cov, coefficient_gradient, softmin_weights};

pub(crate) use backward::{backward, forward_untraced, straight_through_gradient, straight_through_gradient_cov};

#[cfg(test)]
pub(crate) mod tests;
