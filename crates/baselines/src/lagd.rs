//! LAGD: learning to optimise by gradient descent (Yang et al., IEEE WCL 2022), the learned
//! baseline of both the GLNN and the MB-MAML papers — one implementation, for single- and
//! multi-antenna users.
//!
//! Per problem a fresh two-layer linear network `y = W₂(W₁ x + b₁) + b₂` (no activation,
//! `W₁: [h × 2d]`, `W₂: [2d × h]`, `h = 20`) is trained with Adam (lr 0.01, 500 iterations) on
//! `−WSR(Ĥ, W)`. Users are the batch: the input of user `k` is `x_k = [Re g_k; Im g_k]`, column
//! `k` of `G = 2 ∂(−WSR)/∂Z*` (PyTorch's `.grad` convention of the reference code) at the MRT
//! start `Z⁰`. Every iteration restarts from the start, `Z = Z⁰ + ΔZ(y)`, maps `Z` to a precoder
//! `V = A Z`, scales `V` down to the budget when it exceeds it, and scores it. The variable `Z`
//! lives in one of two spaces ([`LagdSpace`]):
//!
//! - [`LagdSpace::Precoder`] (default, the LAGD paper and the MB-MAML paper's baseline): `Z = V`
//!   (`d = M`, `A = I`);
//! - [`LagdSpace::BaseMatrix`] (the GLNN paper's multi-antenna form): `W = Ĥ^H X` with
//!   `X: [N × K]`, `N = Σ N_k` (`d = N`, `A = Ĥ^H`), as GLNN parameterises its own output.
//!
//! In both spaces the start is the MRT precoder [`crate::mrt`] (in the base-matrix space its
//! coordinates `X⁰` with `Ĥ^H X⁰ = W_MRT` up to per-user phases).
//!
//! **Gradients** are hand-written and checked against finite differences: `∂(−WSR)/∂W*` from
//! `beamlab_linalg_ops::wsr_gradient`, through the rescaling
//! (`power_normalization_chain_rule`) and `A` (`base_matrix_chain_rule`), then
//! `∂L/∂y = [2 Re G_Z; 2 Im G_Z]` and the linear layers' matrix chain rule. Parameters are one flat
//! vector updated by the shared `beamlab_linalg_ops::optim::Adam`.
//!
//! **Decisions** (`docs/baselines.md`): the input is the gradient at the restart point, as the
//! reference feeds it (feeding the gradient at the previous iterate made the linear network's
//! feedback loop unstable: 12.4 → 5.2 bit/s/Hz in our tests); the precoder after the last update
//! is returned, not the best one (which would need the objective's history to select on); and it
//! is scaled to the full budget, which can only raise every SINR, so that LAGD meets the budget
//! with equality like every baseline. Initial weights and biases are uniform in `±1/√fan_in`
//! (PyTorch's `nn.Linear` default), drawn from the `rng` passed to `solve`.

use std::time::Instant;

use beamlab_core::{Beamformer, CoreError, Diagnostics, Precoder, Problem, Solution};
use beamlab_linalg_ops::optim::Adam;
use beamlab_linalg_ops::{
    base_matrix_chain_rule, c64, normalize_total_power, power_normalization_chain_rule, wsr_gradient,
};
use ndarray::{Array2, ArrayView2, Axis, s};
use rand::{Rng, RngCore};

use crate::BaselineError;
use crate::linear::{dominant_mode, mrt};

/// The space the network's update lives in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LagdSpace {
    /// `V = V⁰ + ΔV` directly (the LAGD paper; the MB-MAML paper's baseline).
    #[default]
    Precoder,
    /// `W = Ĥ^H (X⁰ + ΔX)` (the GLNN paper's baseline, in GLNN's own output form).
    BaseMatrix,
}

/// LAGD hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LagdParams {
    /// Hidden width (20).
    pub hidden: usize,
    /// Adam learning rate (0.01).
    pub learning_rate: f64,
    /// Training iterations per problem (500).
    pub n_iterations: usize,
    /// Space of the network's update.
    pub space: LagdSpace,
}

impl Default for LagdParams {
    fn default() -> Self {
        Self { hidden: 20, learning_rate: 0.01, n_iterations: 500, space: LagdSpace::default() }
    }
}

impl LagdParams {
    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// [`BaselineError::InvalidParameter`] for a zero width or iteration count, or a learning rate
    /// that is not finite and positive.
    pub fn check(&self) -> Result<(), BaselineError> {
        if self.hidden == 0 {
            return Err(BaselineError::InvalidParameter("LAGD hidden width must be at least 1".into()));
        }
        if self.n_iterations == 0 {
            return Err(BaselineError::InvalidParameter("LAGD needs at least one iteration".into()));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(BaselineError::InvalidParameter(format!(
                "LAGD learning rate must be finite and > 0, got {}",
                self.learning_rate
            )));
        }
        Ok(())
    }
}

/// What LAGD returns: the precoder (full budget) and the WSR on `Ĥ` of every training iterate.
#[derive(Clone, Debug)]
pub struct LagdOutput {
    /// `W: [M × K]` with `‖W‖_F² = P`.
    pub w: Array2<c64>,
    /// WSR on the estimate at each iteration (before its update).
    pub trace: Vec<f64>,
}

/// The fixed data of one LAGD problem.
struct Setup<'a> {
    problem: &'a Problem,
    /// Stacked estimate `Ĥ: [N × M]` (base-matrix space only).
    h: Option<Array2<c64>>,
    /// `Ĥ^H` (base-matrix space only).
    hh: Option<Array2<c64>>,
    /// Start `Z⁰: [d × K]`.
    z0: Array2<c64>,
    /// Features `[2d × K]`.
    x: Array2<f64>,
    hidden: usize,
}

impl Setup<'_> {
    fn d(&self) -> usize {
        self.z0.nrows()
    }

    /// Views of `[W₁, b₁, W₂, b₂]` in the flat parameter vector.
    fn layers<'t>(&self, theta: &'t [f64]) -> [ArrayView2<'t, f64>; 4] {
        let (h, d2) = (self.hidden, 2 * self.d());
        let (w1, rest) = theta.split_at(h * d2);
        let (b1, rest) = rest.split_at(h);
        let (w2, b2) = rest.split_at(d2 * h);
        let view =
            |v: &'t [f64], r: usize, c: usize| ArrayView2::from_shape((r, c), v).expect("sizes fixed by n_params");
        [view(w1, h, d2), view(b1, h, 1), view(w2, d2, h), view(b2, d2, 1)]
    }

    fn n_params(&self) -> usize {
        let (h, d2) = (self.hidden, 2 * self.d());
        h * d2 + h + d2 * h + d2
    }

    /// Hidden activations and the precoder `V = A (Z⁰ + ΔZ)` before rescaling.
    fn forward(&self, theta: &[f64]) -> (Array2<f64>, Array2<c64>) {
        let [w1, b1, w2, b2] = self.layers(theta);
        let h1 = w1.dot(&self.x) + b1;
        let y = w2.dot(&h1) + b2;
        let d = self.d();
        let z = Array2::from_shape_fn(self.z0.raw_dim(), |(i, c)| self.z0[[i, c]] + c64::new(y[[i, c]], y[[i + d, c]]));
        let v = match &self.hh {
            Some(hh) => hh.dot(&z),
            None => z,
        };
        (h1, v)
    }

    fn rescale(&self, v: &Array2<c64>) -> Array2<c64> {
        let p: f64 = v.iter().map(|z| z.norm_sqr()).sum();
        let budget = self.problem.power_budget;
        if p > budget { v.mapv(|z| z * (budget / p).sqrt()) } else { v.clone() }
    }

    /// `−WSR` of the iterate and its gradient with respect to the flat parameters.
    fn loss_grad(&self, theta: &[f64], grad: &mut [f64]) -> Result<f64, BaselineError> {
        let pr = self.problem;
        let (h1, v) = self.forward(theta);
        let p_raw: f64 = v.iter().map(|z| z.norm_sqr()).sum();
        let w = self.rescale(&v);
        let (wsr, g) = wsr_gradient(pr.channel.blocks(), w.view(), &pr.noise_power, &pr.weights)?;
        let g_w = g.mapv(|z| -z);
        let g_v = if p_raw > pr.power_budget {
            power_normalization_chain_rule(v.view(), g_w.view(), pr.power_budget)?
        } else {
            g_w
        };
        let g_z = match &self.h {
            Some(h) => base_matrix_chain_rule(h.view(), g_v.view())?,
            None => g_v,
        };
        let d = self.d();
        let dy = Array2::from_shape_fn((2 * d, g_z.ncols()), |(i, c)| {
            if i < d { 2.0 * g_z[[i, c]].re } else { 2.0 * g_z[[i - d, c]].im }
        });
        let [_, _, w2, _] = self.layers(theta);
        let dh1 = w2.t().dot(&dy);
        let (hd, d2) = (self.hidden, 2 * d);
        let (gw1, rest) = grad.split_at_mut(hd * d2);
        let (gb1, rest) = rest.split_at_mut(hd);
        let (gw2, gb2) = rest.split_at_mut(d2 * hd);
        copy_into(gw1, dh1.dot(&self.x.t()).view());
        copy_into(gb1, dh1.sum_axis(Axis(1)).insert_axis(Axis(1)).view());
        copy_into(gw2, dy.dot(&h1.t()).view());
        copy_into(gb2, dy.sum_axis(Axis(1)).insert_axis(Axis(1)).view());
        Ok(-wsr)
    }
}

fn copy_into(dst: &mut [f64], src: ArrayView2<'_, f64>) {
    for (d, s) in dst.iter_mut().zip(src.iter()) {
        *d = *s;
    }
}

/// The MRT start in the base-matrix space: `X⁰` with block `k` holding `√(P/K) u_k / σ_k`
/// (dominant left singular pair of `H_k`), so that `Ĥ^H X⁰` has columns `√(P/K) v_k` — MRT.
fn mrt_base_matrix(problem: &Problem) -> Result<Array2<c64>, BaselineError> {
    let blocks = problem.channel.blocks();
    let n: usize = blocks.iter().map(|b| b.nrows()).sum();
    let k = blocks.len();
    let mut x = Array2::<c64>::zeros((n, k));
    let mut row = 0;
    for (j, hk) in blocks.iter().enumerate() {
        let (_, s, u) = dominant_mode(hk.view(), j)?;
        let scale = (problem.power_budget / k as f64).sqrt() / s;
        x.slice_mut(s![row..row + hk.nrows(), j]).assign(&u.mapv(|z| z * scale));
        row += hk.nrows();
    }
    Ok(x)
}

fn setup<'a>(problem: &'a Problem, params: &LagdParams) -> Result<Setup<'a>, BaselineError> {
    let w0 = mrt(problem)?;
    let (_, g0) = wsr_gradient(problem.channel.blocks(), w0.view(), &problem.noise_power, &problem.weights)?;
    let (h, hh, z0, g0z) = match params.space {
        LagdSpace::Precoder => (None, None, w0, g0),
        LagdSpace::BaseMatrix => {
            let h = problem.channel.stacked();
            let g0x = base_matrix_chain_rule(h.view(), g0.view())?;
            let hh = h.t().mapv(|z| z.conj());
            (Some(h), Some(hh), mrt_base_matrix(problem)?, g0x)
        }
    };
    // x_k = [Re g_k; Im g_k] of 2 ∂(−WSR)/∂Z* = −2 ∂WSR/∂Z*.
    let d = z0.nrows();
    let x = Array2::from_shape_fn((2 * d, z0.ncols()), |(i, c)| {
        if i < d { -2.0 * g0z[[i, c]].re } else { -2.0 * g0z[[i - d, c]].im }
    });
    Ok(Setup { problem, h, hh, z0, x, hidden: params.hidden })
}

/// Runs LAGD on `problem` (a fresh network initialised from `rng`).
///
/// # Errors
/// [`BaselineError::InvalidParameter`] for bad hyper-parameters, [`BaselineError::ZeroChannel`]
/// for a user without channel, [`BaselineError::Numerical`] when an iterate stops being finite,
/// and input-validation errors.
pub fn lagd(problem: &Problem, params: &LagdParams, rng: &mut dyn RngCore) -> Result<LagdOutput, BaselineError> {
    params.check()?;
    problem.validate()?;
    let st = setup(problem, params)?;
    let (hd, d2) = (params.hidden, 2 * st.d());
    let mut theta = Vec::with_capacity(st.n_params());
    for (len, fan_in) in [(hd * d2, d2), (hd, d2), (d2 * hd, hd), (d2, hd)] {
        let b = 1.0 / (fan_in as f64).sqrt();
        theta.extend((0..len).map(|_| (rng.random::<f64>() * 2.0 - 1.0) * b));
    }
    let mut grad = vec![0.0; theta.len()];
    let mut adam = Adam::new(theta.len());
    let mut trace = Vec::with_capacity(params.n_iterations);
    for it in 0..params.n_iterations {
        let loss = st.loss_grad(&theta, &mut grad)?;
        if !loss.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            return Err(BaselineError::Numerical(format!("LAGD iterate {it} is not finite")));
        }
        trace.push(-loss);
        adam.step(&mut theta, &grad, params.learning_rate)?;
    }
    let (_, v) = st.forward(&theta);
    let w = st.rescale(&v);
    if w.iter().any(|z| !(z.re.is_finite() && z.im.is_finite())) {
        return Err(BaselineError::Numerical("LAGD precoder is not finite".into()));
    }
    Ok(LagdOutput { w: normalize_total_power(w.view(), problem.power_budget)?, trace })
}

/// [`lagd`] as a [`Beamformer`] (classical in the runner's sense: a fresh network per problem).
#[derive(Clone, Debug, Default)]
pub struct Lagd {
    /// Hyper-parameters.
    pub params: LagdParams,
}

impl Beamformer for Lagd {
    fn name(&self) -> &str {
        "LAGD"
    }

    fn solve(&mut self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Solution, CoreError> {
        let start = Instant::now();
        let out = lagd(problem, &self.params, rng)?;
        Ok(Solution {
            precoder: Precoder::Digital { w: out.w },
            diagnostics: Diagnostics {
                n_iterations: out.trace.len(),
                converged: false,
                objective_trace: out.trace,
                elapsed: start.elapsed(),
                notes: Vec::new(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamlab_linalg_ops::user_rates;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn problem(k: usize, n_rx: usize, m: usize, power: f64, seed: u64) -> Problem {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = beamlab_channel::rayleigh(k, n_rx, m, &mut rng).unwrap();
        Problem::new(h, 1.0, power).unwrap()
    }

    fn sum_rate(p: &Problem, w: &Array2<c64>) -> f64 {
        user_rates(p.channel.blocks(), w.view(), &p.noise_power).unwrap().sum()
    }

    #[test]
    fn base_matrix_start_is_mrt() {
        let p = problem(3, 2, 12, 6.0, 4);
        let x = mrt_base_matrix(&p).unwrap();
        let w = p.channel.stacked().t().mapv(|z| z.conj()).dot(&x);
        let w_mrt = mrt(&p).unwrap();
        // Equal up to a per-column phase.
        for (a, b) in w.columns().into_iter().zip(w_mrt.columns()) {
            let ip: c64 = a.iter().zip(b.iter()).map(|(x, y)| x.conj() * y).sum();
            let na: f64 = a.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt();
            assert!((ip.norm() - na * nb).abs() < 1e-9 * na * nb);
            assert!((na - nb).abs() < 1e-9 * nb);
        }
    }

    #[test]
    fn improves_on_mrt_and_meets_the_budget_in_both_spaces() {
        for (space, n_rx, seed) in
            [(LagdSpace::Precoder, 1, 1), (LagdSpace::BaseMatrix, 2, 8), (LagdSpace::Precoder, 2, 3)]
        {
            let p = problem(4, n_rx, 16, 10.0, seed);
            let params = LagdParams { n_iterations: 150, space, ..Default::default() };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let out = lagd(&p, &params, &mut rng).unwrap();
            let pw: f64 = out.w.iter().map(|z| z.norm_sqr()).sum();
            assert!((pw - 10.0).abs() < 1e-9);
            let (r, r_mrt) = (sum_rate(&p, &out.w), sum_rate(&p, &mrt(&p).unwrap()));
            assert!(r > r_mrt + 0.5, "{space:?}: LAGD {r} should beat its MRT start {r_mrt}");
            assert_eq!(out.trace.len(), 150);
        }
    }

    #[test]
    fn tiny_steps_ascend_and_runs_are_seeded() {
        let p = problem(3, 1, 8, 1.0, 5);
        let params = LagdParams { n_iterations: 3, learning_rate: 1e-5, ..Default::default() };
        let out = lagd(&p, &params, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert!(out.trace[2] > out.trace[0], "{:?}", out.trace);
        let again = lagd(&p, &params, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(out.w, again.w);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let p = problem(2, 1, 4, 1.0, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for bad in [
            LagdParams { hidden: 0, ..Default::default() },
            LagdParams { n_iterations: 0, ..Default::default() },
            LagdParams { learning_rate: f64::NAN, ..Default::default() },
            LagdParams { learning_rate: -1.0, ..Default::default() },
        ] {
            assert!(matches!(lagd(&p, &bad, &mut rng), Err(BaselineError::InvalidParameter(_))));
        }
    }

    /// The hand-written parameter gradient against central finite differences of −WSR, in both
    /// spaces, with the rescaling inactive and active.
    #[test]
    fn gradients_match_finite_differences() {
        for space in [LagdSpace::Precoder, LagdSpace::BaseMatrix] {
            let p = problem(3, 2, 4, 1.0, 2);
            let params = LagdParams { hidden: 5, space, ..Default::default() };
            let st = setup(&p, &params).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            for scale in [0.01, 1.0] {
                let theta: Vec<f64> = (0..st.n_params()).map(|_| (rng.random::<f64>() - 0.5) * scale).collect();
                let (_, v) = st.forward(&theta);
                let over = v.iter().map(|z| z.norm_sqr()).sum::<f64>() > p.power_budget;
                let mut g = vec![0.0; theta.len()];
                st.loss_grad(&theta, &mut g).unwrap();
                let mut scratch = vec![0.0; theta.len()];
                let eps = 1e-6;
                for i in 0..theta.len() {
                    let mut t = theta.clone();
                    t[i] += eps;
                    let up = st.loss_grad(&t, &mut scratch).unwrap();
                    t[i] -= 2.0 * eps;
                    let down = st.loss_grad(&t, &mut scratch).unwrap();
                    let fd = (up - down) / (2.0 * eps);
                    assert!(
                        (fd - g[i]).abs() < 1e-5 * (1.0 + fd.abs()),
                        "{space:?}, scale {scale} (rescaled: {over}), θ[{i}]: {fd} vs {}",
                        g[i]
                    );
                }
            }
        }
    }
}
