//! LAGD baseline (learning-to-optimise with a gradient-fed linear network, spec §7, after
//! XiaGroup/LAGD — re-derived here, no code taken).
//!
//! Per problem (channel estimate `h̄_k: [M]`, `K` users): a fresh two-layer linear network
//! `y = W₂(W₁ x + b₁) + b₂`, `W₁: [20 × 2M]`, `W₂: [2M × 20]`, no activation, is applied to every
//! column of the gradient `G⁰ = ∂(−WSR)/∂V* (h̄, V⁰)` at the MRT start `V⁰ = √P H̄/‖H̄‖_F`
//! (`x_k = [Re g_k; Im g_k]`), giving `V = V⁰ + ΔV` (rescaled to `√P` when `‖V‖² > P`). The
//! network is trained with Adam (lr 0.01) on `−WSR(h̄, V)` for 500 iterations; the precoder of
//! the final iteration is returned (not the best one). Gradients are hand-written: the WSR
//! gradient comes from `beamlab_linalg_ops::wsr_gradient`, the rescaling through
//! `power_normalization_chain_rule`, the linear layers by the usual matrix chain rule
//! (`∂f/∂Re V = 2 Re ∂f/∂V*`, `∂f/∂Im V = 2 Im ∂f/∂V*`).

use beamlab_linalg_ops::{c64, power_normalization_chain_rule, wsr_gradient};
use ndarray::{Array1, Array2, Axis};
use rand::Rng;

use crate::MetaLearnError;
use crate::wmmse::{SystemParams, WmmseOutput, check_columns, mrt_init};

/// LAGD settings (spec: hidden 20, Adam lr 0.01, 500 iterations).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LagdConfig {
    /// Hidden width.
    pub hidden: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Training iterations per problem.
    pub n_iterations: usize,
}

impl Default for LagdConfig {
    fn default() -> Self {
        Self { hidden: 20, lr: 0.01, n_iterations: 500 }
    }
}

fn blocks(h: &[Array1<c64>]) -> Vec<Array2<c64>> {
    h.iter().map(|c| Array2::from_shape_fn((1, c.len()), |(_, j)| c[j].conj())).collect()
}

struct Adam {
    m: Vec<Array2<f64>>,
    v: Vec<Array2<f64>>,
    t: i32,
}

impl Adam {
    fn step(&mut self, params: &mut [Array2<f64>], grads: &[Array2<f64>], lr: f64) {
        self.t += 1;
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        let c1 = 1.0 - f64::powi(b1, self.t);
        let c2 = 1.0 - f64::powi(b2, self.t);
        for i in 0..params.len() {
            self.m[i].zip_mut_with(&grads[i], |m, g| *m = b1 * *m + (1.0 - b1) * g);
            self.v[i].zip_mut_with(&grads[i], |v, g| *v = b2 * *v + (1.0 - b2) * g * g);
            let (m, v) = (&self.m[i], &self.v[i]);
            ndarray::Zip::from(&mut params[i]).and(m).and(v).for_each(|p, &m, &v| {
                *p -= lr * (m / c1) / ((v / c2).sqrt() + eps);
            });
        }
    }
}

/// The network output `V_raw = V⁰ + ΔV` and the hidden activations.
fn forward(x: &Array2<f64>, v0: &Array2<c64>, params: &[Array2<f64>]) -> (Array2<f64>, Array2<c64>) {
    let (m, k) = v0.dim();
    let h1 = params[0].dot(x) + &params[1];
    let y = params[2].dot(&h1) + &params[3];
    let v = Array2::from_shape_fn((m, k), |(i, c)| v0[[i, c]] + c64::new(y[[i, c]], y[[i + m, c]]));
    (h1, v)
}

fn rescale(v: &Array2<c64>, power: f64) -> Array2<c64> {
    let p: f64 = v.iter().map(|z| z.norm_sqr()).sum();
    if p > power { v.mapv(|z| z * (power / p).sqrt()) } else { v.clone() }
}

/// WSR on `h̄` of the current network and the gradients of `−WSR` with respect to
/// `[W₁, b₁, W₂, b₂]`.
fn loss_grad(
    x: &Array2<f64>,
    v0: &Array2<c64>,
    hb: &[Array2<c64>],
    sys: &SystemParams,
    params: &[Array2<f64>],
) -> Result<(f64, Vec<Array2<f64>>), MetaLearnError> {
    let (m, k) = v0.dim();
    let (h1, v_raw) = forward(x, v0, params);
    let p_raw: f64 = v_raw.iter().map(|z| z.norm_sqr()).sum();
    let v = rescale(&v_raw, sys.power);
    let (wsr, g) = wsr_gradient(hb, v.view(), &sys.noise, &sys.weights)?;
    // ∂(−WSR)/∂V_raw*.
    let g_loss = g.mapv(|z| -z);
    let g_raw = if p_raw > sys.power {
        power_normalization_chain_rule(v_raw.view(), g_loss.view(), sys.power)?
    } else {
        g_loss
    };
    let dy = Array2::from_shape_fn(
        (2 * m, k),
        |(i, c)| if i < m { 2.0 * g_raw[[i, c]].re } else { 2.0 * g_raw[[i - m, c]].im },
    );
    let dw2 = dy.dot(&h1.t());
    let db2 = dy.sum_axis(Axis(1)).insert_axis(Axis(1));
    let dh1 = params[2].t().dot(&dy);
    let dw1 = dh1.dot(&x.t());
    let db1 = dh1.sum_axis(Axis(1)).insert_axis(Axis(1));
    Ok((wsr, vec![dw1, db1, dw2, db2]))
}

/// Runs LAGD on one problem; `objective_trace` holds the WSR on `h̄` at every iteration.
///
/// # Errors
/// Bad shapes or parameters, non-finite input, a zero hidden width or iteration count.
pub fn lagd<R: Rng + ?Sized>(
    h_bar: &[Array1<c64>],
    sys: &SystemParams,
    config: &LagdConfig,
    rng: &mut R,
) -> Result<WmmseOutput, MetaLearnError> {
    let m = check_columns(h_bar)?;
    sys.check(h_bar.len())?;
    if config.hidden == 0 || config.n_iterations == 0 || !(config.lr.is_finite() && config.lr > 0.0) {
        return Err(MetaLearnError::InvalidParameter(format!("invalid LAGD configuration {config:?}")));
    }
    let k = h_bar.len();
    let hb = blocks(h_bar);
    let v0 = mrt_init(h_bar, sys.power);
    let (_, g0) = wsr_gradient(&hb, v0.view(), &sys.noise, &sys.weights)?;
    // Input columns x_k = [Re g_k; Im g_k] of ∂(−WSR)/∂V* = −G.
    let x = Array2::from_shape_fn((2 * m, k), |(i, c)| if i < m { -g0[[i, c]].re } else { -g0[[i - m, c]].im });
    let init = |rows: usize, cols: usize, fan_in: usize, rng: &mut R| {
        let b = 1.0 / (fan_in as f64).sqrt();
        Array2::from_shape_fn((rows, cols), |_| (rng.random::<f64>() * 2.0 - 1.0) * b)
    };
    let n_h = config.hidden;
    let mut params = vec![
        init(n_h, 2 * m, 2 * m, rng),
        init(n_h, 1, 2 * m, rng),
        init(2 * m, n_h, n_h, rng),
        init(2 * m, 1, n_h, rng),
    ];
    let mut adam = Adam { m: params.iter().map(|p| Array2::zeros(p.raw_dim())).collect(), v: Vec::new(), t: 0 };
    adam.v = adam.m.clone();
    let mut trace = Vec::with_capacity(config.n_iterations);
    for _ in 0..config.n_iterations {
        let (wsr, grads) = loss_grad(&x, &v0, &hb, sys, &params)?;
        trace.push(wsr);
        adam.step(&mut params, &grads, config.lr);
    }
    // The precoder after the last update.
    let (_, v_raw) = forward(&x, &v0, &params);
    let v = rescale(&v_raw, sys.power);
    if v.iter().any(|z| !(z.re.is_finite() && z.im.is_finite())) {
        return Err(MetaLearnError::NonFinite("LAGD precoder".into()));
    }
    Ok(WmmseOutput { v, n_iterations: trace.len(), converged: false, objective_trace: trace })
}

/// LAGD as a [`beamlab_core::Beamformer`] (classical: a fresh network per problem, initialised
/// from the `rng` passed to `solve`), optimising the WSR on the problem's channel estimate.
#[derive(Clone, Debug, Default)]
pub struct LagdBeamformer {
    /// Settings.
    pub config: LagdConfig,
}

impl beamlab_core::Beamformer for LagdBeamformer {
    fn name(&self) -> &str {
        "LAGD"
    }

    fn solve(
        &mut self,
        problem: &beamlab_core::Problem,
        rng: &mut dyn rand::RngCore,
    ) -> Result<beamlab_core::Solution, beamlab_core::CoreError> {
        let start = std::time::Instant::now();
        let wrap = |e: MetaLearnError| beamlab_core::CoreError::Method { method: "LAGD".into(), source: Box::new(e) };
        let h = crate::wmmse::problem_columns(problem).map_err(wrap)?;
        let sys = SystemParams {
            noise: problem.noise_power.clone(),
            weights: problem.weights.clone(),
            power: problem.power_budget,
        };
        let out = lagd(&h, &sys, &self.config, rng).map_err(wrap)?;
        Ok(beamlab_core::Solution {
            precoder: beamlab_core::Precoder::Digital { w: out.v },
            diagnostics: beamlab_core::Diagnostics {
                n_iterations: out.n_iterations,
                converged: false,
                objective_trace: out.objective_trace,
                elapsed: start.elapsed(),
                notes: Vec::new(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wmmse::wsr;
    use beamlab_channel::rayleigh;
    use beamlab_channel::unknown_error::miso_columns;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// LAGD improves on its MRT start on the channel it optimises, meets the power budget, and a
    /// tiny learning rate makes the first steps ascent steps of the WSR.
    #[test]
    fn lagd_improves_on_mrt_and_meets_the_budget() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let h = miso_columns(&rayleigh(4, 1, 8, &mut rng).unwrap()).unwrap();
        let sys = SystemParams::uniform(4, 0.01, 1.0);
        let out = lagd(&h, &sys, &LagdConfig { n_iterations: 200, ..Default::default() }, &mut rng).unwrap();
        let mrt = wsr(&h, &mrt_init(&h, 1.0), &sys).unwrap();
        let fin = wsr(&h, &out.v, &sys).unwrap();
        assert!(fin > mrt + 1.0, "MRT {mrt}, LAGD {fin}");
        assert!(out.v.iter().map(|z| z.norm_sqr()).sum::<f64>() <= 1.0 + 1e-9);
        let small = lagd(&h, &sys, &LagdConfig { n_iterations: 3, lr: 1e-5, ..Default::default() }, &mut rng).unwrap();
        assert!(small.objective_trace[2] > small.objective_trace[0], "{:?}", small.objective_trace);
        assert!(lagd(&h, &sys, &LagdConfig { hidden: 0, ..Default::default() }, &mut rng).is_err());
    }

    /// The hand-written layer gradients against central finite differences of −WSR, both
    /// without and with the power rescaling active.
    #[test]
    fn lagd_gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let h = miso_columns(&rayleigh(3, 1, 4, &mut rng).unwrap()).unwrap();
        let sys = SystemParams::uniform(3, 0.1, 1.0);
        let hb = blocks(&h);
        let v0 = mrt_init(&h, 1.0);
        let x = Array2::from_shape_fn((8, 3), |_| rng.random::<f64>() - 0.5);
        for scale in [0.01, 1.0] {
            let params: Vec<Array2<f64>> = [(5, 8), (5, 1), (8, 5), (8, 1)]
                .iter()
                .map(|&(r, c)| Array2::from_shape_fn((r, c), |_| (rng.random::<f64>() - 0.5) * scale))
                .collect();
            let (_, grads) = loss_grad(&x, &v0, &hb, &sys, &params).unwrap();
            let eps = 1e-6;
            for (l, g) in grads.iter().enumerate() {
                for idx in 0..g.len() {
                    let eval = |d: f64| {
                        let mut p = params.clone();
                        let flat = p[l].as_slice_mut().unwrap();
                        flat[idx] += d;
                        -loss_grad(&x, &v0, &hb, &sys, &p).unwrap().0
                    };
                    let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
                    let an = g.as_slice().unwrap()[idx];
                    assert!((fd - an).abs() < 1e-5 * (1.0 + fd.abs()), "scale {scale}, layer {l}[{idx}]: {fd} vs {an}");
                }
            }
        }
    }
}
