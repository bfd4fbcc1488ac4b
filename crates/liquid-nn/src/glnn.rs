//! GLNN: gradient-fed liquid neural network beamforming (online, one network across samples).
//!
//! # System
//! Downlink MU-MIMO, stacked estimated channel `Ĥ: [N × M]` (`N = Σ N_k`), precoder in the
//! base-matrix form `W = √P · Ĥ^H X / ‖Ĥ^H X‖_F` with `X: [N × K]`, so the power budget holds with
//! equality, `‖W‖_F² = P`, always. (The reference code scales by `√P/√‖W‖_F`, which radiates
//! `P‖W‖_F` — about 25 dB over budget on i.i.d. channels; see `docs/glnn.md`.)
//!
//! # Algorithm (per sample, as the reference runs it)
//! 1. `X_0` complex Gaussian (or, for [`Variant::Plus`], the previous sample's `X`).
//! 2. Input: `G = 2 ∂L/∂X*` at `X_0` (PyTorch's convention), from `linalg-ops`' analytic gradient
//!    (rates → normalisation → base matrix); fed to a wired CfC as one sequence of `N` time steps of
//!    `2K` features `[Re G | Im G]` (RMS-normalised for [`Variant::Plus`]).
//! 3. The CfC's motor outputs go through a linear head to `2K` values per step:
//!    `ΔX = out[:, :K] + j out[:, K:]`, `X = X_0 + ΔX`, `W` as above.
//! 4. Loss `L = −Σ R_k + 0.7 Σ ReLU(2.5 − R_k) + 0.3 Var(R)` on `Ĥ`; its gradient with respect to
//!    `W` (analytic) is injected into the candle graph and one Adam step (lr 0.01) is taken.
//! 5. Repeat `n_passes` (3) times from the same `X_0` and input (or, for [`Variant::Plus`], from
//!    the previous pass's `X` with a fresh gradient); report the last `W`.
//!
//! The CfC hidden state is carried across rows, passes and samples (detached between calls). A
//! non-finite loss, gradient or parameter after a step is detected: the step is rolled back, the
//! hidden state reset, and the event recorded in the diagnostics, so later samples are unaffected.

use std::time::Instant;

use beamlab_candle_bridge::candle_core::{DType, Device, Tensor};
use beamlab_candle_bridge::candle_nn::{self, AdamW, Module, VarMap};
use beamlab_candle_bridge::{
    ComplexTensor, adam, all_finite, restore, seeded_var_builder, snapshot, step, wirtinger_surrogate,
};
use beamlab_core::{Beamformer, CoreError, Diagnostics, MethodKind, Precoder, Problem, Solution};
use beamlab_linalg_ops::{
    PenalisedLoss, base_matrix_chain_rule, c64, normalize_total_power, penalised_loss_gradient,
    power_normalization_chain_rule,
};
use ndarray::Array2;
use rand::RngCore;
use rand_distr::{Distribution, StandardNormal};

use crate::LiquidError;
use crate::cfc::{CfcMode, WiredCfc};
use crate::lstm::Lstm;
use crate::sequence::RecurrentCell;
use crate::sequence::SequenceRunner;
use crate::wiring::auto_ncp;

/// GLNN hyper-parameters (defaults: the reference code's).
#[derive(Clone, Debug, PartialEq)]
pub struct GlnnParams {
    /// Neurons of the NCP wiring (30).
    pub units: usize,
    /// Motor neurons (8).
    pub n_motor: usize,
    /// Wiring sparsity (0.5).
    pub sparsity: f64,
    /// CfC mode (default).
    pub mode: CfcMode,
    /// Adam learning rate (0.01).
    pub learning_rate: f64,
    /// Passes per sample, `N_e` (3).
    pub n_passes: usize,
    /// Training loss.
    pub loss: PenalisedLoss,
    /// Seed of the wiring and the initial weights.
    pub seed: u64,
    /// The paper's GLNN (default) or beamlab's GLNN+.
    pub variant: Variant,
    /// The recurrent cell: the wired CfC (GLNN) or an LSTM (the paper's LSTM baseline).
    pub cell: CellKind,
}

/// Which algorithm runs on the gradient-fed pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Variant {
    /// The paper's GLNN: every sample starts from a fresh Gaussian `X_0`, the network sees the raw
    /// input gradient at `X_0`, and every pass restarts from `X_0` with that same input.
    #[default]
    Paper,
    /// beamlab's GLNN+ (a separate method): each pass continues from the previous pass's `X` with a
    /// fresh input gradient; each sample starts from the previous sample's `X` (moving users);
    /// the input gradient is RMS-normalised (its scale otherwise varies by orders of magnitude
    /// with `P`). Whether it helps is measured in `results/REPORT.md` (claim "GLNN+ beats GLNN").
    Plus,
}

impl Variant {
    /// Whether each pass continues from the previous pass's `X` with a fresh input gradient.
    fn accumulates(self) -> bool {
        self == Variant::Plus
    }

    /// Whether each sample starts from the previous sample's `X`.
    fn warm_starts(self) -> bool {
        self == Variant::Plus
    }

    /// Whether the input gradient is RMS-normalised.
    fn normalises_input(self) -> bool {
        self == Variant::Plus
    }
}

/// The recurrent cell of the gradient-fed pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CellKind {
    /// Wired CfC on an AutoNCP wiring (`units`, `n_motor`, `sparsity`, `mode`).
    #[default]
    Cfc,
    /// Standard LSTM with this many hidden units (the head maps them to `2K` outputs).
    Lstm {
        /// Hidden units.
        hidden: usize,
    },
}

impl Default for GlnnParams {
    fn default() -> Self {
        Self {
            units: 30,
            n_motor: 8,
            sparsity: 0.5,
            mode: CfcMode::Default,
            learning_rate: 0.01,
            n_passes: 3,
            loss: PenalisedLoss::glnn(),
            seed: 0,
            variant: Variant::Paper,
            cell: CellKind::Cfc,
        }
    }
}

impl GlnnParams {
    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// [`LiquidError::InvalidParameter`].
    pub fn check(&self) -> Result<(), LiquidError> {
        if self.n_passes == 0 {
            return Err(LiquidError::InvalidParameter("n_passes must be >= 1".into()));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(LiquidError::InvalidParameter(format!(
                "learning_rate must be finite and > 0, got {}",
                self.learning_rate
            )));
        }
        if self.n_motor == 0 || self.units <= self.n_motor {
            return Err(LiquidError::InvalidParameter(format!(
                "need units ({}) > n_motor ({}) >= 1",
                self.units, self.n_motor
            )));
        }
        Ok(())
    }
}

/// The network: wired CfC + linear head, with its optimiser and carried state.
struct Network {
    vars: VarMap,
    runner: SequenceRunner<Box<dyn RecurrentCell + Send + Sync>>,
    head: candle_nn::Linear,
    opt: AdamW,
    /// Parameters that last produced a finite forward pass (restored after a divergence).
    good: Vec<(String, Tensor)>,
    n_rows: usize,
    n_users: usize,
}

/// The GLNN beamformer (online: feed samples in order).
pub struct Glnn {
    params: GlnnParams,
    name: String,
    net: Option<Network>,
    previous_x: Option<Array2<c64>>,
    n_rollbacks: usize,
}

impl Glnn {
    /// A GLNN beamformer; the network is built at the first sample (its sizes follow the problem).
    ///
    /// # Errors
    /// Invalid hyper-parameters.
    pub fn new(params: GlnnParams) -> Result<Self, LiquidError> {
        params.check()?;
        let name = match (params.cell, params.variant) {
            (CellKind::Lstm { .. }, _) => "LSTM",
            (CellKind::Cfc, Variant::Plus) => "GLNN+",
            (CellKind::Cfc, Variant::Paper) => "GLNN",
        }
        .to_string();
        Ok(Self { params, name, net: None, previous_x: None, n_rollbacks: 0 })
    }

    /// Overrides the display name.
    #[must_use]
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Diverged steps rolled back so far.
    #[must_use]
    pub fn n_rollbacks(&self) -> usize {
        self.n_rollbacks
    }

    fn build(&self, n_rows: usize, n_users: usize) -> Result<Network, LiquidError> {
        let n_features = 2 * n_users;
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, self.params.seed, DType::F64, &Device::Cpu);
        let cell: Box<dyn RecurrentCell + Send + Sync> = match self.params.cell {
            CellKind::Cfc => {
                let wiring = auto_ncp(
                    n_features,
                    self.params.units,
                    self.params.n_motor,
                    self.params.sparsity,
                    self.params.seed,
                )?;
                Box::new(WiredCfc::new(&wiring, self.params.mode, vb.pp("cfc"))?)
            }
            CellKind::Lstm { hidden } => Box::new(Lstm::new(n_features, hidden, vb.pp("lstm"))?),
        };
        let head = candle_nn::linear(cell.output_size(), n_features, vb.pp("head"))?;
        let runner = SequenceRunner::new(cell)?;
        let opt = adam(&vars, self.params.learning_rate)?;
        let good = snapshot(&vars)?;
        Ok(Network { vars, runner, head, opt, good, n_rows, n_users })
    }

    /// `2 ∂L/∂X*` at `X` (PyTorch's convention, as the network was designed for).
    fn input_gradient(
        problem: &Problem,
        h_stacked: &Array2<c64>,
        x: &Array2<c64>,
        loss: &PenalisedLoss,
    ) -> Result<Array2<c64>, LiquidError> {
        let v = h_stacked.t().mapv(|z| z.conj()).dot(x);
        let w = normalize_total_power(v.view(), problem.power_budget)?;
        let lg = penalised_loss_gradient(problem.channel.blocks(), w.view(), &problem.noise_power, loss)?;
        let g_v = power_normalization_chain_rule(v.view(), lg.grad.view(), problem.power_budget)?;
        Ok(base_matrix_chain_rule(h_stacked.view(), g_v.view())?.mapv(|z| z * 2.0))
    }

    fn solve_inner(&mut self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Solution, LiquidError> {
        let start = Instant::now();
        problem.validate()?;
        let h = problem.channel.stacked();
        let (n_rows, n_users) = (h.nrows(), problem.n_users());
        if h.iter().all(|z| z.norm_sqr() == 0.0) {
            return Err(LiquidError::ZeroChannel);
        }
        match &self.net {
            Some(net) if net.n_rows != n_rows || net.n_users != n_users => {
                return Err(LiquidError::ProblemSizeChanged {
                    built_rows: net.n_rows,
                    built_users: net.n_users,
                    rows: n_rows,
                    users: n_users,
                });
            }
            Some(_) => {}
            None => self.net = Some(self.build(n_rows, n_users)?),
        }
        let params = self.params.clone();
        let power = problem.power_budget;
        let hh = h.t().mapv(|z| z.conj());
        let mut x0 = match (&self.previous_x, params.variant.warm_starts()) {
            (Some(prev), true) if prev.dim() == (n_rows, n_users) => prev.clone(),
            _ => Array2::from_shape_fn((n_rows, n_users), |_| {
                let re: f64 = StandardNormal.sample(rng);
                let im: f64 = StandardNormal.sample(rng);
                c64::new(re, im)
            }),
        };
        // Scale so that ‖Ĥ^H X_0‖_F = √P (the reference's initial scaling).
        let v0 = beamlab_linalg_ops::total_power(hh.dot(&x0).view());
        if v0 > 0.0 {
            x0.mapv_inplace(|z| z * (power / v0).sqrt());
        }
        // `[Re Ĥ^H ; Im Ĥ^H]: [2M × N]`, constant per sample: with `X = [Re X | Im X]: [N × 2K]`,
        // one product `C X` holds all four real blocks of `Ĥ^H X`.
        let m = hh.nrows();
        let c = {
            let mut v: Vec<f64> = hh.iter().map(|z| z.re).collect();
            v.extend(hh.iter().map(|z| z.im));
            Tensor::from_vec(v, (2 * m, n_rows), &Device::Cpu)?
        };
        let to_cat = |x: &Array2<c64>| -> Result<Tensor, LiquidError> {
            let mut v = Vec::with_capacity(2 * x.len());
            for row in x.rows() {
                v.extend(row.iter().map(|z| z.re));
                v.extend(row.iter().map(|z| z.im));
            }
            Ok(Tensor::from_vec(v, (n_rows, 2 * n_users), &Device::Cpu)?)
        };
        let mut g = Self::input_gradient(problem, &h, &x0, &params.loss)?;
        let mut x_base_t = to_cat(&x0)?;
        let mut x_base = x0;
        let mut last_w: Option<Array2<c64>> = None;
        let mut trace = Vec::with_capacity(params.n_passes);
        let mut notes = Vec::new();
        let Some(net) = self.net.as_mut() else {
            return Err(LiquidError::InvalidParameter("network not built".into()));
        };
        for pass in 0..params.n_passes {
            if params.variant.accumulates() && pass > 0 {
                g = Self::input_gradient(problem, &h, &x_base, &params.loss)?;
            }
            let mut feats: Vec<f64> = Vec::with_capacity(n_rows * 2 * n_users);
            for row in g.rows() {
                feats.extend(row.iter().map(|z| z.re));
                feats.extend(row.iter().map(|z| z.im));
            }
            if params.variant.normalises_input() {
                let rms = (feats.iter().map(|v| v * v).sum::<f64>() / feats.len() as f64).sqrt();
                if rms > 0.0 {
                    feats.iter_mut().for_each(|v| *v /= rms);
                }
            }
            let z = Tensor::from_vec(feats, (n_rows, 2 * n_users), &Device::Cpu)?;
            let before_step = snapshot(&net.vars)?;
            let motor = net.runner.run(&z, 1.0)?;
            // X = X_0 + ΔX as `[Re X | Im X]`, then Ĥ^H X from the blocks of `C X`.
            let x = (net.head.forward(&motor)? + &x_base_t)?;
            let y = c.matmul(&x)?;
            let block = |r: usize, col: usize| y.narrow(0, r * m, m)?.narrow(1, col * n_users, n_users);
            let w = ComplexTensor::new((block(0, 0)? - block(1, 1)?)?, (block(0, 1)? + block(1, 0)?)?)?
                .normalize_power(power)?;
            let w_nd = w.to_array()?;
            let finite = |a: &Array2<c64>| a.iter().all(|z| z.re.is_finite() && z.im.is_finite());
            // An overflowing ‖Ĥ^H X‖ makes the normalisation return 0 instead of a power-P precoder.
            let on_budget = (beamlab_linalg_ops::total_power(w_nd.view()) - power).abs() <= 1e-6 * power;
            let lg = if finite(&w_nd) && on_budget {
                penalised_loss_gradient(problem.channel.blocks(), w_nd.view(), &problem.noise_power, &params.loss)
                    .ok()
                    .filter(|lg| lg.loss.is_finite() && finite(&lg.grad))
            } else {
                None
            };
            let Some(lg) = lg else {
                // The current parameters produce a non-finite forward pass: go back to the last
                // parameters that did not, with a fresh optimiser and hidden state.
                restore(&net.vars, &net.good)?;
                net.opt = adam(&net.vars, params.learning_rate)?;
                net.runner.reset()?;
                self.n_rollbacks += 1;
                notes.push(format!("pass {pass}: non-finite forward pass; parameters rolled back"));
                continue;
            };
            let s = wirtinger_surrogate(&w, &lg.grad)?;
            step(&mut net.opt, &s)?;
            if all_finite(&net.vars)? {
                net.good = before_step;
            } else {
                restore(&net.vars, &before_step)?;
                net.opt = adam(&net.vars, params.learning_rate)?;
                net.runner.reset()?;
                self.n_rollbacks += 1;
                notes.push(format!("pass {pass}: non-finite parameters after the step; step rolled back"));
            }
            trace.push(lg.loss);
            if params.variant.accumulates() {
                let v: Vec<Vec<f64>> = x.to_vec2()?;
                x_base = Array2::from_shape_fn((n_rows, n_users), |(i, j)| c64::new(v[i][j], v[i][j + n_users]));
                x_base_t = x.detach();
            }
            last_w = Some(w_nd);
        }
        let w = match last_w {
            Some(w) => w,
            // Every pass diverged: fall back to the initial point, which meets the budget.
            None => normalize_total_power(hh.dot(&x_base).view(), power)?,
        };
        self.previous_x = Some(x_base);
        Ok(Solution {
            precoder: Precoder::Digital { w },
            diagnostics: Diagnostics {
                n_iterations: params.n_passes,
                converged: notes.is_empty(),
                objective_trace: trace,
                elapsed: start.elapsed(),
                notes,
            },
        })
    }
}

impl Beamformer for Glnn {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> MethodKind {
        MethodKind::Online
    }

    fn solve(&mut self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Solution, CoreError> {
        self.solve_inner(problem, rng).map_err(|e| match e {
            LiquidError::Core(c) => c,
            LiquidError::Linalg(l) => CoreError::Linalg(l),
            other => CoreError::Method { method: self.name.clone(), source: Box::new(other) },
        })
    }

    fn reset(&mut self) {
        self.net = None;
        self.previous_x = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamlab_core::Channel;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn problem(seed: u64) -> Problem {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = beamlab_channel::rayleigh(4, 2, 16, &mut rng).unwrap();
        Problem::new(h, 1.0, 10.0).unwrap()
    }

    #[test]
    fn meets_the_power_budget_exactly_and_is_deterministic() {
        let run = || {
            let mut g = Glnn::new(GlnnParams { seed: 3, ..Default::default() }).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            (0..4)
                .map(|s| {
                    let sol = g.solve(&problem(s), &mut rng).unwrap();
                    let p = sol.precoder.total_power().unwrap();
                    assert!((p - 10.0).abs() < 1e-9, "power {p}");
                    sol.precoder.effective().unwrap()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        let p = problem(7);
        let h = p.channel.stacked();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x = Array2::from_shape_fn((8, 4), |_| {
            c64::new(StandardNormal.sample(&mut rng), StandardNormal.sample(&mut rng))
        });
        let loss = PenalisedLoss::glnn();
        let g = Glnn::input_gradient(&p, &h, &x, &loss).unwrap();
        let f = |xx: &Array2<c64>| {
            let w = normalize_total_power(h.t().mapv(|z| z.conj()).dot(xx).view(), 10.0).unwrap();
            let r = beamlab_linalg_ops::user_rates(p.channel.blocks(), w.view(), &p.noise_power).unwrap();
            loss.value_and_rate_derivative(r.as_slice().unwrap()).0
        };
        // PyTorch convention: g = ∂L/∂Re X + j ∂L/∂Im X.
        for &(i, j) in &[(0usize, 0usize), (5, 3)] {
            let t = 1e-6;
            let mut xp = x.clone();
            xp[[i, j]] += c64::new(t, 0.0);
            let mut xm = x.clone();
            xm[[i, j]] -= c64::new(t, 0.0);
            let d_re = (f(&xp) - f(&xm)) / (2.0 * t);
            let mut xp = x.clone();
            xp[[i, j]] += c64::new(0.0, t);
            let mut xm = x.clone();
            xm[[i, j]] -= c64::new(0.0, t);
            let d_im = (f(&xp) - f(&xm)) / (2.0 * t);
            assert!((g[[i, j]].re - d_re).abs() < 1e-6 * d_re.abs().max(1.0));
            assert!((g[[i, j]].im - d_im).abs() < 1e-6 * d_im.abs().max(1.0));
        }
    }

    #[test]
    fn plus_variant_is_a_separate_method() {
        let run = |variant: Variant| {
            let mut g = Glnn::new(GlnnParams { variant, seed: 3, ..Default::default() }).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let w: Vec<_> =
                (0..3).map(|s| g.solve(&problem(s), &mut rng).unwrap().precoder.effective().unwrap()).collect();
            (g.name().to_string(), w)
        };
        let (paper, plus) = (run(Variant::default()), run(Variant::Plus));
        assert_eq!((paper.0.as_str(), plus.0.as_str()), ("GLNN", "GLNN+"));
        assert_ne!(paper.1, plus.1);
        assert_eq!(GlnnParams::default().variant, Variant::Paper);
    }

    #[test]
    fn typed_errors_for_a_zero_channel_and_a_changed_size() {
        let mut g = Glnn::new(GlnnParams::default()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let zero = Channel::new(vec![Array2::zeros((2, 16)); 4]).unwrap();
        let p0 = Problem::new(zero, 1.0, 10.0).unwrap();
        assert!(matches!(g.solve_inner(&p0, &mut rng), Err(LiquidError::ZeroChannel)));
        let _ = g.solve(&problem(0), &mut rng).unwrap();
        let mut r = ChaCha8Rng::seed_from_u64(5);
        let small = Problem::new(beamlab_channel::rayleigh(3, 2, 16, &mut r).unwrap(), 1.0, 10.0).unwrap();
        assert!(matches!(
            g.solve_inner(&small, &mut rng),
            Err(LiquidError::ProblemSizeChanged { built_rows: 8, built_users: 4, rows: 6, users: 3 })
        ));
        g.reset();
        assert!(g.solve_inner(&small, &mut rng).is_ok(), "a reset method serves the new size");
    }

    #[test]
    fn lstm_pipeline_meets_the_budget() {
        let mut g = Glnn::new(GlnnParams { cell: CellKind::Lstm { hidden: 30 }, ..Default::default() }).unwrap();
        assert_eq!(g.name(), "LSTM");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for s in 0..3 {
            let sol = g.solve(&problem(s), &mut rng).unwrap();
            assert!((sol.precoder.total_power().unwrap() - 10.0).abs() < 1e-9);
        }
    }

    #[test]
    fn bad_input_gives_typed_errors() {
        let mut g = Glnn::new(GlnnParams::default()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let zero = Problem::new(Channel::new(vec![Array2::zeros((2, 8)); 2]).unwrap(), 1.0, 1.0).unwrap();
        assert!(g.solve(&zero, &mut rng).is_err());
        let _ = g.solve(&problem(1), &mut rng).unwrap();
        // A problem of another size after the network was built.
        let mut rng2 = ChaCha8Rng::seed_from_u64(5);
        let other = Problem::new(beamlab_channel::rayleigh(3, 2, 16, &mut rng2).unwrap(), 1.0, 10.0).unwrap();
        assert!(g.solve(&other, &mut rng).is_err());
        assert!(Glnn::new(GlnnParams { n_passes: 0, ..Default::default() }).is_err());
        assert!(Glnn::new(GlnnParams { learning_rate: f64::NAN, ..Default::default() }).is_err());
    }

    #[test]
    fn a_diverging_step_is_rolled_back_and_does_not_poison_later_samples() {
        let mut g = Glnn::new(GlnnParams { learning_rate: 1e300, ..Default::default() }).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for s in 0..3 {
            let sol = g.solve(&problem(s), &mut rng).unwrap();
            let p = sol.precoder.total_power().unwrap();
            assert!((p - 10.0).abs() < 1e-9 && p.is_finite());
        }
        assert!(g.n_rollbacks() > 0, "a learning rate of 1e300 must diverge");
        let net = g.net.as_ref().unwrap();
        assert!(all_finite(&net.vars).unwrap());
    }
}
