//! MAML and multi-basis MAML (MB-MAML) offline meta-training and the online adaptation
//! (spec §5–§6).
//!
//! Offline, per meta-iteration over a batch of `B` tasks (coherence blocks), for every task:
//!
//! ```text
//! ℓ_m = L_S(θ^(m))                          (forward only, m = 1..M)
//! σ = softmax(−ℓ / τ)                       (detached)
//! θ*_0 = Σ_m σ_m θ^(m);   θ*_i = θ*_{i−1} − α ∇L_S(θ*_{i−1}),  i = 1..N_i
//! G = Σ_i γ_i ∇q(θ*_i)                      (first-order MAML: ∂q_i/∂θ*_0 ≈ ∇q_i at θ*_i, γ uniform)
//! ```
//!
//! and basis `m` moves along `(1/B) Σ_b σ_b,m G_b + λ_reg ∇L_reg^(m)` with Adam, where
//! `L_reg^(m) = Σ_{m'≠m} |⟨θ^(m), θ^(m')⟩| / (M − 1)` (its gradient with respect to `θ^(m)`,
//! `Σ_{m'≠m} sign⟨θ^(m), θ^(m')⟩ θ^(m') / (M − 1)`). With `M = 1` this is exactly first-order
//! MAML (`σ = 1`, no regulariser), which a test checks number for number against the separate
//! [`maml_meta_step`].
//!
//! Online, per new block: the support loss of every basis on the block's `N` samples selects
//! the start (argmin, or the softmax interpolation), then `N_i` SGD steps on the support loss
//! give the block's network and precoder. Every block restarts from the meta-bases.
//!
//! Every loss and gradient runs on the fast path ([`crate::fast`]) with the parameters as flat
//! `f64` vectors; the bases are stored as candle tensors ([`Params`]) and converted once per
//! meta-step or adaptation. Adam is `beamlab_linalg_ops::optim::Adam`. The tests of the
//! meta-gradients (finite differences, MB-MAML with one basis = MAML) are at the end.

use beamlab_linalg_ops::optim::Adam;

use crate::MetaLearnError;
use crate::covnet::{CovNet, LossKind, Params, Task, combine};
use crate::fast::{FastNet, FastTask, FastWorkspace, sgd_support_steps};

/// Hyper-parameters of MB-MAML (defaults: Table I of the paper).
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MbMamlConfig {
    /// Number of bases `M` (Table I: 8; 1 = MAML).
    pub n_bases: usize,
    /// Softmax temperature `τ` of the basis selection.
    pub temperature: f64,
    /// Inner SGD steps `N_i`.
    pub n_inner_steps: usize,
    /// Inner learning rate `α`.
    pub inner_lr: f64,
    /// Meta learning rate `β_Meta` (Adam).
    pub meta_lr: f64,
    /// Orthogonality regulariser weight `λ_reg`.
    pub lambda_reg: f64,
    /// Which inner steps contribute a query loss.
    pub query: QuerySchedule,
    /// First-order (paper) or second-order meta-gradient.
    pub meta_gradient: MetaGradient,
}

/// Which inner steps contribute a query loss to the meta-objective `Σ_i γ_i q(θ*_i)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuerySchedule {
    /// After every inner step, `γ_i = 1/N_i` (spec §5).
    #[default]
    EveryStep,
    /// Only after the last inner step.
    LastStep,
}

/// How the meta-gradient treats the inner SGD steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaGradient {
    /// First-order MAML, `∂θ*_i/∂θ*_0 ≈ I` (the paper).
    #[default]
    FirstOrder,
    /// Differentiate through the inner steps, `∂θ*_{i+1}/∂θ*_i = I − α ∇²L_S(θ*_i)`, with
    /// Hessian-vector products by central differences of the support gradient (two extra
    /// support gradients per inner step).
    SecondOrder,
}

impl QuerySchedule {
    fn includes(self, step: usize, n_steps: usize) -> bool {
        self == Self::EveryStep || step + 1 == n_steps
    }
}

impl Default for MbMamlConfig {
    fn default() -> Self {
        Self {
            n_bases: 8,
            temperature: 1.0,
            n_inner_steps: 5,
            inner_lr: 0.01,
            meta_lr: 1e-3,
            lambda_reg: 1e-3,
            query: QuerySchedule::EveryStep,
            meta_gradient: MetaGradient::FirstOrder,
        }
    }
}

impl MbMamlConfig {
    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// [`MetaLearnError::InvalidConfig`] for zero bases, a non-positive temperature or
    /// learning rate, a negative regulariser weight, non-finite values.
    pub fn check(&self) -> Result<(), MetaLearnError> {
        if self.n_bases == 0 {
            return Err(MetaLearnError::config("n_bases", "must be >= 1"));
        }
        for (name, x) in [("temperature", self.temperature), ("inner_lr", self.inner_lr), ("meta_lr", self.meta_lr)] {
            if !(x.is_finite() && x > 0.0) {
                return Err(MetaLearnError::config(name, format!("must be finite and > 0, got {x}")));
            }
        }
        if !(self.lambda_reg.is_finite() && self.lambda_reg >= 0.0) {
            return Err(MetaLearnError::config(
                "lambda_reg",
                format!("must be finite and >= 0, got {}", self.lambda_reg),
            ));
        }
        Ok(())
    }
}

/// How the online adaptation picks its starting point among the bases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BasisSelection {
    /// The basis with the smallest support loss (spec (32)).
    #[default]
    Argmin,
    /// The softmax interpolation `Σ σ_m θ^(m)` used offline.
    Interpolate,
}

/// `N` SGD steps on the support loss from `start`; returns the adapted parameters and the
/// support loss before each step.
///
/// # Errors
/// Loss / gradient failures.
pub fn inner_adapt(
    net: &CovNet,
    start: &Params,
    task: &Task,
    n_steps: usize,
    lr: f64,
) -> Result<(Params, Vec<f64>), MetaLearnError> {
    let fast = FastNet::new(net);
    let ft = fast.task(task)?;
    let mut theta = fast.flatten(start)?;
    let mut ws = FastWorkspace::default();
    let trace = sgd_support_steps(&fast, &mut ws, &mut theta, &ft, n_steps, lr)?;
    Ok((fast.unflatten(&theta)?, trace))
}

/// First-order query gradient `Σ_i γ_i ∇q(θ*_i)` and the mean query loss, all in flat `f64`
/// (the second-order gradient for [`MetaGradient::SecondOrder`]).
fn meta_gradient_flat(
    fast: &FastNet,
    ft: &FastTask,
    mut theta: Vec<f64>,
    config: &MbMamlConfig,
    ws: &mut FastWorkspace,
) -> Result<(Vec<f64>, f64), MetaLearnError> {
    if config.meta_gradient == MetaGradient::SecondOrder {
        return second_order_meta_gradient(fast, ft, theta, config, ws);
    }
    let mut gq = Vec::new();
    let mut acc = vec![0.0; fast.n_params()];
    let mut q_sum = 0.0;
    let mut n_q = 0usize;
    for i in 0..config.n_inner_steps {
        fast.sgd_step(ws, &mut theta, ft, LossKind::Support, config.inner_lr)?;
        if config.query.includes(i, config.n_inner_steps) {
            q_sum += fast.loss_and_grad(ws, &theta, ft, LossKind::Query, &mut gq)?;
            n_q += 1;
            for (a, d) in acc.iter_mut().zip(&gq) {
                *a += d;
            }
        }
    }
    if n_q == 0 {
        let q = fast.loss_and_grad(ws, &theta, ft, LossKind::Query, &mut gq)?;
        return Ok((gq, q));
    }
    let scale = 1.0 / n_q as f64;
    for a in &mut acc {
        *a *= scale;
    }
    Ok((acc, q_sum / n_q as f64))
}

/// Second-order meta-gradient of `J(θ_0) = Σ_i γ_i q(θ_{i+1})`, `θ_{i+1} = θ_i − α ∇S(θ_i)`
/// (`γ_i` as in the first-order version), and the mean query loss. Reverse sweep:
/// `v ← γ_i ∇q(θ_{i+1}) + v`, then `v ← v − α H_S(θ_i) v` (the Jacobian of an SGD step is
/// symmetric), with `H v ≈ (∇S(θ + εv̂) − ∇S(θ − εv̂)) ‖v‖ / (2ε)`, `v̂ = v/‖v‖`,
/// `ε = 1e-5 (1 + ‖θ‖_∞)`: two extra support gradients per inner step.
fn second_order_meta_gradient(
    fast: &FastNet,
    ft: &FastTask,
    theta0: Vec<f64>,
    config: &MbMamlConfig,
    ws: &mut FastWorkspace,
) -> Result<(Vec<f64>, f64), MetaLearnError> {
    let n = config.n_inner_steps;
    let mut gq = Vec::new();
    if n == 0 {
        let q = fast.loss_and_grad(ws, &theta0, ft, LossKind::Query, &mut gq)?;
        return Ok((gq, q));
    }
    let n_q = if config.query == QuerySchedule::EveryStep { n } else { 1 };
    let weight = 1.0 / n_q as f64;
    // Forward: the iterates θ_0 … θ_N.
    let mut iterates = Vec::with_capacity(n + 1);
    iterates.push(theta0);
    for i in 0..n {
        let mut next = iterates[i].clone();
        fast.sgd_step(ws, &mut next, ft, LossKind::Support, config.inner_lr)?;
        iterates.push(next);
    }
    // Reverse.
    let mut v = vec![0.0; fast.n_params()];
    let mut q_sum = 0.0;
    let (mut gp, mut gm) = (Vec::new(), Vec::new());
    for i in (0..n).rev() {
        if config.query.includes(i, n) {
            q_sum += fast.loss_and_grad(ws, &iterates[i + 1], ft, LossKind::Query, &mut gq)?;
            for (a, d) in v.iter_mut().zip(&gq) {
                *a += weight * d;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let theta = &iterates[i];
        let eps = 1e-5 * (1.0 + theta.iter().fold(0.0_f64, |m, x| m.max(x.abs())));
        let shifted =
            |sign: f64| -> Vec<f64> { theta.iter().zip(&v).map(|(t, d)| t + sign * eps * d / norm).collect() };
        fast.loss_and_grad(ws, &shifted(1.0), ft, LossKind::Support, &mut gp)?;
        fast.loss_and_grad(ws, &shifted(-1.0), ft, LossKind::Support, &mut gm)?;
        let c = config.inner_lr * norm / (2.0 * eps);
        for ((a, p), m) in v.iter_mut().zip(&gp).zip(&gm) {
            *a -= c * (p - m);
        }
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(MetaLearnError::NonFinite("second-order meta-gradient".into()));
    }
    Ok((v, q_sum / n_q as f64))
}

/// Plain MAML meta-step (the reference MB-MAML reduces to for `M = 1`): from `theta`, per task
/// `N_i` inner SGD steps and the averaged query gradients, Adam (`adam`, sized
/// [`FastNet::n_params`]) on the task mean. Returns the mean query loss.
///
/// # Errors
/// Empty task list, loss / gradient failures.
pub fn maml_meta_step(
    net: &CovNet,
    theta: &mut Params,
    adam: &mut Adam,
    tasks: &[Task],
    config: &MbMamlConfig,
) -> Result<f64, MetaLearnError> {
    config.check()?;
    if tasks.is_empty() {
        return Err(MetaLearnError::Empty { what: "tasks of a meta-step" });
    }
    let fast = FastNet::new(net);
    let start = fast.flatten(theta)?;
    let mut ws = FastWorkspace::default();
    let mut acc = vec![0.0; fast.n_params()];
    let mut q_mean = 0.0;
    for task in tasks {
        let ft = fast.task(task)?;
        let (g, q) = meta_gradient_flat(&fast, &ft, start.clone(), config, &mut ws)?;
        q_mean += q / tasks.len() as f64;
        for (a, d) in acc.iter_mut().zip(&g) {
            *a += d;
        }
    }
    let inv_b = 1.0 / tasks.len() as f64;
    for a in &mut acc {
        *a *= inv_b;
    }
    let mut flat = start;
    adam.step(&mut flat, &acc, config.meta_lr)?;
    *theta = fast.unflatten(&flat)?;
    Ok(q_mean)
}

/// Numerically stable `softmax(−ℓ/τ)`.
#[must_use]
pub(crate) fn selection_weights(losses: &[f64], temperature: f64) -> Vec<f64> {
    let z: Vec<f64> = losses.iter().map(|l| -l / temperature).collect();
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|x| (x - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// Report of one MB-MAML meta-iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaStepReport {
    /// Mean query loss (negative WSR on the true channels) over the tasks and inner steps.
    pub mean_query_loss: f64,
    /// Mean selection weight of every basis over the tasks.
    pub mean_selection: Vec<f64>,
}

/// The result of an online adaptation.
#[derive(Clone, Debug)]
pub struct Adapted {
    /// Adapted parameters.
    pub params: Params,
    /// Selection weights over the bases (one-hot for argmin).
    pub selection: Vec<f64>,
    /// Support loss before each SGD step.
    pub support_trace: Vec<f64>,
}

/// Multi-basis MAML: `M` parameter bases with their Adam states.
#[derive(Clone, Debug)]
pub struct MbMaml {
    bases: Vec<Params>,
    adam: Vec<Adam>,
    config: MbMamlConfig,
}

impl MbMaml {
    /// `M` bases with independent random initialisations drawn from `rng` in order.
    ///
    /// # Errors
    /// Invalid configuration, candle failures.
    pub fn new<R: rand::Rng + ?Sized>(net: &CovNet, config: MbMamlConfig, rng: &mut R) -> Result<Self, MetaLearnError> {
        config.check()?;
        let bases: Vec<Params> = (0..config.n_bases).map(|_| net.init_params(rng)).collect::<Result<_, _>>()?;
        Self::from_bases(bases, config)
    }

    /// From given bases (their number overrides `config.n_bases`).
    ///
    /// # Errors
    /// No bases, invalid configuration.
    pub fn from_bases(bases: Vec<Params>, mut config: MbMamlConfig) -> Result<Self, MetaLearnError> {
        config.n_bases = bases.len();
        config.check()?;
        let n = bases.first().map(|b| b.iter().map(candle_core::Tensor::elem_count).sum()).unwrap_or(0);
        let adam = bases.iter().map(|_| Adam::new(n)).collect();
        Ok(Self { bases, adam, config })
    }

    /// The bases.
    #[must_use]
    pub fn bases(&self) -> &[Params] {
        &self.bases
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &MbMamlConfig {
        &self.config
    }

    /// Support loss of every basis on `task` (forward only).
    ///
    /// # Errors
    /// Loss failures.
    pub fn basis_losses(&self, net: &CovNet, task: &Task) -> Result<Vec<f64>, MetaLearnError> {
        let fast = FastNet::new(net);
        let ft = fast.task(task)?;
        let mut ws = FastWorkspace::default();
        self.bases.iter().map(|b| fast.loss_tensors(&mut ws, b, &ft, LossKind::Support)).collect()
    }

    /// One meta-iteration over `tasks` (spec §5): selection, interpolation, task gradients,
    /// their accumulation, the regulariser and Adam, all on flat vectors (the bases are converted
    /// once). For `M = 1` the operations are those of [`maml_meta_step`] in the same order (σ is
    /// exactly `[1]`), so the two agree bit for bit.
    ///
    /// # Errors
    /// Empty task list, loss / gradient failures, non-finite losses.
    pub fn meta_step(&mut self, net: &CovNet, tasks: &[Task]) -> Result<MetaStepReport, MetaLearnError> {
        if tasks.is_empty() {
            return Err(MetaLearnError::Empty { what: "tasks of a meta-step" });
        }
        let _span = tracing::debug_span!("mbmaml_meta_step", n_tasks = tasks.len()).entered();
        let fast = FastNet::new(net);
        let n_bases = self.bases.len();
        let flat: Vec<Vec<f64>> = self.bases.iter().map(|b| fast.flatten(b)).collect::<Result<_, _>>()?;
        let mut ws = FastWorkspace::default();
        let mut acc = vec![vec![0.0; fast.n_params()]; n_bases];
        let mut mean_selection = vec![0.0; n_bases];
        let mut q_mean = 0.0;
        for task in tasks {
            let ft = fast.task(task)?;
            let losses: Vec<f64> =
                flat.iter().map(|b| fast.loss(&mut ws, b, &ft, LossKind::Support)).collect::<Result<_, _>>()?;
            let sigma = selection_weights(&losses, self.config.temperature);
            let mut start: Vec<f64> = flat[0].iter().map(|x| x * sigma[0]).collect();
            for (b, &c) in flat.iter().zip(&sigma).skip(1) {
                for (s, x) in start.iter_mut().zip(b) {
                    *s += x * c;
                }
            }
            let (g, q) = meta_gradient_flat(&fast, &ft, start, &self.config, &mut ws)?;
            q_mean += q / tasks.len() as f64;
            for m in 0..n_bases {
                mean_selection[m] += sigma[m] / tasks.len() as f64;
                let s = sigma[m];
                for (a, d) in acc[m].iter_mut().zip(&g) {
                    *a += d * s;
                }
            }
        }
        let inv_b = 1.0 / tasks.len() as f64;
        for m in 0..n_bases {
            for a in acc[m].iter_mut() {
                *a *= inv_b;
            }
            if n_bases > 1 && self.config.lambda_reg > 0.0 {
                let c = self.config.lambda_reg / (n_bases - 1) as f64;
                for other in (0..n_bases).filter(|&o| o != m) {
                    let d: f64 = flat[m].iter().zip(&flat[other]).map(|(x, y)| x * y).sum();
                    let sign = d.signum() * c;
                    for (g, t) in acc[m].iter_mut().zip(&flat[other]) {
                        *g += t * sign;
                    }
                }
            }
        }
        let mut new_bases = Vec::with_capacity(n_bases);
        for (m, (mut theta, grad)) in flat.into_iter().zip(&acc).enumerate() {
            self.adam[m].step(&mut theta, grad, self.config.meta_lr)?;
            new_bases.push(fast.unflatten(&theta)?);
        }
        self.bases = new_bases;
        if !q_mean.is_finite() {
            return Err(MetaLearnError::NonFinite(format!("meta-step query loss {q_mean}")));
        }
        Ok(MetaStepReport { mean_query_loss: q_mean, mean_selection })
    }

    /// Online adaptation to one block (spec §6): basis selection on the support loss, then
    /// `n_steps` SGD steps with learning rate `lr` (the bases are not changed). One conversion
    /// of the block, the basis losses read from the tensors in place, all steps in one workspace.
    ///
    /// # Errors
    /// Loss / gradient failures.
    pub fn adapt(
        &self,
        net: &CovNet,
        task: &Task,
        n_steps: usize,
        lr: f64,
        selection: BasisSelection,
    ) -> Result<Adapted, MetaLearnError> {
        let fast = FastNet::new(net);
        let ft = fast.task(task)?;
        let mut ws = FastWorkspace::default();
        let (start, weights) = if self.bases.len() == 1 {
            (self.bases[0].clone(), vec![1.0])
        } else {
            let losses: Vec<f64> = self
                .bases
                .iter()
                .map(|b| fast.loss_tensors(&mut ws, b, &ft, LossKind::Support))
                .collect::<Result<_, _>>()?;
            self.select(&losses, selection)?
        };
        let mut theta = fast.flatten(&start)?;
        let support_trace = sgd_support_steps(&fast, &mut ws, &mut theta, &ft, n_steps, lr)?;
        Ok(Adapted { params: fast.unflatten(&theta)?, selection: weights, support_trace })
    }

    fn select(&self, losses: &[f64], selection: BasisSelection) -> Result<(Params, Vec<f64>), MetaLearnError> {
        Ok(match selection {
            BasisSelection::Argmin => {
                let best = losses.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
                let mut w = vec![0.0; losses.len()];
                w[best] = 1.0;
                (self.bases[best].clone(), w)
            }
            BasisSelection::Interpolate => {
                let w = selection_weights(losses, self.config.temperature);
                let refs: Vec<&Params> = self.bases.iter().collect();
                (combine(&refs, &w)?, w)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::covnet::{CovHead, CovNetConfig};
    use candle_core::Device;
    use rand::{Rng, SeedableRng};

    use rand_chacha::ChaCha8Rng;

    fn small_net() -> CovNet {
        let cfg = CovNetConfig {
            n_tx: 4,
            hidden: vec![8, 8],
            head: CovHead::Salr { rank: 2, density: 0.4 },
            n_unroll: 3,
            ..Default::default()
        };
        CovNet::new(cfg, &Device::Cpu).unwrap()
    }

    fn tasks(seed: u64, n: usize) -> Vec<Task> {
        (0..n).map(|i| crate::covnet::tests::task(4, 3, seed * 1000 + i as u64)).collect()
    }

    fn flat(p: &Params) -> Vec<f64> {
        p.iter().flat_map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap()).collect()
    }

    /// The second-order meta-gradient is the gradient of the meta-objective
    /// `J(θ_0) = Σ_i γ_i q(θ_{i+1})` through the inner SGD steps (central differences of `J`
    /// along random directions); the first-order gradient misses the Hessian terms and fails the
    /// same check, so the test can tell them apart.
    #[test]
    fn second_order_meta_gradient_matches_finite_differences() {
        let net = small_net();
        let fast = FastNet::new(&net);
        let task = &tasks(7, 1)[0];
        let ft = fast.task(task).unwrap();
        let mut ws = FastWorkspace::default();
        let theta0 = fast.flatten(&net.init_params(&mut ChaCha8Rng::seed_from_u64(3)).unwrap()).unwrap();
        for query in [QuerySchedule::EveryStep, QuerySchedule::LastStep] {
            // A large inner step so the Hessian terms matter.
            let cfg = MbMamlConfig {
                n_inner_steps: 3,
                inner_lr: 0.05,
                query,
                meta_gradient: MetaGradient::SecondOrder,
                ..Default::default()
            };
            let objective = |theta: &[f64], ws: &mut FastWorkspace| -> f64 {
                let mut th = theta.to_vec();
                let (mut sum, mut n_q) = (0.0, 0.0);
                for i in 0..cfg.n_inner_steps {
                    fast.sgd_step(ws, &mut th, &ft, LossKind::Support, cfg.inner_lr).unwrap();
                    if query.includes(i, cfg.n_inner_steps) {
                        sum += fast.loss(ws, &th, &ft, LossKind::Query).unwrap();
                        n_q += 1.0;
                    }
                }
                sum / n_q
            };
            let (g2, q2) = meta_gradient_flat(&fast, &ft, theta0.clone(), &cfg, &mut ws).unwrap();
            let first = MbMamlConfig { meta_gradient: MetaGradient::FirstOrder, ..cfg };
            let (g1, q1) = meta_gradient_flat(&fast, &ft, theta0.clone(), &first, &mut ws).unwrap();
            assert!((q2 - q1).abs() <= 1e-12 * q1.abs().max(1.0), "same mean query loss");
            assert!((q2 - objective(&theta0, &mut ws)).abs() <= 1e-12 * q2.abs().max(1.0));
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            let (mut worst2, mut worst1) = (0.0_f64, 0.0_f64);
            for _ in 0..4 {
                let d: Vec<f64> = (0..theta0.len()).map(|_| rng.random_range(-1.0..1.0)).collect();
                let h = 1e-6;
                let plus: Vec<f64> = theta0.iter().zip(&d).map(|(t, x)| t + h * x).collect();
                let minus: Vec<f64> = theta0.iter().zip(&d).map(|(t, x)| t - h * x).collect();
                let fd = (objective(&plus, &mut ws) - objective(&minus, &mut ws)) / (2.0 * h);
                let dot = |g: &[f64]| g.iter().zip(&d).map(|(a, b)| a * b).sum::<f64>();
                worst2 = worst2.max((dot(&g2) - fd).abs() / fd.abs().max(1e-3));
                worst1 = worst1.max((dot(&g1) - fd).abs() / fd.abs().max(1e-3));
            }
            assert!(worst2 < 1e-4, "second-order vs finite differences: relative error {worst2:e}");
            assert!(worst1 > 10.0 * worst2, "first-order {worst1:e} should be visibly worse than {worst2:e}");
        }
        // Through a whole meta-step.
        let cfg = MbMamlConfig {
            n_bases: 1,
            n_inner_steps: 2,
            meta_gradient: MetaGradient::SecondOrder,
            ..Default::default()
        };
        let mut mb = MbMaml::new(&net, cfg, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        let r = mb.meta_step(&net, &tasks(3, 2)).unwrap();
        assert!(r.mean_query_loss.is_finite());
    }

    /// MB-MAML with M = 1 is first-order MAML: identical parameters (bit for bit) and losses
    /// after several meta-steps from the same seed.
    #[test]
    fn mbmaml_with_one_basis_equals_maml() {
        let net = small_net();
        let cfg = MbMamlConfig { n_bases: 1, meta_lr: 1e-2, ..Default::default() };
        let mut mb = MbMaml::new(&net, cfg, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        let mut theta = net.init_params(&mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        let mut adam = Adam::new(net.n_params());
        for it in 0..3 {
            let batch = tasks(it, 3);
            let r = mb.meta_step(&net, &batch).unwrap();
            let q = maml_meta_step(&net, &mut theta, &mut adam, &batch, &cfg).unwrap();
            assert_eq!(r.mean_query_loss.to_bits(), q.to_bits());
            assert_eq!(flat(&mb.bases()[0]), flat(&theta));
        }
        // The meta-steps moved the parameters.
        let theta0 = net.init_params(&mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        assert_ne!(flat(&theta0), flat(&theta));
    }

    #[test]
    fn selection_weights_are_a_softmax() {
        let w = selection_weights(&[1.0, 2.0, 1000.0], 1.0);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!(w[0] > w[1] && w[2] < 1e-300);
        assert!((w[0] / w[1] - std::f64::consts::E).abs() < 1e-12);
    }

    /// Meta-training decreases the query loss on a fixed batch (fixed-point sanity check with a
    /// large meta learning rate), and MB-MAML with several bases runs, keeps its selection a
    /// distribution and adapts.
    #[test]
    fn meta_training_reduces_the_query_loss_and_adaptation_runs() {
        let net = small_net();
        let cfg = MbMamlConfig { n_bases: 3, meta_lr: 1e-2, n_inner_steps: 2, ..Default::default() };
        let mut mb = MbMaml::new(&net, cfg, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let batch = tasks(42, 4);
        let first = mb.meta_step(&net, &batch).unwrap();
        let mut last = first.clone();
        for _ in 0..15 {
            last = mb.meta_step(&net, &batch).unwrap();
        }
        assert!((last.mean_selection.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(last.mean_query_loss < first.mean_query_loss, "{} -> {}", first.mean_query_loss, last.mean_query_loss);
        for sel in [BasisSelection::Argmin, BasisSelection::Interpolate] {
            let a = mb.adapt(&net, &batch[0], 3, 0.01, sel).unwrap();
            assert_eq!(a.support_trace.len(), 3);
            assert!((a.selection.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    /// Inner SGD on the support loss decreases it for a small step size.
    #[test]
    fn inner_adaptation_decreases_the_support_loss() {
        let net = small_net();
        let p = net.init_params(&mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        let t = &tasks(7, 1)[0];
        let (_, trace) = inner_adapt(&net, &p, t, 4, 1e-3).unwrap();
        assert!(trace.windows(2).all(|w| w[1] <= w[0] + 1e-12), "{trace:?}");
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(MbMamlConfig { n_bases: 0, ..Default::default() }.check().is_err());
        assert!(MbMamlConfig { temperature: 0.0, ..Default::default() }.check().is_err());
        assert!(MbMamlConfig { inner_lr: f64::NAN, ..Default::default() }.check().is_err());
        let net = small_net();
        let mut mb = MbMaml::new(&net, MbMamlConfig::default(), &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert!(matches!(mb.meta_step(&net, &[]), Err(MetaLearnError::Empty { .. })));
        let err = MbMamlConfig { lambda_reg: -1.0, ..Default::default() }.check();
        assert!(matches!(err, Err(MetaLearnError::InvalidConfig { name: "lambda_reg", .. })));
    }
}
