//! The covariance network `f_θ` shared across users (spec §2), its Hermitian-PSD heads, the
//! fusion with the sample covariance, and the per-task losses through the unrolled robust WMMSE.
//!
//! Per user `k` (a batch of the `K` users of one block):
//!
//! ```text
//! s_k = ‖h̄_k‖ / √M,   x_k = [Re h̄_k; Im h̄_k] / s_k ∈ R^{2M}
//! MLP: 2M → 128 → 256 → 256 → D_o (BatchNorm with batch statistics over the K users + ReLU
//!      after every hidden layer, linear output)
//! R_net,k = s_k² · head(out_k)                         (scale equivariance)
//! R_k = η R^S_k + (1 − η) R_net,k                      (fusion (21), η = 0.1)
//! ```
//!
//! Heads ([`CovHead`]), both Hermitian PSD by construction:
//! - full rank: complex lower-triangular `L` (softplus diagonal), `R = L Lᴴ`, `D_o = M²`;
//! - SALR: `A ∈ C^{M×r}` gives `A Aᴴ`; a sparse Hermitian `S` on a fixed random mask
//!   (diagonal plus `P` off-diagonal pairs) with `S_ii = softplus(d_i) + Σ_{j≠i} |S_ij|`
//!   (diagonally dominant, so PSD by Gershgorin); `R = A Aᴴ + S`,
//!   `D_o = 2rM + M + 2P`, `P = round((δM² − M)/2)` clipped to `[0, M(M−1)/2]`
//!   (`M = 32, r = 8, δ = 0.09`: `P = 30`, `D_o = 604`); `δ = 0` gives pure low rank
//!   (`S = 0`, `D_o = 2rM`).
//!
//! Parameters are a flat list of tensors ([`Params`]) so that bases can be interpolated and
//! adapted by plain arithmetic (MB-MAML); the layout is `[W_1, b_1, γ_1, β_1, …, W_out, b_out]`
//! (no `γ, β` without BatchNorm).

use beamlab_candle_bridge::ComplexTensor;
use beamlab_linalg_ops::c64;
use candle_core::{DType, Device, Tensor, Var};
use ndarray::{Array1, Array2};
use rand::Rng;
use rand::seq::SliceRandom;

use crate::MetaLearnError;
use crate::unrolled::{ComplexBatch, columns_tensor, negative_wsr, unrolled_robust_wmmse};
use crate::wmmse::SystemParams;

/// Network parameters, in the layout described in the module docs.
pub type Params = Vec<Tensor>;

/// Output head of the covariance network.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CovHead {
    /// `R = L Lᴴ`, `L` complex lower triangular with a softplus diagonal.
    FullRank,
    /// Sparse-plus-low-rank `R = A Aᴴ + S` (`δ = 0`: pure low rank).
    Salr {
        /// Rank `r` of `A`.
        rank: usize,
        /// Target density `δ` of the sparse part (`nnz ≈ δ M²`).
        density: f64,
    },
}

/// Configuration of the covariance network and the unrolled solver it feeds.
#[derive(Clone, Debug, PartialEq)]
pub struct CovNetConfig {
    /// Transmit antennas `M`.
    pub n_tx: usize,
    /// Hidden widths (Table I: 128, 256, 256).
    pub hidden: Vec<usize>,
    /// Output head.
    pub head: CovHead,
    /// BatchNorm (batch statistics over the users of a block) after each hidden layer.
    pub batch_norm: bool,
    /// Fusion weight `η` of the sample covariance.
    pub fusion_eta: f64,
    /// Unrolled robust WMMSE iterations `T` (spec: 10).
    pub n_unroll: usize,
    /// Seed of the SALR mask.
    pub mask_seed: u64,
    /// Run the unrolled solver as one fused op with a hand-written reverse pass
    /// ([`crate::fused`], default) instead of the composed candle graph ([`crate::unrolled`]);
    /// both give the same values and gradients (tested), the fused one ~5× faster.
    pub fused: bool,
    /// Average the support loss over the `N` samples instead of summing it (spec (22) sums;
    /// averaging divides the inner-step size by `N`, see `docs/mbmaml.md`). Default `false`.
    pub support_mean: bool,
    /// Compute support / query losses and gradients for [`crate::maml`] (inner steps, query
    /// gradients, basis selection, online adaptation) with the hand-written `f64` forward and
    /// reverse pass of [`crate::fast`] instead of candle's autograd (default `true`; both give
    /// the same numbers to round-off, tested). [`CovNet::loss_and_grad`] itself always uses
    /// candle (the reference).
    pub fast_grad: bool,
}

impl Default for CovNetConfig {
    fn default() -> Self {
        Self {
            n_tx: 32,
            hidden: vec![128, 256, 256],
            head: CovHead::Salr { rank: 8, density: 0.09 },
            batch_norm: true,
            fusion_eta: 0.1,
            n_unroll: 10,
            mask_seed: 0,
            fused: true,
            support_mean: false,
            fast_grad: true,
        }
    }
}

/// Number of off-diagonal pairs of the SALR mask for `M`, `δ`.
#[must_use]
pub fn salr_n_pairs(n_tx: usize, density: f64) -> usize {
    if density <= 0.0 {
        return 0;
    }
    let m = n_tx as f64;
    let p = ((density * m * m - m) / 2.0).round().max(0.0) as usize;
    p.min(n_tx * n_tx.saturating_sub(1) / 2)
}

/// Output dimension `D_o` of a head for `M` antennas.
#[must_use]
pub fn head_output_dim(head: CovHead, n_tx: usize) -> usize {
    match head {
        CovHead::FullRank => n_tx * n_tx,
        CovHead::Salr { rank, density } => {
            if density <= 0.0 {
                2 * rank * n_tx
            } else {
                2 * rank * n_tx + n_tx + 2 * salr_n_pairs(n_tx, density)
            }
        }
    }
}

/// One coherence block as tensors: what the support and query losses need.
#[derive(Clone, Debug)]
pub struct TaskTensors {
    /// Sample means `[h̄_1 … h̄_K]: [M × K]`.
    pub h_bar: ComplexTensor,
    /// Norms `s_k = ‖h̄_k‖/√M`, `[K]`.
    pub scales: Vec<f64>,
    /// Sample covariances `R^S: [K, M, M]`.
    pub sample_cov: ComplexBatch,
    /// The samples, one `[M × K]` tensor per sample index `n`.
    pub samples: Vec<ComplexTensor>,
    /// True channels `[M × K]` (offline training / evaluation only).
    pub h_true: Option<ComplexTensor>,
    /// Noise powers `[K]`.
    pub noise: Tensor,
    /// Weights `[K]`.
    pub weights: Tensor,
    /// Power budget.
    pub power: f64,
    /// Sample means as columns (for the fused solver).
    pub h_bar_cols: Vec<Array1<c64>>,
    /// System parameters (for the fused solver).
    pub sys: SystemParams,
}

impl TaskTensors {
    /// Builds a task from per-user samples `samples[k][n]` (and optionally the true channels).
    ///
    /// # Errors
    /// [`MetaLearnError::InvalidInput`] for unequal sample counts / lengths, non-finite samples
    /// or a zero mean channel; parameter errors of `sys`.
    pub fn new(
        samples: &[Vec<Array1<c64>>],
        h_true: Option<&[Array1<c64>]>,
        sys: &SystemParams,
        device: &Device,
    ) -> Result<Self, MetaLearnError> {
        let n = samples.first().map(Vec::len).unwrap_or(0);
        if n == 0 || samples.iter().any(|s| s.len() != n) {
            return Err(MetaLearnError::InvalidInput("every user needs the same number (>= 1) of samples".into()));
        }
        sys.check(samples.len())?;
        let mut means = Vec::new();
        let mut covs = Vec::new();
        for s in samples {
            let (m, c) = beamlab_channel::unknown_error::sample_mean_covariance(s)
                .map_err(|e| MetaLearnError::InvalidInput(e.to_string()))?;
            means.push(m);
            covs.push(c);
        }
        let m = means[0].len();
        let scales: Vec<f64> =
            means.iter().map(|h| (h.iter().map(|z| z.norm_sqr()).sum::<f64>() / m as f64).sqrt()).collect();
        if scales.iter().any(|s| !(*s > 0.0)) {
            return Err(MetaLearnError::InvalidInput("a user's sample mean is zero".into()));
        }
        let per_n: Result<Vec<_>, _> =
            (0..n).map(|i| columns_tensor(&samples.iter().map(|s| s[i].clone()).collect::<Vec<_>>(), device)).collect();
        Ok(Self {
            h_bar: columns_tensor(&means, device)?,
            scales,
            sample_cov: ComplexBatch::from_arrays(&covs, device)?,
            samples: per_n?,
            h_true: h_true.map(|h| columns_tensor(h, device)).transpose()?,
            noise: Tensor::new(sys.noise.as_slice(), device)?,
            weights: Tensor::new(sys.weights.as_slice(), device)?,
            power: sys.power,
            h_bar_cols: means,
            sys: sys.clone(),
        })
    }
}

/// Which loss to differentiate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Support loss: negative WSR summed over the `N` samples (spec (22)).
    Support,
    /// Query loss: negative WSR on the true channels (spec (30)).
    Query,
}

/// The covariance network with its fixed constants (selection matrices of the heads).
#[derive(Debug)]
pub struct CovNet {
    config: CovNetConfig,
    output_dim: usize,
    device: Device,
    /// Head constants: full rank `(P_diag [M, M²], P_low [L, M²])`; SALR
    /// `(P_diag, P_sym [P, M²], P_anti [P, M²], P_abs [P, M])`.
    p_diag: Tensor,
    p_low: Option<Tensor>,
    salr: Option<(Tensor, Tensor, Tensor)>,
    mask_pairs: Vec<(usize, usize)>,
}

fn softplus(x: &Tensor) -> Result<Tensor, MetaLearnError> {
    // relu(x) + log(1 + exp(−|x|)), stable for large |x|.
    let pos = x.relu()?;
    let abs = (&pos + x.neg()?.relu()?)?;
    Ok((pos + (abs.neg()?.exp()? + 1.0)?.log()?)?)
}

impl CovNet {
    /// Builds the network constants (and the SALR mask from `config.mask_seed`).
    ///
    /// # Errors
    /// [`MetaLearnError::InvalidParameter`] for `M = 0`, an empty or zero hidden width, a SALR
    /// rank of 0 or a density outside `[0, 1]`, `η ∉ [0, 1]`.
    pub fn new(config: CovNetConfig, device: &Device) -> Result<Self, MetaLearnError> {
        let m = config.n_tx;
        let bad = |s: String| Err(MetaLearnError::InvalidParameter(s));
        if m == 0 || config.hidden.is_empty() || config.hidden.contains(&0) {
            return bad(format!("need n_tx > 0 and non-zero hidden widths, got {} / {:?}", m, config.hidden));
        }
        if !(0.0..=1.0).contains(&config.fusion_eta) {
            return bad(format!("fusion_eta must be in [0, 1], got {}", config.fusion_eta));
        }
        if let CovHead::Salr { rank, density } = config.head
            && (rank == 0 || !(0.0..=1.0).contains(&density))
        {
            return bad(format!("SALR needs rank >= 1 and density in [0, 1], got {rank}, {density}"));
        }
        let output_dim = head_output_dim(config.head, m);
        let mut p_diag = vec![0.0; m * m * m];
        for i in 0..m {
            p_diag[i * m * m + i * m + i] = 1.0;
        }
        let p_diag = Tensor::from_vec(p_diag, (m, m * m), device)?;
        let mut p_low = None;
        let mut salr = None;
        let mut mask_pairs = Vec::new();
        match config.head {
            CovHead::FullRank => {
                let pairs: Vec<(usize, usize)> = (0..m).flat_map(|i| (0..i).map(move |j| (i, j))).collect();
                let mut p = vec![0.0; pairs.len() * m * m];
                for (q, &(i, j)) in pairs.iter().enumerate() {
                    p[q * m * m + i * m + j] = 1.0;
                }
                p_low = Some(Tensor::from_vec(p, (pairs.len(), m * m), device)?);
            }
            CovHead::Salr { density, .. } => {
                let n_pairs = salr_n_pairs(m, density);
                if n_pairs > 0 || density > 0.0 {
                    let mut all: Vec<(usize, usize)> = (0..m).flat_map(|i| (i + 1..m).map(move |j| (i, j))).collect();
                    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(config.mask_seed);
                    all.shuffle(&mut rng);
                    all.truncate(n_pairs);
                    all.sort_unstable();
                    let np = all.len().max(1);
                    let (mut sym, mut anti, mut abs) =
                        (vec![0.0; np * m * m], vec![0.0; np * m * m], vec![0.0; np * m]);
                    for (q, &(i, j)) in all.iter().enumerate() {
                        sym[q * m * m + i * m + j] = 1.0;
                        sym[q * m * m + j * m + i] = 1.0;
                        anti[q * m * m + i * m + j] = 1.0;
                        anti[q * m * m + j * m + i] = -1.0;
                        abs[q * m + i] = 1.0;
                        abs[q * m + j] = 1.0;
                    }
                    salr = Some((
                        Tensor::from_vec(sym, (np, m * m), device)?,
                        Tensor::from_vec(anti, (np, m * m), device)?,
                        Tensor::from_vec(abs, (np, m), device)?,
                    ));
                    mask_pairs = all;
                }
            }
        }
        Ok(Self { config, output_dim, device: device.clone(), p_diag, p_low, salr, mask_pairs })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &CovNetConfig {
        &self.config
    }

    /// The device.
    #[must_use]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Output dimension `D_o`.
    #[must_use]
    pub fn output_dim(&self) -> usize {
        self.output_dim
    }

    /// Off-diagonal pairs `(i < j)` of the SALR mask.
    #[must_use]
    pub fn mask_pairs(&self) -> &[(usize, usize)] {
        &self.mask_pairs
    }

    fn layer_dims(&self) -> Vec<(usize, usize)> {
        let mut dims = Vec::new();
        let mut fan_in = 2 * self.config.n_tx;
        for &h in &self.config.hidden {
            dims.push((fan_in, h));
            fan_in = h;
        }
        dims.push((fan_in, self.output_dim));
        dims
    }

    /// Total number of trainable scalars.
    #[must_use]
    pub fn n_params(&self) -> usize {
        let dims = self.layer_dims();
        let n_hidden = dims.len() - 1;
        dims.iter()
            .enumerate()
            .map(|(l, &(i, o))| i * o + o + if l < n_hidden && self.config.batch_norm { 2 * o } else { 0 })
            .sum()
    }

    /// Random initial parameters: `W, b ~ U(±1/√fan_in)` (the output layer scaled by 0.1 so the
    /// initial `R_net` is small against `‖h̄‖²`), BatchNorm `γ = 1`, `β = 0`.
    ///
    /// # Errors
    /// candle failures.
    pub fn init_params<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<Params, MetaLearnError> {
        let dims = self.layer_dims();
        let n_hidden = dims.len() - 1;
        let mut out = Vec::new();
        for (l, &(i, o)) in dims.iter().enumerate() {
            let bound = 1.0 / (i as f64).sqrt() * if l == n_hidden { 0.1 } else { 1.0 };
            let w: Vec<f64> = (0..i * o).map(|_| (rng.random::<f64>() * 2.0 - 1.0) * bound).collect();
            let b: Vec<f64> = (0..o).map(|_| (rng.random::<f64>() * 2.0 - 1.0) * bound).collect();
            out.push(Tensor::from_vec(w, (i, o), &self.device)?);
            out.push(Tensor::from_vec(b, o, &self.device)?);
            if l < n_hidden && self.config.batch_norm {
                out.push(Tensor::ones(o, DType::F64, &self.device)?);
                out.push(Tensor::zeros(o, DType::F64, &self.device)?);
            }
        }
        Ok(out)
    }

    fn check_params(&self, params: &[Tensor]) -> Result<(), MetaLearnError> {
        let expected: usize =
            self.layer_dims().len() * 2 + if self.config.batch_norm { 2 * self.config.hidden.len() } else { 0 };
        if params.len() != expected {
            return Err(MetaLearnError::InvalidInput(format!(
                "expected {expected} parameter tensors, got {}",
                params.len()
            )));
        }
        Ok(())
    }

    /// Raw MLP output `[K, D_o]` for inputs `x: [K, 2M]`.
    fn mlp(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor, MetaLearnError> {
        let mut h = x.clone();
        let mut idx = 0;
        let n_hidden = self.config.hidden.len();
        for l in 0..=n_hidden {
            h = h.matmul(&params[idx])?.broadcast_add(&params[idx + 1])?;
            idx += 2;
            if l < n_hidden {
                if self.config.batch_norm {
                    let mean = h.mean_keepdim(0)?;
                    let centred = h.broadcast_sub(&mean)?;
                    let var = centred.sqr()?.mean_keepdim(0)?;
                    h = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
                    h = h.broadcast_mul(&params[idx])?.broadcast_add(&params[idx + 1])?;
                    idx += 2;
                }
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// Predicted covariances `R_net,k` (scale-equivariant, Hermitian PSD), `[K, M, M]`.
    ///
    /// # Errors
    /// Wrong parameter list, a batch of one user with BatchNorm, candle failures.
    pub fn predict(&self, params: &[Tensor], task: &TaskTensors) -> Result<ComplexBatch, MetaLearnError> {
        self.check_params(params)?;
        let m = self.config.n_tx;
        let (mh, k) = task.h_bar.re.dims2()?;
        if mh != m {
            return Err(MetaLearnError::InvalidInput(format!("network is for M = {m}, task has M = {mh}")));
        }
        if self.config.batch_norm && k < 2 {
            return Err(MetaLearnError::InvalidInput("BatchNorm with batch statistics needs K >= 2 users".into()));
        }
        let inv_s = Tensor::from_vec(task.scales.iter().map(|s| 1.0 / s).collect::<Vec<_>>(), (k, 1), &self.device)?;
        let x = Tensor::cat(&[&task.h_bar.re.t()?, &task.h_bar.im.t()?], 1)?.broadcast_mul(&inv_s)?;
        let out = self.mlp(params, &x)?;
        let (re, im) = self.head(&out, k)?;
        let s2 = Tensor::from_vec(task.scales.iter().map(|s| s * s).collect::<Vec<_>>(), (k, 1, 1), &self.device)?;
        Ok(ComplexBatch { re: re.broadcast_mul(&s2)?, im: im.broadcast_mul(&s2)? })
    }

    /// Head: raw outputs `[K, D_o]` → `(Re R, Im R)`, each `[K, M, M]`.
    fn head(&self, out: &Tensor, k: usize) -> Result<(Tensor, Tensor), MetaLearnError> {
        let m = self.config.n_tx;
        let gram = |lr: &Tensor, li: &Tensor| -> Result<(Tensor, Tensor), MetaLearnError> {
            // (L Lᴴ): re = Lr Lrᵀ + Li Liᵀ, im = Li Lrᵀ − Lr Liᵀ.
            let (lrt, lit) = (lr.transpose(1, 2)?, li.transpose(1, 2)?);
            let re = (lr.matmul(&lrt)? + li.matmul(&lit)?)?;
            let im = (li.matmul(&lrt)? - lr.matmul(&lit)?)?;
            Ok((re, im))
        };
        match self.config.head {
            CovHead::FullRank => {
                let n_low = m * (m - 1) / 2;
                let d = softplus(&out.narrow(1, 0, m)?)?;
                let p_low = self.p_low.as_ref().ok_or_else(|| MetaLearnError::InvalidParameter("head".into()))?;
                let lr = (d.matmul(&self.p_diag)? + out.narrow(1, m, n_low)?.matmul(p_low)?)?.reshape((k, m, m))?;
                let li = out.narrow(1, m + n_low, n_low)?.matmul(p_low)?.reshape((k, m, m))?;
                gram(&lr, &li)
            }
            CovHead::Salr { rank, .. } => {
                let ar = out.narrow(1, 0, rank * m)?.reshape((k, m, rank))?;
                let ai = out.narrow(1, rank * m, rank * m)?.reshape((k, m, rank))?;
                let (mut re, mut im) = gram(&ar, &ai)?;
                if let Some((sym, anti, abs_map)) = &self.salr {
                    let base = 2 * rank * m;
                    let np = self.mask_pairs.len();
                    let d = softplus(&out.narrow(1, base, m)?)?;
                    let mut diag = d;
                    if np > 0 {
                        let x = out.narrow(1, base + m, np)?;
                        let y = out.narrow(1, base + m + np, np)?;
                        let mag = ((x.sqr()? + y.sqr()?)? + 1e-12)?.sqrt()?;
                        diag = (diag + mag.matmul(abs_map)?)?;
                        re = (re + x.matmul(sym)?.reshape((k, m, m))?)?;
                        im = (im + y.matmul(anti)?.reshape((k, m, m))?)?;
                    }
                    re = (re + diag.matmul(&self.p_diag)?.reshape((k, m, m))?)?;
                }
                Ok((re, im))
            }
        }
    }

    /// Fused covariances `η R^S + (1 − η) R_net`.
    ///
    /// # Errors
    /// As [`CovNet::predict`].
    pub fn fused(&self, params: &[Tensor], task: &TaskTensors) -> Result<ComplexBatch, MetaLearnError> {
        let eta = self.config.fusion_eta;
        task.sample_cov.affine_mix(eta, &self.predict(params, task)?, 1.0 - eta)
    }

    /// Precoder `V: [M × K]` from the network → fusion → `T` unrolled robust WMMSE iterations.
    ///
    /// # Errors
    /// As [`CovNet::predict`], plus a singular solve.
    pub fn precoder(&self, params: &[Tensor], task: &TaskTensors) -> Result<ComplexTensor, MetaLearnError> {
        let cov = self.fused(params, task)?;
        if self.config.fused {
            crate::fused::fused_robust_wmmse(&task.h_bar_cols, &cov, &task.sys, self.config.n_unroll)
        } else {
            unrolled_robust_wmmse(&task.h_bar, &cov, &task.noise, &task.weights, task.power, self.config.n_unroll)
        }
    }

    /// The precoder `V: [M × K]` as a matrix (no gradient): through the `f64` fast path
    /// ([`crate::fast`]) when `fast_grad` is on, else through candle.
    ///
    /// # Errors
    /// As [`CovNet::precoder`].
    pub fn precoder_array(&self, params: &[Tensor], task: &TaskTensors) -> Result<Array2<c64>, MetaLearnError> {
        if self.config.fast_grad {
            let fast = crate::fast::FastNet::new(self)?;
            let ft = fast.task(task)?;
            return fast.precoder_tensors(&mut crate::fast::FastWorkspace::default(), params, &ft);
        }
        Ok(self.precoder(params, task)?.to_array()?)
    }

    /// Loss of a task (a scalar tensor).
    ///
    /// # Errors
    /// As [`CovNet::precoder`]; a query loss on a task without true channels.
    pub fn loss(&self, params: &[Tensor], task: &TaskTensors, kind: LossKind) -> Result<Tensor, MetaLearnError> {
        let v = self.precoder(params, task)?;
        match kind {
            LossKind::Support => {
                let mut total: Option<Tensor> = None;
                for s in &task.samples {
                    let l = negative_wsr(s, &v, &task.noise, &task.weights)?;
                    total = Some(match total {
                        None => l,
                        Some(t) => (t + l)?,
                    });
                }
                let total = total.ok_or_else(|| MetaLearnError::InvalidInput("task without samples".into()))?;
                if self.config.support_mean { Ok((total / task.samples.len() as f64)?) } else { Ok(total) }
            }
            LossKind::Query => {
                let h = task
                    .h_true
                    .as_ref()
                    .ok_or_else(|| MetaLearnError::InvalidInput("query loss needs the true channels".into()))?;
                negative_wsr(h, &v, &task.noise, &task.weights)
            }
        }
    }

    /// Loss value and its gradient with respect to every parameter tensor.
    ///
    /// # Errors
    /// As [`CovNet::loss`]; [`MetaLearnError::NonFinite`] for a non-finite loss.
    pub fn loss_and_grad(
        &self,
        params: &[Tensor],
        task: &TaskTensors,
        kind: LossKind,
    ) -> Result<(f64, Params), MetaLearnError> {
        let vars: Vec<Var> = params.iter().map(Var::from_tensor).collect::<Result<_, _>>()?;
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let loss = self.loss(&ts, task, kind)?;
        let value = loss.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Err(MetaLearnError::NonFinite(format!("{kind:?} loss {value}")));
        }
        let grads = loss.backward()?;
        let g = ts
            .iter()
            .map(|t| match grads.get(t) {
                Some(g) => Ok(g.detach()),
                None => t.zeros_like(),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((value, g))
    }

    /// Predicted (unfused) covariances as matrices, for inspection.
    ///
    /// # Errors
    /// As [`CovNet::predict`].
    pub fn predict_arrays(&self, params: &[Tensor], task: &TaskTensors) -> Result<Vec<Array2<c64>>, MetaLearnError> {
        self.predict(params, task)?.to_arrays()
    }
}

/// `Σ_m c_m θ^(m)` for parameter lists of equal layout.
///
/// # Errors
/// Empty input or shape mismatches.
pub fn combine(params: &[&Params], coef: &[f64]) -> Result<Params, MetaLearnError> {
    let first = params.first().ok_or_else(|| MetaLearnError::InvalidInput("no parameter sets".into()))?;
    (0..first.len())
        .map(|i| {
            let mut acc = (&first[i] * coef[0])?;
            for (p, &c) in params.iter().zip(coef).skip(1) {
                acc = (acc + (&p[i] * c)?)?;
            }
            Ok(acc)
        })
        .collect()
}

/// One SGD step `θ − α g`.
///
/// # Errors
/// Shape mismatches.
pub fn sgd_step(params: &[Tensor], grads: &[Tensor], lr: f64) -> Result<Params, MetaLearnError> {
    params.iter().zip(grads).map(|(p, g)| Ok((p - (g * lr)?)?)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use beamlab_channel::unknown_error::{haar_unitary, sample_error_block};
    use beamlab_channel::{UnknownErrorParams, rayleigh};
    use beamlab_linalg_ops::self_adjoint_eigen;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    pub fn task(m: usize, k: usize, seed: u64) -> TaskTensors {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = rayleigh(k, 1, m, &mut rng).unwrap();
        let q = haar_unitary(m, &mut rng).unwrap();
        let b = sample_error_block(&h, &q, &UnknownErrorParams::default(), &mut rng).unwrap();
        let samples: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
        let h_true: Vec<_> = b.iter().map(|u| u.h_true.clone()).collect();
        TaskTensors::new(&samples, Some(&h_true), &SystemParams::uniform(k, 0.01, 1.0), &Device::Cpu).unwrap()
    }

    #[test]
    fn salr_parameter_count_formula() {
        assert_eq!(salr_n_pairs(32, 0.09), 30);
        assert_eq!(head_output_dim(CovHead::Salr { rank: 8, density: 0.09 }, 32), 604);
        assert_eq!(head_output_dim(CovHead::Salr { rank: 2, density: 0.0 }, 32), 128);
        assert_eq!(head_output_dim(CovHead::FullRank, 32), 1024);
        let net = CovNet::new(CovNetConfig::default(), &Device::Cpu).unwrap();
        assert_eq!(net.output_dim(), 604);
        assert_eq!(net.mask_pairs().len(), 30);
        // nnz of the mask = M + 2P ≈ δ M².
        assert_eq!(32 + 2 * net.mask_pairs().len(), 92);
        // Table I network: 64·128+128 + 2·128 + 128·256+256 + 2·256 + 256·256+256 + 2·256 + 256·604+604.
        let expected = 64 * 128 + 128 + 256 + 128 * 256 + 256 + 512 + 256 * 256 + 256 + 512 + 256 * 604 + 604;
        assert_eq!(net.n_params(), expected);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let p = net.init_params(&mut rng).unwrap();
        assert_eq!(p.iter().map(|t| t.elem_count()).sum::<usize>(), expected);
    }

    #[test]
    fn mask_depends_only_on_its_seed() {
        let dev = Device::Cpu;
        let mk = |seed| CovNet::new(CovNetConfig { mask_seed: seed, ..Default::default() }, &dev).unwrap();
        assert_eq!(mk(3).mask_pairs(), mk(3).mask_pairs());
        assert_ne!(mk(3).mask_pairs(), mk(4).mask_pairs());
        assert!(mk(3).mask_pairs().iter().all(|&(i, j)| i < j && j < 32));
    }

    /// Every predicted covariance of both heads is Hermitian with min eigenvalue ≥ 0 (to
    /// round-off) over random inputs and random (large) parameters.
    #[test]
    fn predicted_covariances_are_hermitian_psd() {
        let dev = Device::Cpu;
        for (head, scale) in [
            (CovHead::FullRank, 1.0),
            (CovHead::Salr { rank: 2, density: 0.3 }, 1.0),
            (CovHead::Salr { rank: 1, density: 0.5 }, 30.0),
            (CovHead::Salr { rank: 2, density: 0.0 }, 1.0),
        ] {
            let cfg = CovNetConfig { n_tx: 8, hidden: vec![16, 16], head, ..Default::default() };
            let net = CovNet::new(cfg, &dev).unwrap();
            for seed in 0..5 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let params: Params =
                    net.init_params(&mut rng).unwrap().into_iter().map(|t| (t * scale).unwrap()).collect();
                let t = task(8, 3, 100 + seed);
                for r in net.predict_arrays(&params, &t).unwrap() {
                    let herm = r.iter().zip(r.t().iter()).map(|(a, b)| (a - b.conj()).norm()).fold(0.0, f64::max);
                    let scale_r = r.iter().map(|z| z.norm()).fold(0.0, f64::max);
                    assert!(herm <= 1e-12 * scale_r.max(1.0), "{head:?}: {herm}");
                    let (ev, _) = self_adjoint_eigen(r.view()).unwrap();
                    let min = ev.iter().copied().fold(f64::INFINITY, f64::min);
                    assert!(min >= -1e-10 * scale_r.max(1.0), "{head:?}: min eigenvalue {min}");
                }
            }
        }
    }

    /// Scale equivariance: scaling every sample by c scales R_net by c².
    #[test]
    fn prediction_is_scale_equivariant() {
        let dev = Device::Cpu;
        let cfg = CovNetConfig { n_tx: 6, hidden: vec![8], head: CovHead::FullRank, ..Default::default() };
        let net = CovNet::new(cfg, &dev).unwrap();
        let p = net.init_params(&mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let h = rayleigh(3, 1, 6, &mut rng).unwrap();
        let q = haar_unitary(6, &mut rng).unwrap();
        let b = sample_error_block(&h, &q, &UnknownErrorParams::default(), &mut rng).unwrap();
        let s1: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
        let s3: Vec<Vec<_>> = s1.iter().map(|v| v.iter().map(|x| x.mapv(|z| z * 3.0)).collect()).collect();
        let sys = SystemParams::uniform(3, 0.01, 1.0);
        let r1 = net.predict_arrays(&p, &TaskTensors::new(&s1, None, &sys, &dev).unwrap()).unwrap();
        let r3 = net.predict_arrays(&p, &TaskTensors::new(&s3, None, &sys, &dev).unwrap()).unwrap();
        for (a, b) in r1.iter().zip(&r3) {
            let err = a.iter().zip(b.iter()).map(|(x, y)| (x * 9.0 - y).norm()).fold(0.0, f64::max);
            assert!(err < 1e-9 * b.iter().map(|z| z.norm()).fold(0.0, f64::max));
        }
    }

    /// Finite-difference check of the full network → fusion → unrolled WMMSE → loss gradient
    /// along a random parameter direction (directional derivative).
    #[test]
    fn network_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        for (head, fused) in [
            (CovHead::FullRank, true),
            (CovHead::Salr { rank: 2, density: 0.4 }, true),
            (CovHead::Salr { rank: 2, density: 0.4 }, false),
        ] {
            let cfg = CovNetConfig { n_tx: 4, hidden: vec![6, 5], head, n_unroll: 3, fused, ..Default::default() };
            let net = CovNet::new(cfg, &dev).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let p: Params = net.init_params(&mut rng).unwrap().into_iter().map(|t| (t * 5.0).unwrap()).collect();
            let dir = net.init_params(&mut rng).unwrap();
            let t = task(4, 3, 77);
            for kind in [LossKind::Support, LossKind::Query] {
                let (_, g) = net.loss_and_grad(&p, &t, kind).unwrap();
                let analytic: f64 = g
                    .iter()
                    .zip(&dir)
                    .map(|(a, b)| (a * b).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap())
                    .sum();
                let eps = 1e-5;
                let at = |s: f64| {
                    let q = combine(&[&p, &dir], &[1.0, s]).unwrap();
                    net.loss(&q, &t, kind).unwrap().to_scalar::<f64>().unwrap()
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (fd - analytic).abs() < 1e-5 * (1.0 + fd.abs()),
                    "{head:?} {kind:?}: fd {fd}, autograd {analytic}"
                );
            }
        }
    }

    #[test]
    fn bad_configs_and_inputs_are_rejected() {
        let dev = Device::Cpu;
        assert!(CovNet::new(CovNetConfig { n_tx: 0, ..Default::default() }, &dev).is_err());
        assert!(CovNet::new(CovNetConfig { fusion_eta: 1.5, ..Default::default() }, &dev).is_err());
        assert!(
            CovNet::new(CovNetConfig { head: CovHead::Salr { rank: 0, density: 0.1 }, ..Default::default() }, &dev)
                .is_err()
        );
        let net = CovNet::new(CovNetConfig { n_tx: 8, hidden: vec![4], ..Default::default() }, &dev).unwrap();
        let t = task(6, 3, 1);
        let p = net.init_params(&mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert!(net.predict(&p, &t).is_err());
        assert!(net.predict(&p[..2], &task(8, 3, 1)).is_err());
        let nan = vec![vec![Array1::from(vec![c64::new(f64::NAN, 0.0); 8]); 2]; 3];
        assert!(TaskTensors::new(&nan, None, &SystemParams::uniform(3, 0.01, 1.0), &dev).is_err());
        assert!(TaskTensors::new(&[], None, &SystemParams::uniform(0, 0.01, 1.0), &dev).is_err());
        let zero = vec![vec![Array1::from(vec![c64::new(0.0, 0.0); 8]); 2]; 3];
        assert!(TaskTensors::new(&zero, None, &SystemParams::uniform(3, 0.01, 1.0), &dev).is_err());
        // Query loss without the true channels is a typed error.
        let mut t = task(8, 3, 2);
        t.h_true = None;
        assert!(net.loss(&p, &t, LossKind::Query).is_err());
    }

    #[test]
    fn support_mean_divides_by_the_sample_count() {
        let dev = Device::Cpu;
        let t = task(4, 3, 5);
        let cfg = CovNetConfig { n_tx: 4, hidden: vec![4], ..Default::default() };
        let sum = CovNet::new(cfg.clone(), &dev).unwrap();
        let mean = CovNet::new(CovNetConfig { support_mean: true, ..cfg }, &dev).unwrap();
        let p = sum.init_params(&mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let ls = sum.loss(&p, &t, LossKind::Support).unwrap().to_scalar::<f64>().unwrap();
        let lm = mean.loss(&p, &t, LossKind::Support).unwrap().to_scalar::<f64>().unwrap();
        assert!((ls / 2.0 - lm).abs() < 1e-12);
        let q1 = sum.loss(&p, &t, LossKind::Query).unwrap().to_scalar::<f64>().unwrap();
        let q2 = mean.loss(&p, &t, LossKind::Query).unwrap().to_scalar::<f64>().unwrap();
        assert_eq!(q1, q2);
    }

    /// N = 1: the sample covariance is zero (documented fallback) and everything still runs.
    #[test]
    fn single_sample_blocks_work() {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let h = rayleigh(3, 1, 4, &mut rng).unwrap();
        let q = haar_unitary(4, &mut rng).unwrap();
        let p1 = UnknownErrorParams { n_samples: 1, ..Default::default() };
        let b = sample_error_block(&h, &q, &p1, &mut rng).unwrap();
        let samples: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
        let t = TaskTensors::new(&samples, None, &SystemParams::uniform(3, 0.01, 1.0), &dev).unwrap();
        assert!(t.sample_cov.to_arrays().unwrap().iter().all(|r| r.iter().all(|z| z.norm() == 0.0)));
        let net = CovNet::new(CovNetConfig { n_tx: 4, hidden: vec![4], ..Default::default() }, &dev).unwrap();
        let p = net.init_params(&mut rng).unwrap();
        let (l, _) = net.loss_and_grad(&p, &t, LossKind::Support).unwrap();
        assert!(l.is_finite() && l < 0.0);
    }
}
