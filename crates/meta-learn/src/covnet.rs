//! The covariance network's data and configuration (the bottom layer of the crate): the head
//! ([`CovHead`]), the network configuration ([`CovNetConfig`]), its parameter layout and
//! initialisation ([`CovNet`]), and one coherence block as the losses need it ([`Task`]).
//! The forward and reverse passes live in [`crate::fast`].
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
//! (no `γ, β` without BatchNorm), `W` stored `[fan_in × fan_out]` row-major.

use beamlab_linalg_ops::c64;
use candle_core::{DType, Device, Tensor};
use ndarray::{Array1, Array2};
use rand::Rng;
use rand::seq::SliceRandom;

use crate::MetaLearnError;
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

/// One coherence block: what the support and query losses need, checked once.
#[derive(Clone, Debug)]
pub struct Task {
    /// Sample means `h̄_k` (the channel estimates), one `[M]` column per user.
    pub(crate) h_bar: Vec<Array1<c64>>,
    /// Norms `s_k = ‖h̄_k‖/√M`.
    pub(crate) scales: Vec<f64>,
    /// Sample covariances `R^S_k: [M × M]` (exactly conjugate-symmetric).
    pub(crate) sample_cov: Vec<Array2<c64>>,
    /// The samples, `samples[k][n]`.
    pub(crate) samples: Vec<Vec<Array1<c64>>>,
    /// True channels (offline training / evaluation only).
    pub(crate) h_true: Option<Vec<Array1<c64>>>,
    /// Noise, weights, budget.
    pub(crate) sys: SystemParams,
}

impl Task {
    /// Builds a task from per-user samples `samples[k][n]` (and optionally the true channels).
    ///
    /// # Errors
    /// [`MetaLearnError::Empty`] / [`MetaLearnError::ShapeMismatch`] for missing or unequal
    /// sample counts / lengths, [`MetaLearnError::NonFiniteInput`],
    /// [`MetaLearnError::ZeroChannel`] for a zero sample mean, configuration errors of `sys`.
    pub fn new(
        samples: &[Vec<Array1<c64>>],
        h_true: Option<&[Array1<c64>]>,
        sys: &SystemParams,
    ) -> Result<Self, MetaLearnError> {
        let n = samples.first().map(Vec::len).unwrap_or(0);
        if n == 0 {
            return Err(MetaLearnError::Empty { what: "samples of a block" });
        }
        if let Some(bad) = samples.iter().find(|s| s.len() != n) {
            return Err(MetaLearnError::shape("samples per user", n, bad.len()));
        }
        sys.check(samples.len())?;
        let flat: Vec<Array1<c64>> = samples.iter().flatten().cloned().collect();
        let m = crate::wmmse::check_columns(&flat)?;
        let mut means = Vec::new();
        let mut covs = Vec::new();
        for s in samples {
            let (mean, cov) = beamlab_channel::unknown_error::sample_mean_covariance(s)?;
            means.push(mean);
            covs.push(cov);
        }
        let scales: Vec<f64> =
            means.iter().map(|h| (h.iter().map(|z| z.norm_sqr()).sum::<f64>() / m as f64).sqrt()).collect();
        if let Some(user) = scales.iter().position(|s| !(*s > 0.0)) {
            return Err(MetaLearnError::ZeroChannel { user });
        }
        let h_true = match h_true {
            Some(h) => {
                if h.len() != samples.len() {
                    return Err(MetaLearnError::shape("true channels", samples.len(), h.len()));
                }
                if crate::wmmse::check_columns(h)? != m {
                    return Err(MetaLearnError::shape("true channel length", m, h[0].len()));
                }
                Some(h.to_vec())
            }
            None => None,
        };
        Ok(Self { h_bar: means, scales, sample_cov: covs, samples: samples.to_vec(), h_true, sys: sys.clone() })
    }

    /// Users `K`.
    #[must_use]
    pub fn n_users(&self) -> usize {
        self.h_bar.len()
    }

    /// Antennas `M`.
    #[must_use]
    pub fn n_tx(&self) -> usize {
        self.h_bar[0].len()
    }

    /// Samples per user `N`.
    #[must_use]
    pub fn n_samples(&self) -> usize {
        self.samples[0].len()
    }

    /// The sample means `h̄_k`.
    #[must_use]
    pub fn channel_estimates(&self) -> &[Array1<c64>] {
        &self.h_bar
    }

    /// The system parameters.
    #[must_use]
    pub fn system(&self) -> &SystemParams {
        &self.sys
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

/// The covariance network: its configuration, parameter layout and SALR mask.
#[derive(Debug)]
pub struct CovNet {
    config: CovNetConfig,
    output_dim: usize,
    device: Device,
    mask_pairs: Vec<(usize, usize)>,
}

impl CovNet {
    /// Checks the configuration and draws the SALR mask from `config.mask_seed`.
    ///
    /// # Errors
    /// [`MetaLearnError::InvalidConfig`] for `M = 0`, an empty or zero hidden width, a SALR
    /// rank of 0 or a density outside `[0, 1]`, `η ∉ [0, 1]`.
    pub fn new(config: CovNetConfig, device: &Device) -> Result<Self, MetaLearnError> {
        let m = config.n_tx;
        if m == 0 {
            return Err(MetaLearnError::config("n_tx", "must be >= 1"));
        }
        if config.hidden.is_empty() || config.hidden.contains(&0) {
            return Err(MetaLearnError::config("hidden", format!("needs non-zero widths, got {:?}", config.hidden)));
        }
        if !(0.0..=1.0).contains(&config.fusion_eta) {
            return Err(MetaLearnError::config("fusion_eta", format!("must be in [0, 1], got {}", config.fusion_eta)));
        }
        let mut mask_pairs = Vec::new();
        if let CovHead::Salr { rank, density } = config.head {
            if rank == 0 || !(0.0..=1.0).contains(&density) {
                return Err(MetaLearnError::config(
                    "head",
                    format!("SALR needs rank >= 1 and density in [0, 1], got {rank}, {density}"),
                ));
            }
            if density > 0.0 {
                let mut all: Vec<(usize, usize)> = (0..m).flat_map(|i| (i + 1..m).map(move |j| (i, j))).collect();
                let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(config.mask_seed);
                all.shuffle(&mut rng);
                all.truncate(salr_n_pairs(m, density));
                all.sort_unstable();
                mask_pairs = all;
            }
        }
        let output_dim = head_output_dim(config.head, m);
        Ok(Self { config, output_dim, device: device.clone(), mask_pairs })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &CovNetConfig {
        &self.config
    }

    /// The device of the parameter tensors.
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

    /// `(fan_in, fan_out)` of every linear layer, the output layer last.
    pub(crate) fn layer_dims(&self) -> Vec<(usize, usize)> {
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
}

/// `Σ_m c_m θ^(m)` for parameter lists of equal layout.
///
/// # Errors
/// No parameter sets, a coefficient count that differs from the set count, shape mismatches.
pub fn combine(params: &[&Params], coef: &[f64]) -> Result<Params, MetaLearnError> {
    let first = params.first().ok_or(MetaLearnError::Empty { what: "parameter sets to combine" })?;
    if coef.len() != params.len() {
        return Err(MetaLearnError::shape("combination coefficients", params.len(), coef.len()));
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use beamlab_channel::unknown_error::{haar_unitary, sample_error_block};
    use beamlab_channel::{UnknownErrorParams, rayleigh};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A Rayleigh block with the default error model, `σ² = 0.01`, `P = 1`.
    pub fn task(m: usize, k: usize, seed: u64) -> Task {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = rayleigh(k, 1, m, &mut rng).unwrap();
        let q = haar_unitary(m, &mut rng).unwrap();
        let b = sample_error_block(&h, &q, &UnknownErrorParams::default(), &mut rng).unwrap();
        let samples: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
        let h_true: Vec<_> = b.iter().map(|u| u.h_true.clone()).collect();
        Task::new(&samples, Some(&h_true), &SystemParams::uniform(k, 0.01, 1.0)).unwrap()
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

    #[test]
    fn bad_configs_and_inputs_are_rejected() {
        let dev = Device::Cpu;
        let err = |cfg: CovNetConfig| match CovNet::new(cfg, &dev) {
            Err(MetaLearnError::InvalidConfig { name, .. }) => name,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(err(CovNetConfig { n_tx: 0, ..Default::default() }), "n_tx");
        assert_eq!(err(CovNetConfig { hidden: vec![4, 0], ..Default::default() }), "hidden");
        assert_eq!(err(CovNetConfig { fusion_eta: 1.5, ..Default::default() }), "fusion_eta");
        assert_eq!(err(CovNetConfig { head: CovHead::Salr { rank: 0, density: 0.1 }, ..Default::default() }), "head");
        let sys = SystemParams::uniform(3, 0.01, 1.0);
        let nan = vec![vec![Array1::from(vec![c64::new(f64::NAN, 0.0); 8]); 2]; 3];
        assert!(matches!(Task::new(&nan, None, &sys), Err(MetaLearnError::NonFiniteInput { .. })));
        assert!(matches!(Task::new(&[], None, &sys), Err(MetaLearnError::Empty { .. })));
        let zero = vec![vec![Array1::from(vec![c64::new(0.0, 0.0); 8]); 2]; 3];
        assert!(matches!(Task::new(&zero, None, &sys), Err(MetaLearnError::ZeroChannel { user: 0 })));
        let ragged = vec![
            vec![Array1::from(vec![c64::new(1.0, 0.0); 8]); 2],
            vec![Array1::from(vec![c64::new(1.0, 0.0); 8]); 1],
        ];
        assert!(matches!(
            Task::new(&ragged, None, &SystemParams::uniform(2, 0.01, 1.0)),
            Err(MetaLearnError::ShapeMismatch { .. })
        ));
        let t = task(8, 3, 1);
        assert_eq!((t.n_users(), t.n_tx(), t.n_samples()), (3, 8, 2));
        let p = CovNet::new(CovNetConfig { n_tx: 4, hidden: vec![4], ..Default::default() }, &dev).unwrap();
        let a = p.init_params(&mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert!(combine(&[&a, &a], &[1.0]).is_err());
        assert!(combine(&[], &[]).is_err());
    }
}
