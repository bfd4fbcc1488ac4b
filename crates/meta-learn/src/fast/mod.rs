//! The production path of MB-MAML: the whole support / query loss and its parameter gradient in
//! plain `f64`: covariance network → head → fusion → `T` unrolled robust WMMSE iterations →
//! negative WSR, forward and reverse by hand. Meta-training, online adaptation and evaluation
//! ([`crate::maml`], [`crate::experiment`]) all run on it.
//!
//! The model is that of [`crate::covnet`]; the composed candle graph of the test-only `oracle`
//! module (the same maths with candle's autograd) is the reference every value and gradient entry
//! is checked against (to 1e-9 relative). Per user `k` of a block of `K` users:
//!
//! ```text
//! x_k = [Re h̄_k; Im h̄_k] / s_k,  s_k = ‖h̄_k‖/√M              (input, [K × 2M])
//! z = a W + b,  ẑ = (z − mean_K z)/√(var_K z + 1e-5),  a' = relu(γ ẑ + β)   (hidden layers)
//! out = a W_out + b_out                                        ([K × D_o])
//! R_k = η R^S_k + (1 − η) s_k² head(out_k)                     (head: full rank or SALR)
//! V = T robust WMMSE iterations from MRT on (h̄, R)            ([M × K])
//! L = −Σ_n WSR(ĥ_n, V) (support) or −WSR(h, V) (query)
//! ```
//!
//! Reverse pass, with the complex-gradient convention `ẑ = ∂L/∂Re z + j ∂L/∂Im z` (so
//! `dL = Re Σ conj(ẑ) dz`, which is what candle's (re, im) gradients hold). One solver iteration
//! and its adjoint (each adjoint line accumulates):
//!
//! ```text
//! g_ki = h_kᴴ v_i, q_ki = Re(v_iᴴ R_k v_i), a_k = Σ_i |g_ki|² + Σ_i q_ki + σ_k², d_k = g_kk,
//! u_k = d_k/a_k, e_k = a_k − |d_k|², w_k = a_k/e_k, λ_k = ω_k w_k |u_k|², c_k = ω_k w_k u_k,
//! μ = Σ λ_k σ_k²/P, B = Σ λ_k (h_k h_kᴴ + R_k) + μI, Y = [c_k h_k], X = B⁻¹Y, V⁺ = √P X/‖X‖_F
//!
//! X̂ = s V̂⁺ − (s/‖X‖²) Re⟨V̂⁺, X⟩ X,  s = √P/‖X‖_F
//! Ŷ = B⁻ᴴ X̂,  B̂ = −Ŷ Xᴴ,  ĉ_k = h_kᴴ ŷ_k,  μ̂ = Re tr B̂
//! λ̂_k = Re(h_kᴴ B̂ h_k) + Re⟨B̂, R_k⟩ + μ̂ σ_k²/P,  R̂_k += λ_k B̂
//! ŵ_k = ω_k Re(conj(ĉ_k) u_k) + λ̂_k ω_k |u_k|²,   û_k = ω_k w_k ĉ_k + 2 λ̂_k ω_k w_k u_k
//! d̂_k = û_k/a_k + 2 ŵ_k (a_k/e_k²) d_k,           â_k = −Re(conj(û_k) d_k)/a_k² − ŵ_k |d_k|²/e_k²
//! ĝ_ki = 2 â_k g_ki (+ d̂_k if i = k),  q̂_ki = â_k
//! v̂_i = Σ_k ĝ_ki h_k + Σ_k q̂_ki (R_k + R_kᴴ) v_i,   R̂_k += Σ_i q̂_ki v_i v_iᴴ
//! ```
//!
//! and around it:
//!
//! - loss: `∂L/∂|g_kk|² = −ω_k/(T_k ln 2)`, `∂L/∂|g_ki|² = ω_k S_k/(I_k T_k ln 2)` (`i ≠ k`,
//!   `T = S + I`), `ĝ = 2 g ∂L/∂|g|²`, `v̂_i = Σ_k ĝ_ki h_k`;
//! - the solver: `B = L Lᴴ` factored by the split-complex Cholesky of
//!   `beamlab_linalg_ops::small::split` (B is Hermitian positive definite because every `R_k` is
//!   Hermitian PSD, so the adjoint solve `B⁻ᴴ X̂` reuses the same factor) and
//!   `(R_k + R_kᴴ) V = 2 R_k V` taken from the forward trace (the combined covariances are
//!   exactly Hermitian here);
//! - heads: with `Ĝ = (1 − η) s_k² R̂_k` and `Ĝ_s = Ĝ + Ĝᴴ`: `R = A Aᴴ` gives `Â = Ĝ_s A`
//!   (also for the full-rank `L`, restricted to its lower triangle); a softplus diagonal `d`
//!   gets `Re Ĝ_ii · sigmoid(d_i)`; a SALR pair `(i, j)` with `S_ij = x + jy` gets
//!   `x̂ = Re Ĝ_s,ij + (Re Ĝ_ii + Re Ĝ_jj) x/|S_ij|`, `ŷ = Im Ĝ_s,ij + (Re Ĝ_ii + Re Ĝ_jj) y/|S_ij|`;
//! - BatchNorm (batch statistics): `γ̂ = Σ_k ĥ ẑ`, `β̂ = Σ_k ĥ`,
//!   `ẑ' = γ ĥ`, `ž = (ẑ' − mean ẑ' − ẑ mean(ẑ' ẑ)) / √(var + 1e-5)`; ReLU passes where its input
//!   is `≥ 0` (as candle).
//!
//! Files: [`workspace`](self) buffers, `network` (MLP), `heads` (heads, scaling, fusion),
//! `solver` (unrolled robust WMMSE), `loss` (sum rates); this file holds the layout and the
//! public entry points. All buffers live in a [`FastWorkspace`] that is reused across steps and
//! blocks, so a gradient step allocates nothing but a short list of slices after the first call. Parameters are the
//! flat concatenation of the candle tensors of [`crate::covnet::Params`] in their order and
//! row-major layout ([`FastNet::flatten`], [`FastNet::unflatten`]). Single-threaded, no global
//! state, deterministic (same inputs → same bits, whatever the thread count).
//!
//! Kernels (the machine's baseline target is SSE2, so everything is written to auto-vectorise):
//! the solver keeps complex data as split real / imaginary `f64` arrays, `[K × M]` blocks hold
//! one column per row; `R_k V` is a sum of contiguous axpys over the rows of `R_k` (valid because
//! `R_k` is Hermitian: column `j` = conj(row `j`)); `B` (32 × 32 in Table I) is factored and
//! solved by column-oriented substitution in split layout — cheaper than a LAPACK round trip
//! through `ndarray` (which copies and allocates) at this size; the MLP backward streams every
//! row of `W` and `Ŵ` once per block of four users. **Assumption:** the combined covariances are
//! exactly Hermitian (true by construction: the heads mirror their lower triangle and the sample
//! covariances of [`Task::new`] are exact conjugate-symmetric sums).
//!
//! # Example
//! ```
//! use beamlab_meta_learn::covnet::{CovHead, CovNet, CovNetConfig, LossKind, Task};
//! use beamlab_meta_learn::fast::{FastNet, FastWorkspace};
//! use beamlab_meta_learn::wmmse::SystemParams;
//! use beamlab_linalg_ops::c64;
//! use candle_core::Device;
//! use ndarray::Array1;
//! use rand::{Rng, SeedableRng};
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let cfg = CovNetConfig { n_tx: 4, hidden: vec![8], head: CovHead::Salr { rank: 1, density: 0.5 },
//!     n_unroll: 3, ..Default::default() };
//! let net = CovNet::new(cfg, &Device::Cpu)?;
//! // Three users, two noisy samples each.
//! let samples: Vec<Vec<Array1<c64>>> = (0..3)
//!     .map(|_| (0..2).map(|_| Array1::from_shape_fn(4, |_| c64::new(rng.random(), rng.random()))).collect())
//!     .collect();
//! let task = Task::new(&samples, None, &SystemParams::uniform(3, 0.1, 1.0))?;
//! let fast = FastNet::new(&net);
//! let ft = fast.task(&task)?;
//! let mut theta = fast.flatten(&net.init_params(&mut rng)?)?;
//! let (mut ws, mut grad) = (FastWorkspace::default(), Vec::new());
//! let loss = fast.loss_and_grad(&mut ws, &theta, &ft, LossKind::Support, &mut grad)?;
//! assert_eq!(grad.len(), fast.n_params());
//! // A small step against the gradient lowers the support loss.
//! for (t, g) in theta.iter_mut().zip(&grad) {
//!     *t -= 1e-4 * g;
//! }
//! assert!(fast.loss(&mut ws, &theta, &ft, LossKind::Support)? < loss);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod heads;
mod loss;
mod network;
mod solver;
#[cfg(test)]
mod tests;
mod workspace;

pub use workspace::FastWorkspace;

use beamlab_linalg_ops::c64;
use candle_core::{Device, Tensor};
use ndarray::Array2;

use crate::MetaLearnError;
use crate::covnet::{CovHead, CovNet, LossKind, Params, Task};
use crate::wmmse::SystemParams;

use network::Sink;
use workspace::resize;

pub(crate) const BN_EPS: f64 = 1e-5;

/// Offsets of one layer in the flat parameter vector.
#[derive(Clone, Copy, Debug)]
struct Layer {
    n_in: usize,
    n_out: usize,
    /// Index of `W` in the parameter list (`b` follows, then `γ, β` with BatchNorm).
    index: usize,
    batch_norm: bool,
}

/// The head with its constants (the SALR mask).
#[derive(Clone, Debug)]
enum Head {
    FullRank,
    Salr { rank: usize, sparse: bool, pairs: Vec<(usize, usize)> },
}

/// The plain-`f64` mirror of a [`CovNet`]: layer layout, head constants, solver settings.
#[derive(Clone, Debug)]
pub struct FastNet {
    m: usize,
    layers: Vec<Layer>,
    shapes: Vec<Vec<usize>>,
    offsets: Vec<usize>,
    n_params: usize,
    head: Head,
    output_dim: usize,
    eta: f64,
    n_unroll: usize,
    device: Device,
}

/// One block in the layout the fast path needs (built once per block from a [`Task`]).
#[derive(Clone, Debug)]
pub struct FastTask {
    k: usize,
    /// Network input `[K × 2M]`.
    x: Vec<f64>,
    /// `s_k²`.
    scales2: Vec<f64>,
    /// `h̄` as `[K × M]` (one user per row), real and imaginary parts.
    ht_re: Vec<f64>,
    ht_im: Vec<f64>,
    /// The MRT start `V⁰` as `[K × M]` (re, im).
    v0_re: Vec<f64>,
    v0_im: Vec<f64>,
    /// `h̄_k h̄_kᴴ`, `[K × M × M]`.
    hh_re: Vec<f64>,
    hh_im: Vec<f64>,
    /// `R^S`, `[K × M × M]`.
    r_s: Vec<c64>,
    /// Samples, each `[K × M]` (re, im).
    samples: Vec<(Vec<f64>, Vec<f64>)>,
    /// True channels `[K × M]` (re, im).
    h_true: Option<(Vec<f64>, Vec<f64>)>,
    sys: SystemParams,
}

fn tensor_slices<'a>(
    guards: &'a [(candle_core::StorageRef<'a>, &'a candle_core::Layout)],
) -> Result<Vec<&'a [f64]>, MetaLearnError> {
    guards
        .iter()
        .map(|(s, l)| match &**s {
            candle_core::Storage::Cpu(cpu) => {
                let data = cpu.as_slice::<f64>()?;
                let (a, b) = l.contiguous_offsets().ok_or_else(|| {
                    MetaLearnError::shape("parameter tensor layout", "contiguous", format!("{:?}", l.stride()))
                })?;
                Ok(&data[a..b])
            }
            _ => Err(MetaLearnError::shape("parameter tensor device", "CPU", "another device")),
        })
        .collect()
}

impl FastNet {
    /// Mirrors `net` (layout, head constants, `η`, `T`).
    #[must_use]
    pub fn new(net: &CovNet) -> Self {
        let cfg = net.config();
        let m = cfg.n_tx;
        let output_dim = net.output_dim();
        let mut layers = Vec::new();
        let mut shapes = Vec::new();
        let mut fan_in = 2 * m;
        let n_hidden = cfg.hidden.len();
        for l in 0..=n_hidden {
            let n_out = if l < n_hidden { cfg.hidden[l] } else { output_dim };
            let bn = l < n_hidden && cfg.batch_norm;
            layers.push(Layer { n_in: fan_in, n_out, index: shapes.len(), batch_norm: bn });
            shapes.push(vec![fan_in, n_out]);
            shapes.push(vec![n_out]);
            if bn {
                shapes.push(vec![n_out]);
                shapes.push(vec![n_out]);
            }
            fan_in = n_out;
        }
        let mut offsets = Vec::with_capacity(shapes.len() + 1);
        let mut o = 0;
        for s in &shapes {
            offsets.push(o);
            o += s.iter().product::<usize>();
        }
        offsets.push(o);
        let head = match cfg.head {
            CovHead::FullRank => Head::FullRank,
            CovHead::Salr { rank, density } => {
                Head::Salr { rank, sparse: density > 0.0, pairs: net.mask_pairs().to_vec() }
            }
        };
        Self {
            m,
            layers,
            shapes,
            offsets,
            n_params: o,
            head,
            output_dim,
            eta: cfg.fusion_eta,
            n_unroll: cfg.n_unroll,
            device: net.device().clone(),
        }
    }

    /// Total number of scalars (length of a flat parameter vector).
    #[must_use]
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    fn check_list(&self, n: usize) -> Result<(), MetaLearnError> {
        if n != self.shapes.len() {
            return Err(MetaLearnError::shape("parameter tensors", self.shapes.len(), n));
        }
        Ok(())
    }

    fn check_shapes(&self, params: &[Tensor]) -> Result<(), MetaLearnError> {
        self.check_list(params.len())?;
        for (t, s) in params.iter().zip(&self.shapes) {
            if t.dims() != s.as_slice() || t.dtype() != candle_core::DType::F64 {
                return Err(MetaLearnError::shape(
                    "parameter tensor",
                    format!("f64 {s:?}"),
                    format!("{:?} {:?}", t.dtype(), t.dims()),
                ));
            }
        }
        Ok(())
    }

    /// Candle parameter tensors → one flat vector (the fast path's layout).
    ///
    /// # Errors
    /// Wrong number or shapes of tensors, non-`f64` tensors.
    pub fn flatten(&self, params: &[Tensor]) -> Result<Vec<f64>, MetaLearnError> {
        self.check_shapes(params)?;
        let guards: Vec<_> = params.iter().map(Tensor::storage_and_layout).collect();
        let mut out = Vec::with_capacity(self.n_params);
        for p in tensor_slices(&guards)? {
            out.extend_from_slice(p);
        }
        Ok(out)
    }

    /// A flat vector → candle parameter tensors.
    ///
    /// # Errors
    /// A vector of the wrong length; candle failures.
    pub fn unflatten(&self, theta: &[f64]) -> Result<Params, MetaLearnError> {
        if theta.len() != self.n_params {
            return Err(MetaLearnError::shape("flat parameters", self.n_params, theta.len()));
        }
        self.shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let v = theta[self.offsets[i]..self.offsets[i + 1]].to_vec();
                Ok(Tensor::from_vec(v, s.as_slice(), &self.device)?)
            })
            .collect()
    }

    fn split<'a>(&self, theta: &'a [f64]) -> Result<Vec<&'a [f64]>, MetaLearnError> {
        if theta.len() != self.n_params {
            return Err(MetaLearnError::shape("flat parameters", self.n_params, theta.len()));
        }
        Ok((0..self.shapes.len()).map(|i| &theta[self.offsets[i]..self.offsets[i + 1]]).collect())
    }

    /// Converts a block (validates its shape against the network).
    ///
    /// # Errors
    /// [`MetaLearnError::ShapeMismatch`] for another `M`, [`MetaLearnError::TooFewUsers`] for
    /// `K < 2` with BatchNorm.
    pub fn task(&self, task: &Task) -> Result<FastTask, MetaLearnError> {
        let m = self.m;
        let k = task.n_users();
        if task.n_tx() != m {
            return Err(MetaLearnError::shape("antennas of the block", m, task.n_tx()));
        }
        if self.layers.iter().any(|l| l.batch_norm) && k < 2 {
            return Err(MetaLearnError::TooFewUsers { n_users: k });
        }
        let mut x = vec![0.0; k * 2 * m];
        for kk in 0..k {
            let inv = 1.0 / task.scales[kk];
            for i in 0..m {
                x[kk * 2 * m + i] = task.h_bar[kk][i].re * inv;
                x[kk * 2 * m + m + i] = task.h_bar[kk][i].im * inv;
            }
        }
        let rows = |cols: &[ndarray::Array1<c64>]| -> (Vec<f64>, Vec<f64>) {
            (
                cols.iter().flat_map(|h| h.iter().map(|z| z.re)).collect(),
                cols.iter().flat_map(|h| h.iter().map(|z| z.im)).collect(),
            )
        };
        let (ht_re, ht_im) = rows(&task.h_bar);
        let mut hh_re = vec![0.0; k * m * m];
        let mut hh_im = vec![0.0; k * m * m];
        for (kk, h) in task.h_bar.iter().enumerate() {
            for i in 0..m {
                for j in 0..m {
                    let z = h[i] * h[j].conj();
                    hh_re[kk * m * m + i * m + j] = z.re;
                    hh_im[kk * m * m + i * m + j] = z.im;
                }
            }
        }
        let v0 = crate::wmmse::mrt_start(&task.h_bar, task.sys.power)?;
        let v0_re = (0..k * m).map(|q| v0[[q % m, q / m]].re).collect();
        let v0_im = (0..k * m).map(|q| v0[[q % m, q / m]].im).collect();
        let r_s: Vec<c64> = task.sample_cov.iter().flat_map(|a| a.iter().copied()).collect();
        let n = task.n_samples();
        let samples = (0..n).map(|i| rows(&task.samples.iter().map(|s| s[i].clone()).collect::<Vec<_>>())).collect();
        let h_true = task.h_true.as_deref().map(rows);
        Ok(FastTask {
            k,
            x,
            scales2: task.scales.iter().map(|s| s * s).collect(),
            ht_re,
            ht_im,
            v0_re,
            v0_im,
            hh_re,
            hh_im,
            r_s,
            samples,
            h_true,
            sys: task.sys.clone(),
        })
    }

    fn forward_slices(&self, ws: &mut FastWorkspace, p: &[&[f64]], task: &FastTask) -> Result<(), MetaLearnError> {
        self.prepare(ws, task.k);
        self.network_forward(ws, p, task);
        self.covariances_forward(ws, task);
        self.solver_forward(ws, task)
    }

    fn loss_slices(
        &self,
        ws: &mut FastWorkspace,
        p: &[&[f64]],
        task: &FastTask,
        kind: LossKind,
    ) -> Result<f64, MetaLearnError> {
        self.forward_slices(ws, p, task)?;
        self.loss_terms(ws, task, kind, false)
    }

    /// Loss of a task at the flat parameters `theta`.
    ///
    /// # Errors
    /// Wrong parameter length, a query loss without true channels, a breakdown of the solver.
    pub fn loss(
        &self,
        ws: &mut FastWorkspace,
        theta: &[f64],
        task: &FastTask,
        kind: LossKind,
    ) -> Result<f64, MetaLearnError> {
        let p = self.split(theta)?;
        self.loss_slices(ws, &p, task, kind)
    }

    /// Loss at candle parameter tensors, read in place (no copy of the parameters).
    ///
    /// # Errors
    /// As [`FastNet::loss`]; wrong tensor list, non-`f64` or non-CPU tensors.
    pub fn loss_tensors(
        &self,
        ws: &mut FastWorkspace,
        params: &[Tensor],
        task: &FastTask,
        kind: LossKind,
    ) -> Result<f64, MetaLearnError> {
        self.check_shapes(params)?;
        let guards: Vec<_> = params.iter().map(Tensor::storage_and_layout).collect();
        let p = tensor_slices(&guards)?;
        self.loss_slices(ws, &p, task, kind)
    }

    /// Loss and its gradient with respect to the flat parameters (written to `grad`, resized to
    /// [`FastNet::n_params`]).
    ///
    /// # Errors
    /// As [`FastNet::loss`]; [`MetaLearnError::NonFinite`] for a non-finite loss.
    pub fn loss_and_grad(
        &self,
        ws: &mut FastWorkspace,
        theta: &[f64],
        task: &FastTask,
        kind: LossKind,
        grad: &mut Vec<f64>,
    ) -> Result<f64, MetaLearnError> {
        let value = self.forward_and_head_reverse(ws, theta, task, kind)?;
        resize(grad, self.n_params);
        self.network_backward(ws, task.k, &mut Sink::Grad { theta, grad });
        Ok(value)
    }

    /// One SGD step `θ ← θ − lr ∇L(θ)` in place (each layer updated as soon as its gradient is
    /// known in the reverse pass);
    /// returns the loss at the old `θ`. Gives the same bits as [`FastNet::loss_and_grad`]
    /// followed by `θ − g·lr`.
    ///
    /// # Errors
    /// As [`FastNet::loss_and_grad`].
    pub fn sgd_step(
        &self,
        ws: &mut FastWorkspace,
        theta: &mut [f64],
        task: &FastTask,
        kind: LossKind,
        lr: f64,
    ) -> Result<f64, MetaLearnError> {
        let value = self.forward_and_head_reverse(ws, theta, task, kind)?;
        let mut scratch = std::mem::take(&mut ws.scratch);
        self.network_backward(ws, task.k, &mut Sink::Sgd { theta, lr, scratch: &mut scratch });
        ws.scratch = scratch;
        Ok(value)
    }

    /// Forward, loss, and the reverse pass down to the raw network outputs (`ws.d_out`).
    fn forward_and_head_reverse(
        &self,
        ws: &mut FastWorkspace,
        theta: &[f64],
        task: &FastTask,
        kind: LossKind,
    ) -> Result<f64, MetaLearnError> {
        let p = self.split(theta)?;
        self.forward_slices(ws, &p, task)?;
        let value = self.loss_terms(ws, task, kind, true)?;
        if !value.is_finite() {
            return Err(MetaLearnError::NonFinite(format!("{kind:?} loss {value}")));
        }
        self.solver_backward(ws, task);
        self.covariances_backward(ws, task);
        Ok(value)
    }

    /// As [`FastNet::loss_tensors`].
    pub fn precoder_tensors(
        &self,
        ws: &mut FastWorkspace,
        params: &[Tensor],
        task: &FastTask,
    ) -> Result<Array2<c64>, MetaLearnError> {
        self.check_shapes(params)?;
        let guards: Vec<_> = params.iter().map(Tensor::storage_and_layout).collect();
        let p = tensor_slices(&guards)?;
        self.forward_slices(ws, &p, task)?;
        Ok(self.final_precoder(ws, task.k))
    }

    fn final_precoder(&self, ws: &FastWorkspace, k: usize) -> Array2<c64> {
        let m = self.m;
        let off = self.n_unroll * m * k;
        Array2::from_shape_fn((m, k), |(i, j)| c64::new(ws.sv.v_re[off + j * m + i], ws.sv.v_im[off + j * m + i]))
    }

    /// The precoder `V: [M × K]` at the flat parameters.
    ///
    /// # Errors
    /// As [`FastNet::loss`].
    pub fn precoder(
        &self,
        ws: &mut FastWorkspace,
        theta: &[f64],
        task: &FastTask,
    ) -> Result<Array2<c64>, MetaLearnError> {
        let p = self.split(theta)?;
        self.forward_slices(ws, &p, task)?;
        Ok(self.final_precoder(ws, task.k))
    }
}

/// `n_steps` SGD steps `θ ← θ − α ∇L_S(θ)` in plain `f64` from the flat `theta` (updated in
/// place, [`FastNet::sgd_step`]); returns the support loss before each step.
///
/// # Errors
/// As [`FastNet::loss_and_grad`].
pub(crate) fn sgd_support_steps(
    net: &FastNet,
    ws: &mut FastWorkspace,
    theta: &mut [f64],
    task: &FastTask,
    n_steps: usize,
    lr: f64,
) -> Result<Vec<f64>, MetaLearnError> {
    let mut trace = Vec::with_capacity(n_steps);
    for _ in 0..n_steps {
        trace.push(net.sgd_step(ws, theta, task, LossKind::Support, lr)?);
    }
    Ok(trace)
}

/// The precoder `V: [M × K]` of `net` at `params` on `task` (one forward pass; allocates a
/// workspace — for repeated calls keep a [`FastNet`], [`FastTask`] and [`FastWorkspace`]).
///
/// # Errors
/// As [`FastNet::task`] and [`FastNet::precoder_tensors`].
pub fn precoder_of(net: &CovNet, params: &[Tensor], task: &Task) -> Result<Array2<c64>, MetaLearnError> {
    let fast = FastNet::new(net);
    let ft = fast.task(task)?;
    fast.precoder_tensors(&mut FastWorkspace::default(), params, &ft)
}
