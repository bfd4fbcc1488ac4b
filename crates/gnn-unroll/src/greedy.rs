//! Greedy-correction hybrid beamforming over a DFT codebook (spec §2; Hegde, Cheng, Pesavento,
//! ICASSP 2017, Alg. 2).
//!
//! System model: codebook `C: [N × |C|]` (oversampled 2-D DFT, [`dft_codebook`](crate::data::dft_codebook)); per-user
//! wanted and interference covariances `R^S_k, R^I_k: [N × N]` (both `h_k h_k^H` for instantaneous
//! CSI; the *virtual channels* of the learned method differ); targets `γ_k`. For a selection
//! `A = C[:, s]` (`M` distinct columns) the baseband problem is [`solve_qos`] with
//! `S_k = A^H R^S_k A`, `I_k = A^H R^I_k A`, `Φ = I_M` or `A^H A`.
//!
//! `P(A) = Σ_k q_k*(A)`, infinite when infeasible or above the power budget. Starting from the
//! SNR-based initialisation (34) ([`snr_init`]), step `t` corrects RF chain `m = t mod M`: every
//! codeword not in `A` is tried in column `m`, and the one with least `P` is kept (the incumbent
//! stays when nothing is better), so `P` never increases. Trials are warm-started from the
//! incumbent's uplink powers. Since all columns are codewords, the projections `C^H R C` are formed
//! once and every trial only gathers an `M × M` submatrix.

use beamlab_core::{Beamformer, CoreError, Diagnostics, Precoder, Problem, Solution};
use beamlab_linalg_ops::c64;
use ndarray::{Array2, Axis};

use crate::qos::{QosOptions, QosSolution, QosSystem, solve_qos};
use crate::util::adjoint;
use crate::{Error, InfeasibleReason};

/// How transmit power is weighted in the objective (spec (4)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerWeighting {
    /// `Φ = I_M`: baseband power `Σ p_k ‖w_k‖²`.
    #[default]
    Baseband,
    /// `Φ = A^H A`: radiated power `Σ p_k ‖A w_k‖²`.
    Rf,
}

/// SNR-based initialisation (34): the `n_rf` codewords with the largest `c^H R̄ c`,
/// `R̄ = Σ_k R̂_k / tr(R̂_k)` (users with zero trace are skipped), in decreasing order.
///
/// # Errors
/// [`Error::EmptyCodebook`] when the codebook has fewer than `n_rf` columns (or `n_rf = 0`),
/// [`Error::ShapeMismatch`] for a covariance that does not fit the codebook, [`Error::NonFinite`]
/// for a non-finite codebook or covariance.
pub fn snr_init(codebook: &Array2<c64>, r_est: &[Array2<c64>], n_rf: usize) -> Result<Vec<usize>, Error> {
    check_codebook(codebook, n_rf)?;
    let n = codebook.nrows();
    let mut r_bar = Array2::<c64>::zeros((n, n));
    for r in r_est {
        if r.dim() != (n, n) {
            return Err(Error::shape("covariance (codebook rows)", format!("{n}x{n}"), format!("{:?}", r.dim())));
        }
        let tr: f64 = r.diag().iter().map(|z| z.re).sum();
        if !tr.is_finite() {
            return Err(Error::NonFinite { what: "covariance" });
        }
        if tr > 0.0 {
            r_bar.scaled_add(c64::new(1.0 / tr, 0.0), r);
        }
    }
    let gains = adjoint(codebook).dot(&r_bar).dot(codebook).diag().mapv(|z| z.re);
    let mut order: Vec<usize> = (0..codebook.ncols()).collect();
    order.sort_by(|&a, &b| gains[b].total_cmp(&gains[a]).then(a.cmp(&b)));
    order.truncate(n_rf);
    Ok(order)
}

fn check_codebook(codebook: &Array2<c64>, n_rf: usize) -> Result<(), Error> {
    if n_rf == 0 || codebook.ncols() < n_rf || codebook.nrows() == 0 {
        return Err(Error::EmptyCodebook { n_codewords: codebook.ncols(), n_rf });
    }
    if codebook.iter().any(|z| !(z.re.is_finite() && z.im.is_finite())) {
        return Err(Error::NonFinite { what: "codebook" });
    }
    Ok(())
}

/// Options of [`greedy_hbf`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GreedyOptions {
    /// Number of greedy selections `T` (default 5, i.e. `T = M` for five RF chains).
    pub n_selections: usize,
    /// Power budget `P_max`: trials with `Σ q > P_max` count as infeasible (`None`: no cap, as in the
    /// unrolled forward pass (31)).
    pub power_budget: Option<f64>,
    /// Power weighting `Φ`.
    pub weighting: PowerWeighting,
    /// Options of every baseband solve.
    pub qos: QosOptions,
    /// Keep every trial's solution in [`GreedyResult::steps`] (for the straight-through gradient).
    pub record_trials: bool,
}

impl Default for GreedyOptions {
    fn default() -> Self {
        Self {
            n_selections: 5,
            power_budget: Some(100.0),
            weighting: PowerWeighting::Baseband,
            qos: QosOptions::default(),
            record_trials: false,
        }
    }
}

/// The result of [`greedy_hbf`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct GreedyResult {
    /// Selected codeword indices, one per RF chain, `[M]`.
    pub selection: Vec<usize>,
    /// Analog matrix `A = C[:, selection]`, `[N × M]`.
    pub analog: Array2<c64>,
    /// Baseband solution for `A` with the given covariances and targets.
    pub solution: QosSolution,
    /// `P(A)` after initialisation and after each selection, `[T + 1]` (∞ while infeasible).
    pub power_trace: Vec<f64>,
    /// Number of baseband solves performed.
    pub n_trials: usize,
    /// Every selection step's trials (empty unless [`GreedyOptions::record_trials`]).
    pub steps: Vec<GreedyStep>,
}

/// One greedy selection step: the corrected RF chain and every candidate tried for it.
#[derive(Clone, Debug, PartialEq)]
pub struct GreedyStep {
    /// RF chain `m` (column of `A`) corrected in this step.
    pub chain: usize,
    /// The candidates, the incumbent codeword first.
    pub trials: Vec<GreedyTrial>,
}

/// One candidate of a greedy step.
#[derive(Clone, Debug, PartialEq)]
pub struct GreedyTrial {
    /// Codeword index tried in the step's chain.
    pub codeword: usize,
    /// The full selection of the trial.
    pub selection: Vec<usize>,
    /// `P = Σ q` (∞ when infeasible).
    pub power: f64,
    /// The trial's baseband solution (`None` when infeasible).
    pub solution: Option<QosSolution>,
}

impl GreedyResult {
    /// Effective precoder `A [√p_1 w_1 … √p_K w_K]`, `[N × K]`.
    #[must_use]
    pub fn precoder(&self) -> Array2<c64> {
        self.analog.dot(&self.solution.baseband())
    }
}

/// Projections of the covariances on the codebook, formed once per instance.
struct Projected {
    wanted: Vec<Array2<c64>>,
    interference: Vec<Array2<c64>>,
    gram: Array2<c64>,
}

impl Projected {
    fn system(&self, sel: &[usize], targets: &[f64], weighting: PowerWeighting) -> Result<QosSystem, Error> {
        let pick = |a: &Array2<c64>| a.select(Axis(0), sel).select(Axis(1), sel);
        let phi = match weighting {
            PowerWeighting::Baseband => Array2::eye(sel.len()),
            PowerWeighting::Rf => pick(&self.gram),
        };
        QosSystem::new(
            self.wanted.iter().map(pick).collect(),
            self.interference.iter().map(pick).collect(),
            phi,
            targets.to_vec(),
        )
    }
}

/// Greedy-correction codeword selection (see the module docs).
///
/// - `codebook`: `[N × |C|]`;
/// - `wanted`, `interference`: `R^S_k`, `R^I_k`, `K` matrices `[N × N]`;
/// - `targets`: `γ_k`, `[K]`;
/// - `init`: the initial selection (`M` distinct indices), e.g. from [`snr_init`].
///
/// # Errors
/// [`Error::EmptyCodebook`] when the codebook cannot fill `M` chains, [`Error::Empty`] or
/// [`Error::ShapeMismatch`] for missing users or shapes that do not fit, [`Error::InvalidSelection`]
/// for an initial selection that is not distinct codeword indices, [`Error::Infeasible`] when no
/// visited selection meets the targets within the budget.
pub fn greedy_hbf(
    codebook: &Array2<c64>,
    wanted: &[Array2<c64>],
    interference: &[Array2<c64>],
    targets: &[f64],
    init: &[usize],
    opts: &GreedyOptions,
) -> Result<GreedyResult, Error> {
    let _span = tracing::debug_span!("greedy_hbf", n_users = wanted.len(), n_rf = init.len()).entered();
    check_codebook(codebook, init.len())?;
    let n = codebook.nrows();
    let k = wanted.len();
    if k == 0 {
        return Err(Error::Empty { what: "greedy selection users (wanted covariances)" });
    }
    if interference.len() != k {
        return Err(Error::shape("interference covariances (one per user)", k, interference.len()));
    }
    if targets.len() != k {
        return Err(Error::shape("SINR targets (one per user)", k, targets.len()));
    }
    if let Some(r) = wanted.iter().chain(interference).find(|r| r.dim() != (n, n)) {
        return Err(Error::shape("covariance (codebook rows)", format!("{n}x{n}"), format!("{:?}", r.dim())));
    }
    let mut seen = vec![false; codebook.ncols()];
    for &i in init {
        if i >= codebook.ncols() || seen[i] {
            return Err(Error::InvalidSelection { selection: init.to_vec(), n_codewords: codebook.ncols() });
        }
        seen[i] = true;
    }
    let ch = adjoint(codebook);
    let project = |r: &Array2<c64>| ch.dot(r).dot(codebook);
    let proj = Projected {
        wanted: wanted.iter().map(project).collect(),
        interference: interference.iter().map(project).collect(),
        gram: ch.dot(codebook),
    };
    let budget = opts.power_budget.unwrap_or(f64::INFINITY);
    let mut n_trials = 0usize;
    let mut evaluate = |sel: &[usize], warm: Option<&[f64]>| -> Result<Option<QosSolution>, Error> {
        n_trials += 1;
        let sys = proj.system(sel, targets, opts.weighting)?;
        match solve_qos(&sys, &opts.qos, warm) {
            Ok(sol) if sol.uplink_sum() <= budget => Ok(Some(sol)),
            Ok(_) | Err(Error::Infeasible { .. } | Error::Singular { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let mut sel = init.to_vec();
    let mut best = evaluate(&sel, None)?;
    let power = |s: &Option<QosSolution>| s.as_ref().map_or(f64::INFINITY, QosSolution::uplink_sum);
    let mut power_trace = vec![power(&best)];
    let n_rf = sel.len();
    let mut steps = Vec::new();
    for t in 0..opts.n_selections {
        let m = t % n_rf;
        let warm = best.as_ref().map(|s| s.uplink_powers.clone());
        let mut best_idx = sel[m];
        let mut trials = Vec::new();
        if opts.record_trials {
            trials.push(GreedyTrial {
                codeword: sel[m],
                selection: sel.clone(),
                power: power(&best),
                solution: best.clone(),
            });
        }
        for cand in 0..codebook.ncols() {
            if sel.contains(&cand) {
                continue;
            }
            let mut trial = sel.clone();
            trial[m] = cand;
            let sol = evaluate(&trial, warm.as_deref())?;
            if opts.record_trials {
                trials.push(GreedyTrial {
                    codeword: cand,
                    selection: trial,
                    power: power(&sol),
                    solution: sol.clone(),
                });
            }
            if power(&sol) < power(&best) {
                best = sol;
                best_idx = cand;
            }
        }
        sel[m] = best_idx;
        power_trace.push(power(&best));
        if opts.record_trials {
            steps.push(GreedyStep { chain: m, trials });
        }
    }
    let solution = best.ok_or_else(|| Error::Infeasible {
        sum_power: f64::INFINITY,
        n_iterations: opts.n_selections,
        reason: InfeasibleReason::NoFeasibleSelection,
    })?;
    let analog = codebook.select(Axis(1), &sel);
    Ok(GreedyResult { selection: sel, analog, solution, power_trace, n_trials, steps })
}

/// `h h^H` for each channel vector `h_k: [N]` (instantaneous-CSI covariances).
#[must_use]
pub fn rank_one_covariances(h: &[ndarray::Array1<c64>]) -> Vec<Array2<c64>> {
    h.iter().map(|v| crate::util::outer(v.view(), v.view())).collect()
}

/// G-HBF as a [`Beamformer`]: greedy hybrid beamforming on the estimated channel with SINR targets
/// inflated by a margin `Δ ≥ 1` (G-HBF-perf: `Δ = 1` on the true channel; G-HBF-marg: `Δ`
/// calibrated on validation data, see [`crate::outage::calibrate_margin`]).
///
/// The problem must carry single-antenna users (`H_k: [1 × N]`, `h_k = H_k^H`) and SINR targets;
/// noise powers scale the covariances; the power budget is `P_max`.
#[derive(Clone, Debug)]
pub struct GreedyHbf {
    /// Codebook `[N × |C|]`.
    pub codebook: Array2<c64>,
    /// Number of RF chains `M`.
    pub n_rf: usize,
    /// Target margin `Δ` (linear, ≥ 1).
    pub margin: f64,
    /// Greedy options (the power budget is taken from the problem).
    pub options: GreedyOptions,
}

impl Beamformer for GreedyHbf {
    fn name(&self) -> &str {
        "G-HBF"
    }

    fn solve(&mut self, problem: &Problem, _rng: &mut dyn rand::RngCore) -> Result<Solution, CoreError> {
        let start = std::time::Instant::now();
        let wrap = |e: Error| CoreError::Method { method: "G-HBF".into(), source: Box::new(e) };
        let targets = problem
            .sinr_targets
            .as_ref()
            .ok_or_else(|| CoreError::InvalidProblem("G-HBF needs SINR targets".into()))?;
        if problem.channel.n_rx().iter().any(|&r| r != 1) {
            return Err(CoreError::InvalidProblem("G-HBF needs single-antenna users".into()));
        }
        if !(self.margin.is_finite() && self.margin > 0.0) {
            return Err(CoreError::InvalidProblem(format!("margin must be finite and > 0, got {}", self.margin)));
        }
        let r: Vec<Array2<c64>> = problem
            .channel
            .blocks()
            .iter()
            .zip(&problem.noise_power)
            .map(|(b, s2)| adjoint(b).dot(b).mapv(|z| z / *s2))
            .collect();
        let targets: Vec<f64> = targets.iter().map(|g| g * self.margin).collect();
        let opts = GreedyOptions { power_budget: Some(problem.power_budget), ..self.options };
        let init = snr_init(&self.codebook, &r, self.n_rf).map_err(wrap)?;
        let res = match greedy_hbf(&self.codebook, &r, &r, &targets, &init, &opts) {
            Ok(r) => r,
            Err(Error::Infeasible { reason, .. }) => return Err(CoreError::Infeasible(reason.to_string())),
            Err(e) => return Err(wrap(e)),
        };
        let diagnostics = Diagnostics {
            n_iterations: opts.n_selections,
            converged: true,
            objective_trace: res.power_trace.clone(),
            elapsed: start.elapsed(),
            notes: vec![format!("selection {:?}, {} baseband solves", res.selection, res.n_trials)],
        };
        Ok(Solution { precoder: Precoder::Hybrid { f: res.analog.clone(), d: res.solution.baseband() }, diagnostics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dft_codebook;
    use crate::util::testutil::rand_vec;
    use ndarray::Array1;

    fn channels(n: usize, k: usize, seed: u64) -> Vec<Array1<c64>> {
        (0..k).map(|u| rand_vec(n, seed * 31 + u as u64)).collect()
    }

    #[test]
    fn codebook_is_orthonormal_without_oversampling() {
        let c = dft_codebook(4, 4, 1, 1).unwrap();
        assert_eq!(c.dim(), (16, 16));
        let g = adjoint(&c).dot(&c);
        for ((i, j), z) in g.indexed_iter() {
            let e = if i == j { 1.0 } else { 0.0 };
            assert!((z - c64::new(e, 0.0)).norm() < 1e-12);
        }
        let over = dft_codebook(2, 3, 2, 4).unwrap();
        assert_eq!(over.dim(), (6, 48));
        assert!(over.iter().all(|z| (z.norm() - 1.0 / 6f64.sqrt()).abs() < 1e-12));
        assert!(dft_codebook(0, 4, 1, 1).is_err());
    }

    #[test]
    fn snr_init_picks_the_strongest_codewords() {
        let c = dft_codebook(4, 2, 1, 1).unwrap();
        // A user exactly on codeword 3 and one on codeword 6: both must be chosen first.
        let h: Vec<Array1<c64>> = vec![c.column(3).to_owned(), c.column(6).mapv(|z| z * 3.0)];
        let sel = snr_init(&c, &rank_one_covariances(&h), 2).unwrap();
        let mut s = sel.clone();
        s.sort_unstable();
        assert_eq!(s, vec![3, 6]);
    }

    #[test]
    fn greedy_power_never_increases_and_solution_is_exact() {
        let c = dft_codebook(4, 4, 1, 1).unwrap();
        for seed in 0..4 {
            let h = channels(16, 4, seed);
            let r = rank_one_covariances(&h);
            let targets = vec![3.0, 1.0, 5.0, 2.0];
            let init = snr_init(&c, &r, 5).unwrap();
            let opts = GreedyOptions { n_selections: 10, ..GreedyOptions::default() };
            let res = greedy_hbf(&c, &r, &r, &targets, &init, &opts).unwrap();
            assert_eq!(res.power_trace.len(), 11);
            for w in res.power_trace.windows(2) {
                assert!(w[1] <= w[0], "power increased: {:?}", res.power_trace);
            }
            assert!(res.power_trace[10] < res.power_trace[0], "no improvement at all: {:?}", res.power_trace);
            // The returned design meets every target exactly on the true channel.
            let w = res.precoder();
            for (k, hk) in h.iter().enumerate() {
                let gains: Vec<f64> = (0..4)
                    .map(|j| hk.iter().zip(w.column(j)).map(|(a, b)| a.conj() * b).sum::<c64>().norm_sqr())
                    .collect();
                let sinr = gains[k] / (gains.iter().sum::<f64>() - gains[k] + 1.0);
                assert!((sinr / targets[k] - 1.0).abs() < 1e-8, "user {k}: {sinr}");
            }
            let total: f64 = w.iter().map(|z| z.norm_sqr()).sum();
            assert!((total - res.power_trace[10]).abs() < 1e-8 * total);
        }
    }

    #[test]
    fn empty_codebook_and_bad_selection_are_typed_errors() {
        let r = vec![Array2::<c64>::eye(4)];
        let empty = Array2::<c64>::zeros((4, 0));
        assert!(matches!(snr_init(&empty, &r, 2), Err(Error::EmptyCodebook { .. })));
        assert!(matches!(
            greedy_hbf(&empty, &r, &r, &[1.0], &[], &GreedyOptions::default()),
            Err(Error::EmptyCodebook { .. })
        ));
        let c = dft_codebook(2, 2, 1, 1).unwrap();
        let too_few = snr_init(&c, &r, 5);
        assert!(matches!(too_few, Err(Error::EmptyCodebook { n_codewords: 4, n_rf: 5 })));
        for init in [[0, 0], [0, 9]] {
            assert!(matches!(
                greedy_hbf(&c, &r, &r, &[1.0], &init, &GreedyOptions::default()),
                Err(Error::InvalidSelection { n_codewords: 4, .. })
            ));
        }
    }

    #[test]
    fn infeasible_budget_is_a_typed_error() {
        let c = dft_codebook(2, 2, 1, 1).unwrap();
        let r = rank_one_covariances(&channels(4, 2, 9));
        let opts = GreedyOptions { power_budget: Some(1e-6), n_selections: 2, ..GreedyOptions::default() };
        assert!(matches!(
            greedy_hbf(&c, &r, &r, &[1.0, 1.0], &[0, 1], &opts),
            Err(Error::Infeasible { reason: InfeasibleReason::NoFeasibleSelection, .. })
        ));
    }

    #[test]
    fn beamformer_wrapper_meets_targets() {
        use beamlab_core::Channel;
        use rand::SeedableRng;
        let h = channels(16, 3, 5);
        let blocks = h.iter().map(|v| v.mapv(|z| z.conj()).insert_axis(Axis(0))).collect();
        let problem = Problem::new(Channel::new(blocks).unwrap(), 1.0, 100.0)
            .unwrap()
            .with_sinr_targets(vec![2.0, 2.0, 2.0])
            .unwrap();
        let mut bf = GreedyHbf {
            codebook: dft_codebook(4, 4, 1, 1).unwrap(),
            n_rf: 5,
            margin: 1.0,
            options: GreedyOptions::default(),
        };
        let sol = bf.solve(&problem, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0)).unwrap();
        let w = sol.precoder.effective().unwrap();
        let sinr = beamlab_linalg_ops::user_sinrs(problem.channel.blocks(), w.view(), &problem.noise_power).unwrap();
        assert!(sinr.iter().all(|s| (s / 2.0 - 1.0).abs() < 1e-8), "{sinr:?}");
    }
}
