//! The whole support / query loss and its parameter gradient in plain `f64`, without candle:
//! covariance network → head → fusion → `T` unrolled robust WMMSE iterations → negative WSR,
//! forward and reverse by hand (the fast path of [`crate::maml`] when
//! [`crate::covnet::CovNetConfig::fast_grad`] is on).
//!
//! The model is exactly that of [`crate::covnet`] (which stays the reference; tests compare every
//! gradient entry): per user `k` of a block of `K` users,
//!
//! ```text
//! x_k = [Re h̄_k; Im h̄_k] / s_k,  s_k = ‖h̄_k‖/√M              (input, [K × 2M])
//! z = a W + b,  ẑ = (z − mean_K z)/√(var_K z + 1e-5),  a' = relu(γ ẑ + β)   (hidden layers)
//! out = a W_out + b_out                                        ([K × D_o])
//! R_k = η R^S_k + (1 − η) s_k² head(out_k)                     (head: full rank or SALR)
//! V = T robust WMMSE iterations from MRT on (h̄, R)            ([M × K])
//! L = −Σ_n WSR(ĥ_n, V) (support, ÷ N if `support_mean`) or −WSR(h, V) (query)
//! ```
//!
//! Reverse pass, with the complex-gradient convention `ẑ = ∂L/∂Re z + j ∂L/∂Im z` of
//! [`crate::fused`] (whose adjoint equations are reused, see there):
//!
//! - loss: `∂L/∂|g_kk|² = −ω_k/(T_k ln 2)`, `∂L/∂|g_ki|² = ω_k S_k/(I_k T_k ln 2)` (`i ≠ k`,
//!   `T = S + I`), `ĝ = 2 g ∂L/∂|g|²`, `v̂_i = Σ_k ĝ_ki h_k`;
//! - the solver: as in [`crate::fused`], with `B = L Lᴴ` factored by a hand-written complex
//!   Cholesky (B is Hermitian positive definite because every `R_k` is Hermitian PSD, so the
//!   adjoint solve `B⁻ᴴ X̂` reuses the same factor) and `(R_k + R_kᴴ) V = 2 R_k V` taken from the
//!   forward trace (the fused covariances are exactly Hermitian here);
//! - heads: with `Ĝ = (1 − η) s_k² R̂_k` and `Ĝ_s = Ĝ + Ĝᴴ`: `R = A Aᴴ` gives `Â = Ĝ_s A`
//!   (also for the full-rank `L`, restricted to its lower triangle); a softplus diagonal `d`
//!   gets `Re Ĝ_ii · sigmoid(d_i)`; a SALR pair `(i, j)` with `S_ij = x + jy` gets
//!   `x̂ = Re Ĝ_s,ij + (Re Ĝ_ii + Re Ĝ_jj) x/|S_ij|`, `ŷ = Im Ĝ_s,ij + (Re Ĝ_ii + Re Ĝ_jj) y/|S_ij|`;
//! - BatchNorm (batch statistics): `γ̂ = Σ_k ĥ ẑ`, `β̂ = Σ_k ĥ`,
//!   `ẑ' = γ ĥ`, `ž = (ẑ' − mean ẑ' − ẑ mean(ẑ' ẑ)) / √(var + 1e-5)`; ReLU passes where its input
//!   is `≥ 0` (as candle).
//!
//! All buffers live in a [`FastWorkspace`] that is reused across steps and blocks, so a gradient
//! step allocates nothing but a short list of slices after the first call. Parameters are the
//! flat concatenation of the candle tensors of [`crate::covnet::Params`] in their order and
//! row-major layout ([`FastNet::flatten`], [`FastNet::unflatten`]). Single-threaded, no global
//! state, deterministic (same inputs → same bits, whatever the thread count).
//!
//! Kernels (the machine's baseline target is SSE2, so everything is written to auto-vectorise):
//! the solver keeps complex data as split real / imaginary `f64` arrays, `[K × M]` blocks hold
//! one column per row; `R_k V` is a sum of contiguous axpys over the rows of `R_k` (valid because
//! `R_k` is Hermitian: column `j` = conj(row `j`)); `B` (32 × 32 in Table I) is factored by a
//! hand-written complex Cholesky and solved by column-oriented substitution — cheaper than a
//! LAPACK round trip through `beamlab-linalg-ops` (which copies into `ndarray` and allocates) at
//! this size; the MLP backward streams every row of `W` and `Ŵ` once per block of four users.
//! **Assumption:** the fused covariances are exactly Hermitian (true by construction: the heads
//! mirror their lower triangle and the sample covariances of `TaskTensors::new` are exact
//! conjugate-symmetric sums); a non-Hermitian `R^S` would make this path differ from candle.
//!
//! # Example
//! ```
//! use beamlab_meta_learn::covnet::{CovHead, CovNet, CovNetConfig, LossKind, TaskTensors};
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
//! let task = TaskTensors::new(&samples, None, &SystemParams::uniform(3, 0.1, 1.0), &Device::Cpu)?;
//! let fast = FastNet::new(&net)?;
//! let ft = fast.task(&task)?;
//! let theta = fast.flatten(&net.init_params(&mut rng)?)?;
//! let (mut ws, mut grad) = (FastWorkspace::default(), Vec::new());
//! let loss = fast.loss_and_grad(&mut ws, &theta, &ft, LossKind::Support, &mut grad)?;
//! let (reference, _) = net.loss_and_grad(&fast.unflatten(&theta)?, &task, LossKind::Support)?;
//! assert!((loss - reference).abs() < 1e-10 * reference.abs());
//! assert_eq!(grad.len(), fast.n_params());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Index loops over several parallel buffers are the clearest form of these kernels.
#![allow(clippy::needless_range_loop)]

use beamlab_linalg_ops::c64;
use candle_core::{Device, Tensor};
use ndarray::Array2;

use crate::MetaLearnError;
use crate::covnet::{CovHead, CovNet, LossKind, Params, TaskTensors};
use crate::wmmse::SystemParams;

const BN_EPS: f64 = 1e-5;

/// Offsets of one layer in the flat parameter vector.
#[derive(Clone, Copy, Debug)]
struct Layer {
    n_in: usize,
    n_out: usize,
    /// Index of `W` in the parameter list (`b` follows, then `γ, β` with BatchNorm).
    index: usize,
    batch_norm: bool,
}

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
    support_mean: bool,
    device: Device,
}

/// One block in the layout the fast path needs (built once per block from [`TaskTensors`]).
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

/// Solver buffers (complex values split into real and imaginary parts; `[K × M]` blocks hold
/// one user / column per row).
#[derive(Clone, Debug, Default)]
struct SolverBuffers {
    r_re: Vec<f64>,
    r_im: Vec<f64>,
    c_re: Vec<f64>,
    c_im: Vec<f64>,
    v_re: Vec<f64>,
    v_im: Vec<f64>,
    g: Vec<c64>,
    rv_re: Vec<f64>,
    rv_im: Vec<f64>,
    a: Vec<f64>,
    u: Vec<c64>,
    w: Vec<f64>,
    lam: Vec<f64>,
    l_re: Vec<f64>,
    l_im: Vec<f64>,
    lt_re: Vec<f64>,
    lt_im: Vec<f64>,
    x_re: Vec<f64>,
    x_im: Vec<f64>,
    vh_re: Vec<f64>,
    vh_im: Vec<f64>,
    vn_re: Vec<f64>,
    vn_im: Vec<f64>,
    yh_re: Vec<f64>,
    yh_im: Vec<f64>,
    bh_re: Vec<f64>,
    bh_im: Vec<f64>,
    vv_re: Vec<f64>,
    vv_im: Vec<f64>,
    rh_re: Vec<f64>,
    rh_im: Vec<f64>,
    gl: Vec<c64>,
}

/// Reusable buffers of the forward and reverse passes.
#[derive(Clone, Debug, Default)]
pub struct FastWorkspace {
    // Network.
    act: Vec<Vec<f64>>,
    z: Vec<Vec<f64>>,
    zhat: Vec<Vec<f64>>,
    pre: Vec<Vec<f64>>,
    inv_std: Vec<Vec<f64>>,
    out: Vec<f64>,
    d_out: Vec<f64>,
    d_a: Vec<f64>,
    d_z: Vec<f64>,
    scratch: Vec<f64>,
    // Head and fusion.
    fac: Vec<c64>,
    r: Vec<c64>,
    r_hat: Vec<c64>,
    g_s: Vec<c64>,
    fac_hat: Vec<c64>,
    sv: SolverBuffers,
}

fn resize<T: Clone + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() != n {
        v.clear();
        v.resize(n, T::default());
    }
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (1.0 + (-x.abs()).exp()).ln()
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[inline]
fn axpy(y: &mut [f64], s: f64, x: &[f64]) {
    for (a, b) in y.iter_mut().zip(x) {
        *a += s * b;
    }
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `z = a W + b` for `a: [K × n_in]`, `W: [n_in × n_out]`.
fn linear_forward(a: &[f64], k: usize, n_in: usize, n_out: usize, w: &[f64], b: &[f64], z: &mut [f64]) {
    for kk in 0..k {
        z[kk * n_out..(kk + 1) * n_out].copy_from_slice(b);
    }
    for i in 0..n_in {
        let row = &w[i * n_out..(i + 1) * n_out];
        for kk in 0..k {
            let s = a[kk * n_in + i];
            if s != 0.0 {
                axpy(&mut z[kk * n_out..(kk + 1) * n_out], s, row);
            }
        }
    }
}

/// Row `i` of the gradients of `z = a W + b`: `Ŵ_i = Σ_k a_ki ẑ_k` into `g`, and (if `d_a` is
/// given) `â_ki = ⟨W_i, ẑ_k⟩`, set to 0 where the ReLU that produced `a` was inactive
/// (`pre < 0`). Users are processed in blocks of four so that the row is streamed once per block.
#[allow(clippy::too_many_arguments)]
#[inline]
fn row_backward(
    a: &[f64],
    k: usize,
    n_in: usize,
    n_out: usize,
    i: usize,
    row: &[f64],
    d_z: &[f64],
    g: &mut [f64],
    d_a: &mut Option<(&mut [f64], &[f64])>,
) {
    let mut k0 = 0;
    while k0 < k {
        let kb = (k - k0).min(4);
        let init = k0 == 0;
        if kb == 4 {
            let d0 = &d_z[k0 * n_out..(k0 + 1) * n_out];
            let d1 = &d_z[(k0 + 1) * n_out..(k0 + 2) * n_out];
            let d2 = &d_z[(k0 + 2) * n_out..(k0 + 3) * n_out];
            let d3 = &d_z[(k0 + 3) * n_out..(k0 + 4) * n_out];
            let s = [a[k0 * n_in + i], a[(k0 + 1) * n_in + i], a[(k0 + 2) * n_in + i], a[(k0 + 3) * n_in + i]];
            if init {
                for ((((gj, e0), e1), e2), e3) in g.iter_mut().zip(d0).zip(d1).zip(d2).zip(d3) {
                    *gj = (s[0] * e0 + s[1] * e1) + (s[2] * e2 + s[3] * e3);
                }
            } else {
                for ((((gj, e0), e1), e2), e3) in g.iter_mut().zip(d0).zip(d1).zip(d2).zip(d3) {
                    *gj += (s[0] * e0 + s[1] * e1) + (s[2] * e2 + s[3] * e3);
                }
            }
            if let Some((da, pre)) = d_a.as_mut() {
                for (u, dz) in [d0, d1, d2, d3].into_iter().enumerate() {
                    let q = (k0 + u) * n_in + i;
                    da[q] = if pre[q] < 0.0 { 0.0 } else { dot(row, dz) };
                }
            }
        } else {
            if init {
                g.fill(0.0);
            }
            for kk in k0..k0 + kb {
                let dz = &d_z[kk * n_out..(kk + 1) * n_out];
                let s = a[kk * n_in + i];
                if s != 0.0 {
                    axpy(g, s, dz);
                }
                if let Some((da, pre)) = d_a.as_mut() {
                    let q = kk * n_in + i;
                    da[q] = if pre[q] < 0.0 { 0.0 } else { dot(row, dz) };
                }
            }
        }
        k0 += kb;
    }
}

/// `b̂ = Σ_k ẑ_k`.
fn bias_backward(k: usize, n_out: usize, d_z: &[f64], g_b: &mut [f64]) {
    g_b.copy_from_slice(&d_z[..n_out]);
    for kk in 1..k {
        axpy(g_b, 1.0, &d_z[kk * n_out..(kk + 1) * n_out]);
    }
}

/// Where the reverse pass puts the parameter gradient.
enum Sink<'a> {
    /// Write `∇θ` to `grad`.
    Grad { theta: &'a [f64], grad: &'a mut [f64] },
    /// Apply `θ ← θ − lr ∇θ` layer by layer as soon as a layer's gradient is known (each
    /// gradient row is used while hot; the same operations as a separate SGD pass).
    Sgd { theta: &'a mut [f64], lr: f64, scratch: &'a mut Vec<f64> },
}

impl Sink<'_> {
    fn theta(&self) -> &[f64] {
        match self {
            Sink::Grad { theta, .. } => theta,
            Sink::Sgd { theta, .. } => theta,
        }
    }

    /// Emits the gradient `g` of the parameters `range` (computed by `f` into the sink's
    /// buffer, reading the current parameters).
    fn emit(&mut self, range: std::ops::Range<usize>, f: impl FnOnce(&[f64], &mut [f64])) {
        match self {
            Sink::Grad { theta, grad } => f(theta, &mut grad[range]),
            Sink::Sgd { theta, lr, scratch } => {
                resize(scratch, range.len());
                f(theta, scratch);
                for (p, g) in theta[range].iter_mut().zip(scratch.iter()) {
                    *p -= g * *lr;
                }
            }
        }
    }
}

/// `Σ_j conj(a_j) b_j` for complex vectors given as (re, im) slices.
#[inline]
fn cdot_conj(ar: &[f64], ai: &[f64], br: &[f64], bi: &[f64]) -> (f64, f64) {
    (dot(ar, br) + dot(ai, bi), dot(ar, bi) - dot(ai, br))
}

/// `b += a · conj(x)` (complex scalar `a`, vectors as (re, im) slices).
#[inline]
fn outer_conj_acc(br: &mut [f64], bi: &mut [f64], ar: f64, ai: f64, xr: &[f64], xi: &[f64]) {
    for (o, (p, q)) in br.iter_mut().zip(xr.iter().zip(xi)) {
        *o += ar * p + ai * q;
    }
    for (o, (p, q)) in bi.iter_mut().zip(xr.iter().zip(xi)) {
        *o += ai * p - ar * q;
    }
}

/// In-place complex Cholesky `B = L Lᴴ` of the lower triangle (`n × n` row-major, split parts).
fn cholesky_split(lr: &mut [f64], li: &mut [f64], n: usize) -> Result<(), MetaLearnError> {
    for j in 0..n {
        let d = lr[j * n + j]
            - dot(&lr[j * n..j * n + j], &lr[j * n..j * n + j])
            - dot(&li[j * n..j * n + j], &li[j * n..j * n + j]);
        if !(d > 0.0) || !d.is_finite() {
            return Err(MetaLearnError::Singular { pivot: j });
        }
        let d = d.sqrt();
        lr[j * n + j] = d;
        li[j * n + j] = 0.0;
        let inv = 1.0 / d;
        for i in j + 1..n {
            let (top_r, rest_r) = lr.split_at_mut(i * n);
            let (top_i, rest_i) = li.split_at_mut(i * n);
            let (sr, si) = cdot_conj(&top_r[j * n..j * n + j], &top_i[j * n..j * n + j], &rest_r[..j], &rest_i[..j]);
            rest_r[j] = (rest_r[j] - sr) * inv;
            rest_i[j] = (rest_i[j] - si) * inv;
        }
    }
    Ok(())
}

/// Solves `L Lᴴ y = b` in place for one right-hand side (`lt` = `Lᵀ`, row-major, split parts),
/// column-oriented (contiguous axpys, no short reductions).
fn chol_solve_split(lr: &[f64], li: &[f64], ltr: &[f64], lti: &[f64], n: usize, yr: &mut [f64], yi: &mut [f64]) {
    // L z = b: z_c = b_c / L_cc, then b_i −= L_ic z_c for i > c (column c of L = row c of Lᵀ).
    for c in 0..n {
        let inv = 1.0 / lr[c * n + c];
        let (zr, zi) = (yr[c] * inv, yi[c] * inv);
        yr[c] = zr;
        yi[c] = zi;
        let (cr, ci) = (&ltr[c * n + c + 1..(c + 1) * n], &lti[c * n + c + 1..(c + 1) * n]);
        for ((o, p), q) in yr[c + 1..].iter_mut().zip(cr).zip(ci) {
            *o -= p * zr - q * zi;
        }
        for ((o, p), q) in yi[c + 1..].iter_mut().zip(cr).zip(ci) {
            *o -= p * zi + q * zr;
        }
    }
    // Lᴴ x = z: x_c = z_c / L_cc, then z_i −= conj(L_ci) x_c for i < c (row c of L).
    for c in (0..n).rev() {
        let inv = 1.0 / lr[c * n + c];
        let (xr, xi) = (yr[c] * inv, yi[c] * inv);
        yr[c] = xr;
        yi[c] = xi;
        let (cr, ci) = (&lr[c * n..c * n + c], &li[c * n..c * n + c]);
        for ((o, p), q) in yr[..c].iter_mut().zip(cr).zip(ci) {
            *o -= p * xr + q * xi;
        }
        for ((o, p), q) in yi[..c].iter_mut().zip(cr).zip(ci) {
            *o -= p * xi - q * xr;
        }
    }
}

fn tensor_slices<'a>(
    guards: &'a [(candle_core::StorageRef<'a>, &'a candle_core::Layout)],
) -> Result<Vec<&'a [f64]>, MetaLearnError> {
    guards
        .iter()
        .map(|(s, l)| match &**s {
            candle_core::Storage::Cpu(cpu) => {
                let data = cpu.as_slice::<f64>()?;
                let (a, b) = l
                    .contiguous_offsets()
                    .ok_or_else(|| MetaLearnError::InvalidInput("non-contiguous parameter tensor".into()))?;
                Ok(&data[a..b])
            }
            _ => Err(MetaLearnError::InvalidInput("the fast path needs CPU tensors".into())),
        })
        .collect()
}

impl FastNet {
    /// Mirrors `net` (layout, head constants, `η`, `T`, support averaging).
    ///
    /// # Errors
    /// None at present (kept fallible for future heads).
    pub fn new(net: &CovNet) -> Result<Self, MetaLearnError> {
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
        Ok(Self {
            m,
            layers,
            shapes,
            offsets,
            n_params: o,
            head,
            output_dim,
            eta: cfg.fusion_eta,
            n_unroll: cfg.n_unroll,
            support_mean: cfg.support_mean,
            device: net.device().clone(),
        })
    }

    /// Total number of scalars (length of a flat parameter vector).
    #[must_use]
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    fn check_list(&self, n: usize) -> Result<(), MetaLearnError> {
        if n != self.shapes.len() {
            return Err(MetaLearnError::InvalidInput(format!(
                "expected {} parameter tensors, got {n}",
                self.shapes.len()
            )));
        }
        Ok(())
    }

    fn check_shapes(&self, params: &[Tensor]) -> Result<(), MetaLearnError> {
        self.check_list(params.len())?;
        for (t, s) in params.iter().zip(&self.shapes) {
            if t.dims() != s.as_slice() || t.dtype() != candle_core::DType::F64 {
                return Err(MetaLearnError::InvalidInput(format!(
                    "parameter {:?} {:?}, expected f64 {s:?}",
                    t.dtype(),
                    t.dims()
                )));
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
            return Err(MetaLearnError::InvalidInput(format!(
                "expected {} values, got {}",
                self.n_params,
                theta.len()
            )));
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
            return Err(MetaLearnError::InvalidInput(format!(
                "expected {} values, got {}",
                self.n_params,
                theta.len()
            )));
        }
        Ok((0..self.shapes.len()).map(|i| &theta[self.offsets[i]..self.offsets[i + 1]]).collect())
    }

    /// Converts a block (validates its shape against the network).
    ///
    /// # Errors
    /// `M` mismatch, `K < 2` with BatchNorm, candle failures.
    pub fn task(&self, task: &TaskTensors) -> Result<FastTask, MetaLearnError> {
        let m = self.m;
        let k = task.h_bar_cols.len();
        if task.h_bar_cols.iter().any(|h| h.len() != m) {
            return Err(MetaLearnError::InvalidInput(format!("network is for M = {m}, task has another M")));
        }
        if self.layers.iter().any(|l| l.batch_norm) && k < 2 {
            return Err(MetaLearnError::InvalidInput("BatchNorm with batch statistics needs K >= 2 users".into()));
        }
        task.sys.check(k)?;
        let mut x = vec![0.0; k * 2 * m];
        for kk in 0..k {
            let inv = 1.0 / task.scales[kk];
            for i in 0..m {
                x[kk * 2 * m + i] = task.h_bar_cols[kk][i].re * inv;
                x[kk * 2 * m + m + i] = task.h_bar_cols[kk][i].im * inv;
            }
        }
        let mut ht_re = vec![0.0; k * m];
        let mut ht_im = vec![0.0; k * m];
        let mut hh_re = vec![0.0; k * m * m];
        let mut hh_im = vec![0.0; k * m * m];
        for (kk, h) in task.h_bar_cols.iter().enumerate() {
            for i in 0..m {
                ht_re[kk * m + i] = h[i].re;
                ht_im[kk * m + i] = h[i].im;
                for j in 0..m {
                    let z = h[i] * h[j].conj();
                    hh_re[kk * m * m + i * m + j] = z.re;
                    hh_im[kk * m * m + i * m + j] = z.im;
                }
            }
        }
        let r_s: Vec<c64> =
            task.sample_cov.to_arrays()?.iter().flat_map(|a| a.iter().copied().collect::<Vec<_>>()).collect();
        if r_s.len() != k * m * m {
            return Err(MetaLearnError::InvalidInput("sample covariances have the wrong shape".into()));
        }
        let cols = |t: &beamlab_candle_bridge::ComplexTensor| -> Result<(Vec<f64>, Vec<f64>), MetaLearnError> {
            let a = t.to_array()?;
            if a.dim() != (m, k) {
                return Err(MetaLearnError::InvalidInput(format!("channel matrix {:?}, expected ({m}, {k})", a.dim())));
            }
            let re = (0..k * m).map(|q| a[[q % m, q / m]].re).collect();
            let im = (0..k * m).map(|q| a[[q % m, q / m]].im).collect();
            Ok((re, im))
        };
        let samples = task.samples.iter().map(cols).collect::<Result<Vec<_>, _>>()?;
        let h_true = task.h_true.as_ref().map(cols).transpose()?;
        Ok(FastTask {
            k,
            x,
            scales2: task.scales.iter().map(|s| s * s).collect(),
            ht_re,
            ht_im,
            hh_re,
            hh_im,
            r_s,
            samples,
            h_true,
            sys: task.sys.clone(),
        })
    }

    fn prepare(&self, ws: &mut FastWorkspace, k: usize) {
        let (m, t) = (self.m, self.n_unroll);
        let n_hidden = self.layers.len() - 1;
        ws.act.resize(n_hidden + 1, Vec::new());
        ws.z.resize(n_hidden, Vec::new());
        ws.zhat.resize(n_hidden, Vec::new());
        ws.pre.resize(n_hidden, Vec::new());
        ws.inv_std.resize(n_hidden, Vec::new());
        resize(&mut ws.act[0], k * 2 * m);
        let mut widest = 2 * m;
        for (l, layer) in self.layers.iter().enumerate().take(n_hidden) {
            resize(&mut ws.act[l + 1], k * layer.n_out);
            resize(&mut ws.z[l], k * layer.n_out);
            resize(&mut ws.zhat[l], k * layer.n_out);
            resize(&mut ws.pre[l], k * layer.n_out);
            resize(&mut ws.inv_std[l], layer.n_out);
            widest = widest.max(layer.n_out);
        }
        widest = widest.max(self.output_dim);
        resize(&mut ws.out, k * self.output_dim);
        resize(&mut ws.d_out, k * self.output_dim);
        resize(&mut ws.d_a, k * widest);
        resize(&mut ws.d_z, k * widest);
        let fac = match self.head {
            Head::FullRank => m * m,
            Head::Salr { rank, .. } => m * rank,
        };
        resize(&mut ws.fac, fac);
        resize(&mut ws.fac_hat, fac);
        resize(&mut ws.r, k * m * m);
        resize(&mut ws.r_hat, k * m * m);
        resize(&mut ws.g_s, m * m);
        let (km, mm) = (k * m, m * m);
        let sv = &mut ws.sv;
        for (b, n) in [
            (&mut sv.r_re, k * mm),
            (&mut sv.r_im, k * mm),
            (&mut sv.c_re, k * mm),
            (&mut sv.c_im, k * mm),
            (&mut sv.v_re, (t + 1) * km),
            (&mut sv.v_im, (t + 1) * km),
            (&mut sv.rv_re, t * k * km),
            (&mut sv.rv_im, t * k * km),
            (&mut sv.a, t * k),
            (&mut sv.w, t * k),
            (&mut sv.lam, t * k),
            (&mut sv.l_re, t * mm),
            (&mut sv.l_im, t * mm),
            (&mut sv.lt_re, t * mm),
            (&mut sv.lt_im, t * mm),
            (&mut sv.x_re, t * km),
            (&mut sv.x_im, t * km),
            (&mut sv.vh_re, km),
            (&mut sv.vh_im, km),
            (&mut sv.vn_re, km),
            (&mut sv.vn_im, km),
            (&mut sv.yh_re, km),
            (&mut sv.yh_im, km),
            (&mut sv.bh_re, mm),
            (&mut sv.bh_im, mm),
            (&mut sv.vv_re, mm),
            (&mut sv.vv_im, mm),
            (&mut sv.rh_re, k * mm),
            (&mut sv.rh_im, k * mm),
        ] {
            resize(b, n);
        }
        resize(&mut sv.g, t * k * k);
        resize(&mut sv.u, t * k);
        resize(&mut sv.gl, k);
    }

    /// Network, head and fusion forward: fills `ws.out` and `ws.r`.
    fn network_forward(&self, ws: &mut FastWorkspace, p: &[&[f64]], task: &FastTask) {
        let (m, k) = (self.m, task.k);
        let n_hidden = self.layers.len() - 1;
        ws.act[0].copy_from_slice(&task.x);
        for (l, layer) in self.layers.iter().enumerate() {
            let (w, b) = (p[layer.index], p[layer.index + 1]);
            if l == n_hidden {
                linear_forward(&ws.act[l], k, layer.n_in, layer.n_out, w, b, &mut ws.out);
                break;
            }
            let o = layer.n_out;
            linear_forward(&ws.act[l], k, layer.n_in, o, w, b, &mut ws.z[l]);
            let (z, zhat, pre, inv_std) = (&ws.z[l], &mut ws.zhat[l], &mut ws.pre[l], &mut ws.inv_std[l]);
            if layer.batch_norm {
                let (gamma, beta) = (p[layer.index + 2], p[layer.index + 3]);
                let inv_k = 1.0 / k as f64;
                for j in 0..o {
                    let mean = (0..k).map(|kk| z[kk * o + j]).sum::<f64>() * inv_k;
                    let var = (0..k).map(|kk| (z[kk * o + j] - mean).powi(2)).sum::<f64>() * inv_k;
                    let is = 1.0 / (var + BN_EPS).sqrt();
                    inv_std[j] = is;
                    for kk in 0..k {
                        let zh = (z[kk * o + j] - mean) * is;
                        zhat[kk * o + j] = zh;
                        pre[kk * o + j] = zh * gamma[j] + beta[j];
                    }
                }
            } else {
                pre.copy_from_slice(z);
            }
            for (a, &x) in ws.act[l + 1].iter_mut().zip(pre.iter()) {
                *a = x.max(0.0);
            }
        }
        // Head, output scaling and fusion.
        let mm = m * m;
        let (eta, one_m_eta) = (self.eta, 1.0 - self.eta);
        for kk in 0..k {
            let out = &ws.out[kk * self.output_dim..(kk + 1) * self.output_dim];
            let r = &mut ws.r[kk * mm..(kk + 1) * mm];
            self.head_forward(out, &mut ws.fac, r);
            let s2 = task.scales2[kk];
            let rs = &task.r_s[kk * mm..(kk + 1) * mm];
            for (x, y) in r.iter_mut().zip(rs) {
                *x = *y * eta + (*x * s2) * one_m_eta;
            }
        }
    }

    /// `R_net` of one user from its raw outputs (exactly Hermitian); the factor goes to `fac`.
    fn head_forward(&self, out: &[f64], fac: &mut [c64], r: &mut [c64]) {
        let m = self.m;
        match &self.head {
            Head::FullRank => {
                cholesky_factor(m, out, fac);
                for i in 0..m {
                    for j in 0..=i {
                        let mut s = c64::new(0.0, 0.0);
                        for c in 0..=j {
                            s += fac[i * m + c] * fac[j * m + c].conj();
                        }
                        r[i * m + j] = s;
                        r[j * m + i] = s.conj();
                    }
                    r[i * m + i].im = 0.0;
                }
            }
            Head::Salr { rank, sparse, pairs } => {
                let rank = *rank;
                for i in 0..m {
                    for c in 0..rank {
                        fac[i * rank + c] = c64::new(out[i * rank + c], out[rank * m + i * rank + c]);
                    }
                }
                for i in 0..m {
                    for j in 0..=i {
                        let mut s = c64::new(0.0, 0.0);
                        for c in 0..rank {
                            s += fac[i * rank + c] * fac[j * rank + c].conj();
                        }
                        r[i * m + j] = s;
                        r[j * m + i] = s.conj();
                    }
                    r[i * m + i].im = 0.0;
                }
                if *sparse {
                    let base = 2 * rank * m;
                    let np = pairs.len();
                    for i in 0..m {
                        r[i * m + i].re += softplus(out[base + i]);
                    }
                    for (q, &(i, j)) in pairs.iter().enumerate() {
                        let (x, y) = (out[base + m + q], out[base + m + np + q]);
                        let mag = (x * x + y * y + 1e-12).sqrt();
                        r[i * m + i].re += mag;
                        r[j * m + j].re += mag;
                        r[i * m + j] += c64::new(x, y);
                        r[j * m + i] += c64::new(x, -y);
                    }
                }
            }
        }
    }

    /// Head backward for one user: `g` = gradient w.r.t. `R_net` (already scaled); writes `d_out`.
    fn head_backward(
        &self,
        out: &[f64],
        g: &[c64],
        g_s: &mut [c64],
        fac: &mut [c64],
        fac_hat: &mut [c64],
        d_out: &mut [f64],
    ) {
        let m = self.m;
        for i in 0..m {
            for j in 0..m {
                g_s[i * m + j] = g[i * m + j] + g[j * m + i].conj();
            }
        }
        match &self.head {
            Head::FullRank => {
                let n_low = m * (m - 1) / 2;
                cholesky_factor(m, out, fac);
                // Â[i][c] = Σ_{j ≥ c} Ĝ_s[i][j] L[j][c] for c ≤ i.
                for i in 0..m {
                    for c in 0..=i {
                        let mut s = c64::new(0.0, 0.0);
                        for j in c..m {
                            s += g_s[i * m + j] * fac[j * m + c];
                        }
                        fac_hat[i * m + c] = s;
                    }
                }
                for i in 0..m {
                    d_out[i] = fac_hat[i * m + i].re * sigmoid(out[i]);
                    for j in 0..i {
                        let q = i * (i - 1) / 2 + j;
                        d_out[m + q] = fac_hat[i * m + j].re;
                        d_out[m + n_low + q] = fac_hat[i * m + j].im;
                    }
                }
            }
            Head::Salr { rank, sparse, pairs } => {
                let rank = *rank;
                for i in 0..m {
                    for c in 0..rank {
                        fac[i * rank + c] = c64::new(out[i * rank + c], out[rank * m + i * rank + c]);
                    }
                }
                fac_hat.fill(c64::new(0.0, 0.0));
                for i in 0..m {
                    for j in 0..m {
                        let gij = g_s[i * m + j];
                        for c in 0..rank {
                            fac_hat[i * rank + c] += gij * fac[j * rank + c];
                        }
                    }
                }
                for i in 0..m {
                    for c in 0..rank {
                        d_out[i * rank + c] = fac_hat[i * rank + c].re;
                        d_out[rank * m + i * rank + c] = fac_hat[i * rank + c].im;
                    }
                }
                if *sparse {
                    let base = 2 * rank * m;
                    let np = pairs.len();
                    for i in 0..m {
                        d_out[base + i] = g[i * m + i].re * sigmoid(out[base + i]);
                    }
                    for (q, &(i, j)) in pairs.iter().enumerate() {
                        let (x, y) = (out[base + m + q], out[base + m + np + q]);
                        let mag = (x * x + y * y + 1e-12).sqrt();
                        let dd = g[i * m + i].re + g[j * m + j].re;
                        let gs = g_s[i * m + j];
                        d_out[base + m + q] = gs.re + dd * x / mag;
                        d_out[base + m + np + q] = gs.im + dd * y / mag;
                    }
                }
            }
        }
    }

    /// `T` robust WMMSE iterations from MRT on `(h̄, ws.r)`, keeping the trace (split layout).
    fn solver_forward(&self, ws: &mut FastWorkspace, task: &FastTask) -> Result<(), MetaLearnError> {
        let (m, k, t_max) = (self.m, task.k, self.n_unroll);
        let (km, mm, kk_n) = (k * m, m * m, k * k);
        let sys = &task.sys;
        let sv = &mut ws.sv;
        // Split covariances and C_k = h_k h_kᴴ + R_k.
        for (i, z) in ws.r.iter().enumerate() {
            sv.r_re[i] = z.re;
            sv.r_im[i] = z.im;
            sv.c_re[i] = z.re + task.hh_re[i];
            sv.c_im[i] = z.im + task.hh_im[i];
        }
        // MRT.
        let n: f64 = task.ht_re.iter().chain(&task.ht_im).map(|x| x * x).sum::<f64>().sqrt();
        let s0 = if n > 0.0 { sys.power.sqrt() / n } else { 1.0 };
        for i in 0..km {
            sv.v_re[i] = task.ht_re[i] * s0;
            sv.v_im[i] = task.ht_im[i] * s0;
        }
        for t in 0..t_max {
            let (vr_all, vr_next) = sv.v_re.split_at_mut((t + 1) * km);
            let (vi_all, vi_next) = sv.v_im.split_at_mut((t + 1) * km);
            let (vr, vi) = (&vr_all[t * km..], &vi_all[t * km..]);
            let g = &mut sv.g[t * kk_n..(t + 1) * kk_n];
            for kk in 0..k {
                let (hr, hi) = (&task.ht_re[kk * m..(kk + 1) * m], &task.ht_im[kk * m..(kk + 1) * m]);
                for i in 0..k {
                    let (re, im) = cdot_conj(hr, hi, &vr[i * m..(i + 1) * m], &vi[i * m..(i + 1) * m]);
                    g[kk * k + i] = c64::new(re, im);
                }
            }
            let rv_re = &mut sv.rv_re[t * k * km..(t + 1) * k * km];
            let rv_im = &mut sv.rv_im[t * k * km..(t + 1) * k * km];
            let (a, u, w, lam) = (
                &mut sv.a[t * k..(t + 1) * k],
                &mut sv.u[t * k..(t + 1) * k],
                &mut sv.w[t * k..(t + 1) * k],
                &mut sv.lam[t * k..(t + 1) * k],
            );
            for kk in 0..k {
                let (rr, ri) = (&sv.r_re[kk * mm..(kk + 1) * mm], &sv.r_im[kk * mm..(kk + 1) * mm]);
                // R_k V by columns: (R v)[·] = Σ_j v[j] conj(R[j, ·]) (R Hermitian), contiguous axpys.
                let (rvr_k, rvi_k) = (&mut rv_re[kk * km..(kk + 1) * km], &mut rv_im[kk * km..(kk + 1) * km]);
                rvr_k.fill(0.0);
                rvi_k.fill(0.0);
                for j in 0..m {
                    let (pr, pi) = (&rr[j * m..(j + 1) * m], &ri[j * m..(j + 1) * m]);
                    for i in 0..k {
                        let (a, b) = (vr[i * m + j], vi[i * m + j]);
                        for ((o, p), q) in rvr_k[i * m..(i + 1) * m].iter_mut().zip(pr).zip(pi) {
                            *o += a * p + b * q;
                        }
                        for ((o, p), q) in rvi_k[i * m..(i + 1) * m].iter_mut().zip(pr).zip(pi) {
                            *o += b * p - a * q;
                        }
                    }
                }
                let mut quad = 0.0;
                for i in 0..k {
                    let o = i * m;
                    quad += dot(&vr[o..o + m], &rvr_k[o..o + m]) + dot(&vi[o..o + m], &rvi_k[o..o + m]);
                }
                a[kk] = sys.noise[kk] + quad + g[kk * k..(kk + 1) * k].iter().map(|z| z.norm_sqr()).sum::<f64>();
                let d = g[kk * k + kk];
                u[kk] = d / a[kk];
                w[kk] = a[kk] / (a[kk] - d.norm_sqr());
                lam[kk] = sys.weights[kk] * w[kk] * u[kk].norm_sqr();
            }
            let mu: f64 = (0..k).map(|kk| lam[kk] * sys.noise[kk]).sum::<f64>() / sys.power;
            // B = Σ λ_k C_k + μ I (lower triangle), Cholesky in place.
            let lr = &mut sv.l_re[t * mm..(t + 1) * mm];
            let li = &mut sv.l_im[t * mm..(t + 1) * mm];
            for i in 0..m {
                let (br, bi) = (&mut lr[i * m..i * m + i + 1], &mut li[i * m..i * m + i + 1]);
                br.fill(0.0);
                bi.fill(0.0);
                for kk in 0..k {
                    let o = kk * mm + i * m;
                    axpy(br, lam[kk], &sv.c_re[o..o + i + 1]);
                    axpy(bi, lam[kk], &sv.c_im[o..o + i + 1]);
                }
                br[i] += mu;
            }
            cholesky_split(lr, li, m)?;
            let ltr = &mut sv.lt_re[t * mm..(t + 1) * mm];
            let lti = &mut sv.lt_im[t * mm..(t + 1) * mm];
            for i in 0..m {
                for c in 0..=i {
                    ltr[c * m + i] = lr[i * m + c];
                    lti[c * m + i] = li[i * m + c];
                }
            }
            let xr = &mut sv.x_re[t * km..(t + 1) * km];
            let xi = &mut sv.x_im[t * km..(t + 1) * km];
            for kk in 0..k {
                let c = u[kk] * (sys.weights[kk] * w[kk]);
                for row in 0..m {
                    let h = c64::new(task.ht_re[kk * m + row], task.ht_im[kk * m + row]) * c;
                    xr[kk * m + row] = h.re;
                    xi[kk * m + row] = h.im;
                }
                chol_solve_split(lr, li, ltr, lti, m, &mut xr[kk * m..(kk + 1) * m], &mut xi[kk * m..(kk + 1) * m]);
            }
            let nx = (dot(xr, xr) + dot(xi, xi)).sqrt();
            let s = sys.power.sqrt() / nx;
            for i in 0..km {
                vr_next[i] = xr[i] * s;
                vi_next[i] = xi[i] * s;
            }
        }
        Ok(())
    }

    /// Reverse of the solver: from `ws.sv.vh_*` (gradient of the final precoder) to `ws.r_hat`.
    fn solver_backward(&self, ws: &mut FastWorkspace, task: &FastTask) {
        let (m, k, t_max) = (self.m, task.k, self.n_unroll);
        let (km, mm, kk_n) = (k * m, m * m, k * k);
        let sys = &task.sys;
        let sv = &mut ws.sv;
        sv.rh_re.fill(0.0);
        sv.rh_im.fill(0.0);
        for t in (0..t_max).rev() {
            let (xr, xi) = (&sv.x_re[t * km..(t + 1) * km], &sv.x_im[t * km..(t + 1) * km]);
            let (vr, vi) = (&sv.v_re[t * km..(t + 1) * km], &sv.v_im[t * km..(t + 1) * km]);
            let g = &sv.g[t * kk_n..(t + 1) * kk_n];
            let n2 = dot(xr, xr) + dot(xi, xi);
            let s = sys.power.sqrt() / n2.sqrt();
            let proj = dot(&sv.vh_re, xr) + dot(&sv.vh_im, xi);
            let c = proj * s / n2;
            for i in 0..km {
                sv.yh_re[i] = sv.vh_re[i] * s - xr[i] * c;
                sv.yh_im[i] = sv.vh_im[i] * s - xi[i] * c;
            }
            // Ŷ = B⁻¹ X̂ (B Hermitian), B̂ = −Ŷ Xᴴ.
            let (lr, li) = (&sv.l_re[t * mm..(t + 1) * mm], &sv.l_im[t * mm..(t + 1) * mm]);
            let (ltr, lti) = (&sv.lt_re[t * mm..(t + 1) * mm], &sv.lt_im[t * mm..(t + 1) * mm]);
            for kk in 0..k {
                let (yr, yi) = (&mut sv.yh_re[kk * m..(kk + 1) * m], &mut sv.yh_im[kk * m..(kk + 1) * m]);
                chol_solve_split(lr, li, ltr, lti, m, yr, yi);
            }
            let (yr, yi) = (&sv.yh_re, &sv.yh_im);
            // B̂[i][j] = −Σ_c ŷ_c[i] conj(x_c[j]);  V Vᴴ[i][j] = Σ_c v_c[i] conj(v_c[j]).
            sv.bh_re.fill(0.0);
            sv.bh_im.fill(0.0);
            sv.vv_re.fill(0.0);
            sv.vv_im.fill(0.0);
            for c in 0..k {
                let (xcr, xci) = (&xr[c * m..(c + 1) * m], &xi[c * m..(c + 1) * m]);
                let (vcr, vci) = (&vr[c * m..(c + 1) * m], &vi[c * m..(c + 1) * m]);
                for i in 0..m {
                    let (ar, ai) = (-yr[c * m + i], -yi[c * m + i]);
                    let (br, bi) = (&mut sv.bh_re[i * m..(i + 1) * m], &mut sv.bh_im[i * m..(i + 1) * m]);
                    outer_conj_acc(br, bi, ar, ai, xcr, xci);
                    let (pr, pi) = (vr[c * m + i], vi[c * m + i]);
                    let (br, bi) = (&mut sv.vv_re[i * m..(i + 1) * m], &mut sv.vv_im[i * m..(i + 1) * m]);
                    outer_conj_acc(br, bi, pr, pi, vcr, vci);
                }
            }
            let mu_hat: f64 = (0..m).map(|i| sv.bh_re[i * m + i]).sum();
            sv.vn_re.fill(0.0);
            sv.vn_im.fill(0.0);
            for kk in 0..k {
                let (hr, hi) = (&task.ht_re[kk * m..(kk + 1) * m], &task.ht_im[kk * m..(kk + 1) * m]);
                // h_kᴴ B̂ h_k = −Σ_j (h_kᴴ ŷ_j)(x_jᴴ h_k);  ĉ_k = h_kᴴ ŷ_k.
                let mut hbh = 0.0;
                let mut c_hat = c64::new(0.0, 0.0);
                for j in 0..k {
                    let (pr, pim) = cdot_conj(hr, hi, &yr[j * m..(j + 1) * m], &yi[j * m..(j + 1) * m]);
                    let (qr, qi) = cdot_conj(&xr[j * m..(j + 1) * m], &xi[j * m..(j + 1) * m], hr, hi);
                    hbh -= pr * qr - pim * qi;
                    if j == kk {
                        c_hat = c64::new(pr, pim);
                    }
                }
                let (rr, ri) = (&sv.r_re[kk * mm..(kk + 1) * mm], &sv.r_im[kk * mm..(kk + 1) * mm]);
                let br = dot(&sv.bh_re, rr) + dot(&sv.bh_im, ri);
                let (om, w, u, a, lam) =
                    (sys.weights[kk], sv.w[t * k + kk], sv.u[t * k + kk], sv.a[t * k + kk], sv.lam[t * k + kk]);
                let lam_hat = hbh + mu_hat * sys.noise[kk] / sys.power + br;
                let w_hat = om * (c_hat.conj() * u).re + lam_hat * om * u.norm_sqr();
                let u_hat = c_hat * (om * w) + u * (2.0 * lam_hat * om * w);
                let d = g[kk * k + kk];
                let e = a - d.norm_sqr();
                let d_hat = u_hat / a + d * (2.0 * w_hat * a / (e * e));
                let a_hat = -(u_hat.conj() * d).re / (a * a) - w_hat * d.norm_sqr() / (e * e);
                // v̂_i += ĝ_ki h_k + 2 â_k R_k v_i;  R̂_k += λ_k B̂ + â_k V Vᴴ.
                let two_a = 2.0 * a_hat;
                for i in 0..k {
                    let mut gh = g[kk * k + i] * (2.0 * a_hat);
                    if i == kk {
                        gh += d_hat;
                    }
                    let o = kk * km + i * m;
                    let (rvr, rvi) = (&sv.rv_re[t * k * km + o..t * k * km + o + m], &sv.rv_im[t * k * km + o..][..m]);
                    let (nr, ni) = (&mut sv.vn_re[i * m..(i + 1) * m], &mut sv.vn_im[i * m..(i + 1) * m]);
                    for row in 0..m {
                        nr[row] += gh.re * hr[row] - gh.im * hi[row] + two_a * rvr[row];
                        ni[row] += gh.re * hi[row] + gh.im * hr[row] + two_a * rvi[row];
                    }
                }
                let (hr_k, hi_k) = (&mut sv.rh_re[kk * mm..(kk + 1) * mm], &mut sv.rh_im[kk * mm..(kk + 1) * mm]);
                for (o, (b, v)) in hr_k.iter_mut().zip(sv.bh_re.iter().zip(&sv.vv_re)) {
                    *o += lam * b + a_hat * v;
                }
                for (o, (b, v)) in hi_k.iter_mut().zip(sv.bh_im.iter().zip(&sv.vv_im)) {
                    *o += lam * b + a_hat * v;
                }
            }
            std::mem::swap(&mut sv.vh_re, &mut sv.vn_re);
            std::mem::swap(&mut sv.vh_im, &mut sv.vn_im);
        }
        for (o, (re, im)) in ws.r_hat.iter_mut().zip(sv.rh_re.iter().zip(&sv.rh_im)) {
            *o = c64::new(*re, *im);
        }
    }

    /// Negative WSR of the final precoder on the channel columns `(hr, hi)` (`[K × M]`, split),
    /// accumulating `scale · ∂/∂V` into `ws.sv.vh_*` if `grad`.
    fn wsr_loss(
        &self,
        ws: &mut FastWorkspace,
        task: &FastTask,
        hc: &(Vec<f64>, Vec<f64>),
        scale: f64,
        grad: bool,
    ) -> f64 {
        let (m, k) = (self.m, task.k);
        let km = k * m;
        let sv = &mut ws.sv;
        let off = self.n_unroll * km;
        let sys = &task.sys;
        let ln2 = std::f64::consts::LN_2;
        let mut loss = 0.0;
        for kk in 0..k {
            let (hr, hi) = (&hc.0[kk * m..(kk + 1) * m], &hc.1[kk * m..(kk + 1) * m]);
            let mut total = 0.0;
            for i in 0..k {
                let (re, im) = cdot_conj(
                    hr,
                    hi,
                    &sv.v_re[off + i * m..off + (i + 1) * m],
                    &sv.v_im[off + i * m..off + (i + 1) * m],
                );
                sv.gl[i] = c64::new(re, im);
                total += re * re + im * im;
            }
            let signal = sv.gl[kk].norm_sqr();
            let interference = (total - signal) + sys.noise[kk];
            let om = sys.weights[kk];
            loss -= om * (signal / interference + 1.0).ln() / ln2;
            if grad {
                let tk = signal + interference;
                for i in 0..k {
                    let dl = if i == kk { -om / (tk * ln2) } else { om * signal / (interference * tk * ln2) };
                    let gh = sv.gl[i] * (2.0 * dl * scale);
                    let (nr, ni) = (&mut sv.vh_re[i * m..(i + 1) * m], &mut sv.vh_im[i * m..(i + 1) * m]);
                    for row in 0..m {
                        nr[row] += gh.re * hr[row] - gh.im * hi[row];
                        ni[row] += gh.re * hi[row] + gh.im * hr[row];
                    }
                }
            }
        }
        loss * scale
    }

    fn loss_terms(
        &self,
        ws: &mut FastWorkspace,
        task: &FastTask,
        kind: LossKind,
        grad: bool,
    ) -> Result<f64, MetaLearnError> {
        if grad {
            ws.sv.vh_re.fill(0.0);
            ws.sv.vh_im.fill(0.0);
        }
        match kind {
            LossKind::Support => {
                let n = task.samples.len();
                if n == 0 {
                    return Err(MetaLearnError::InvalidInput("task without samples".into()));
                }
                let scale = if self.support_mean { 1.0 / n as f64 } else { 1.0 };
                let mut total = 0.0;
                for s in &task.samples {
                    total += self.wsr_loss(ws, task, s, scale, grad);
                }
                Ok(total)
            }
            LossKind::Query => {
                let h = task
                    .h_true
                    .as_ref()
                    .ok_or_else(|| MetaLearnError::InvalidInput("query loss needs the true channels".into()))?;
                Ok(self.wsr_loss(ws, task, h, 1.0, grad))
            }
        }
    }

    fn forward_slices(&self, ws: &mut FastWorkspace, p: &[&[f64]], task: &FastTask) -> Result<(), MetaLearnError> {
        self.prepare(ws, task.k);
        self.network_forward(ws, p, task);
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

    /// One SGD step `θ ← θ − lr ∇L(θ)` in place (the update fused into the reverse pass);
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
        let (m, k) = (self.m, task.k);
        let mm = m * m;
        let d_o = self.output_dim;
        let one_m_eta = 1.0 - self.eta;
        for kk in 0..k {
            let sc = one_m_eta * task.scales2[kk];
            for z in &mut ws.r_hat[kk * mm..(kk + 1) * mm] {
                *z *= sc;
            }
            let FastWorkspace { out, r_hat, g_s, fac, fac_hat, d_out, .. } = ws;
            self.head_backward(
                &out[kk * d_o..(kk + 1) * d_o],
                &r_hat[kk * mm..(kk + 1) * mm],
                g_s,
                fac,
                fac_hat,
                &mut d_out[kk * d_o..(kk + 1) * d_o],
            );
        }
        Ok(value)
    }

    fn network_backward(&self, ws: &mut FastWorkspace, k: usize, sink: &mut Sink<'_>) {
        let n_hidden = self.layers.len() - 1;
        let FastWorkspace { act, zhat, pre, inv_std, d_out, d_a, d_z, .. } = ws;
        // d_z holds ∂L/∂(layer output before BN) of the current layer.
        d_z[..d_out.len()].copy_from_slice(d_out);
        for l in (0..=n_hidden).rev() {
            let layer = self.layers[l];
            let (n_in, n_out) = (layer.n_in, layer.n_out);
            let ow = self.offsets[layer.index];
            let ob = self.offsets[layer.index + 1];
            let dz = &d_z[..k * n_out];
            let a_in = &act[l];
            let mut da = if l > 0 { Some((&mut d_a[..k * n_in], &pre[l - 1][..])) } else { None };
            for i in 0..n_in {
                let range = ow + i * n_out..ow + (i + 1) * n_out;
                let row_range = range.clone();
                sink.emit(range, |theta, g| {
                    row_backward(a_in, k, n_in, n_out, i, &theta[row_range], dz, g, &mut da);
                });
            }
            sink.emit(ob..ob + n_out, |_, g| bias_backward(k, n_out, dz, g));
            if l == 0 {
                break;
            }
            // Into hidden layer l − 1: (ReLU already applied to d_a), then BatchNorm.
            let h = l - 1;
            let o = n_in;
            let hl = self.layers[h];
            if hl.batch_norm {
                let og = self.offsets[hl.index + 2];
                let obeta = self.offsets[hl.index + 3];
                let zh = &zhat[h];
                let is = &inv_std[h];
                let inv_k = 1.0 / k as f64;
                // d_z from the current γ first, then the γ, β gradients.
                {
                    let gamma = &sink.theta()[og..og + o];
                    for j in 0..o {
                        let (mut s1, mut s2) = (0.0, 0.0);
                        for kk in 0..k {
                            let dzh = d_a[kk * o + j] * gamma[j];
                            s1 += dzh;
                            s2 += dzh * zh[kk * o + j];
                        }
                        let (m1, m2) = (s1 * inv_k, s2 * inv_k);
                        for kk in 0..k {
                            let dzh = d_a[kk * o + j] * gamma[j];
                            d_z[kk * o + j] = is[j] * (dzh - m1 - zh[kk * o + j] * m2);
                        }
                    }
                }
                let d_a_ro = &d_a[..k * o];
                sink.emit(og..og + o, |_, g| {
                    for (j, gj) in g.iter_mut().enumerate() {
                        *gj = (0..k).map(|kk| d_a_ro[kk * o + j] * zh[kk * o + j]).sum();
                    }
                });
                sink.emit(obeta..obeta + o, |_, g| {
                    for (j, gj) in g.iter_mut().enumerate() {
                        *gj = (0..k).map(|kk| d_a_ro[kk * o + j]).sum();
                    }
                });
            } else {
                d_z[..k * o].copy_from_slice(&d_a[..k * o]);
            }
        }
    }

    /// The precoder `V: [M × K]` at candle parameter tensors (read in place).
    ///
    /// # Errors
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
pub fn sgd_support_steps(
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

/// Convenience: loss and gradient through the fast path at candle parameters (allocates a
/// workspace; for repeated calls keep a [`FastNet`], [`FastTask`] and [`FastWorkspace`]).
///
/// # Errors
/// As [`FastNet::loss_and_grad`].
pub fn fast_loss_and_grad(
    net: &CovNet,
    params: &[Tensor],
    task: &TaskTensors,
    kind: LossKind,
) -> Result<(f64, Params), MetaLearnError> {
    let fast = FastNet::new(net)?;
    let ft = fast.task(task)?;
    let theta = fast.flatten(params)?;
    let mut g = Vec::new();
    let l = fast.loss_and_grad(&mut FastWorkspace::default(), &theta, &ft, kind, &mut g)?;
    Ok((l, fast.unflatten(&g)?))
}

/// The full-rank head's lower-triangular factor `L` (row-major `m × m`) from the raw outputs:
/// softplus diagonal, then the real and the imaginary parts of the strictly lower triangle.
fn cholesky_factor(m: usize, out: &[f64], fac: &mut [c64]) {
    let n_low = m * (m - 1) / 2;
    fac.fill(c64::new(0.0, 0.0));
    for i in 0..m {
        fac[i * m + i] = c64::new(softplus(out[i]), 0.0);
        for j in 0..i {
            let q = i * (i - 1) / 2 + j;
            fac[i * m + j] = c64::new(out[m + q], out[m + n_low + q]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::covnet::{CovNetConfig, combine};
    use crate::maml::{BasisSelection, MbMaml, MbMamlConfig};
    use beamlab_channel::unknown_error::{haar_unitary, sample_error_block};
    use beamlab_channel::{UnknownErrorParams, rayleigh};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A block with unequal noise and weights and `P = 2`.
    fn task(m: usize, k: usize, seed: u64) -> TaskTensors {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = rayleigh(k, 1, m, &mut rng).unwrap();
        let q = haar_unitary(m, &mut rng).unwrap();
        let b = sample_error_block(&h, &q, &UnknownErrorParams { error_level_db: 3.0, ..Default::default() }, &mut rng)
            .unwrap();
        let samples: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
        let h_true: Vec<_> = b.iter().map(|u| u.h_true.clone()).collect();
        let sys = SystemParams {
            noise: (0..k).map(|i| 0.05 + 0.05 * i as f64).collect(),
            weights: (0..k).map(|i| 1.0 + 0.5 * (i % 3) as f64).collect(),
            power: 2.0,
        };
        TaskTensors::new(&samples, Some(&h_true), &sys, &Device::Cpu).unwrap()
    }

    /// Parameters away from the initialisation (BatchNorm γ ≠ 1, β ≠ 0, a larger output layer).
    fn params(net: &CovNet, seed: u64, scale: f64) -> Params {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let p = net.init_params(&mut rng).unwrap();
        let d = net.init_params(&mut rng).unwrap();
        combine(&[&p, &d], &[scale, 0.5]).unwrap()
    }

    fn flat(p: &[Tensor]) -> Vec<Vec<f64>> {
        p.iter().map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap()).collect()
    }

    /// Worst over tensors of max|a − b| / max(max|b|, 1e-6 · global max|b|).
    fn rel_err(a: &[Tensor], b: &[Tensor]) -> f64 {
        let (fa, fb) = (flat(a), flat(b));
        let global = fb.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
        fa.iter()
            .zip(&fb)
            .map(|(x, y)| {
                let diff = x.iter().zip(y).fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
                let norm = y.iter().fold(0.0f64, |m, q| m.max(q.abs())).max(1e-6 * global);
                diff / norm
            })
            .fold(0.0, f64::max)
    }

    fn configs() -> Vec<CovNetConfig> {
        let small = |head, support_mean| CovNetConfig {
            n_tx: 8,
            hidden: vec![16, 12],
            head,
            n_unroll: 4,
            support_mean,
            ..Default::default()
        };
        vec![
            small(CovHead::FullRank, false),
            small(CovHead::Salr { rank: 2, density: 0.0 }, false),
            small(CovHead::Salr { rank: 2, density: 0.3 }, true),
            CovNetConfig { n_tx: 8, hidden: vec![10], batch_norm: false, n_unroll: 3, ..Default::default() },
            // K = 5 users (one block of four and a remainder in the MLP backward).
            CovNetConfig {
                n_tx: 6,
                hidden: vec![12, 9],
                head: CovHead::Salr { rank: 3, density: 0.5 },
                ..Default::default()
            },
            // The Table I setting: M = 32, 128/256/256, SALR r = 8, δ = 0.09, T = 10.
            CovNetConfig::default(),
        ]
    }

    /// The fast loss and gradient equal candle's autograd (fused solver) for every head, both
    /// losses, with and without BatchNorm, `P ≠ 1`, unequal weights and noise.
    #[test]
    fn fast_gradient_equals_candle_autograd() {
        for cfg in configs() {
            let (m, k) = (
                cfg.n_tx,
                match cfg.n_tx {
                    32 => 4,
                    6 => 5,
                    _ => 3,
                },
            );
            let net = CovNet::new(cfg.clone(), &Device::Cpu).unwrap();
            let p = params(&net, 11, 3.0);
            let t = task(m, k, 5);
            for kind in [LossKind::Support, LossKind::Query] {
                let (lc, gc) = net.loss_and_grad(&p, &t, kind).unwrap();
                let (lf, gf) = fast_loss_and_grad(&net, &p, &t, kind).unwrap();
                assert!((lc - lf).abs() <= 1e-11 * lc.abs().max(1.0), "{:?} {kind:?}: {lc} vs {lf}", cfg.head);
                let err = rel_err(&gf, &gc);
                assert!(err <= 1e-9, "{:?} bn {} {kind:?}: gradient error {err:e}", cfg.head, cfg.batch_norm);
                // The forward-only loss (read from the tensors in place) and the precoder agree too.
                let fast = FastNet::new(&net).unwrap();
                let ft = fast.task(&t).unwrap();
                let mut ws = FastWorkspace::default();
                let l2 = fast.loss_tensors(&mut ws, &p, &ft, kind).unwrap();
                assert!((l2 - lc).abs() <= 1e-11 * lc.abs().max(1.0));
                let theta = fast.flatten(&p).unwrap();
                let v = fast.precoder(&mut ws, &theta, &ft).unwrap();
                let vc = net.precoder(&p, &t).unwrap().to_array().unwrap();
                assert!(v.iter().zip(vc.iter()).all(|(a, b)| (a - b).norm() < 1e-10));
            }
        }
    }

    /// Central finite differences of the fast loss along random directions of the flat vector.
    #[test]
    fn fast_gradient_matches_finite_differences() {
        for cfg in configs().into_iter().take(5) {
            let net = CovNet::new(cfg.clone(), &Device::Cpu).unwrap();
            let fast = FastNet::new(&net).unwrap();
            let t = fast.task(&task(cfg.n_tx, if cfg.n_tx == 6 { 5 } else { 3 }, 8)).unwrap();
            let theta = fast.flatten(&params(&net, 3, 3.0)).unwrap();
            let mut ws = FastWorkspace::default();
            let mut rng = ChaCha8Rng::seed_from_u64(4);
            for kind in [LossKind::Support, LossKind::Query] {
                let mut g = Vec::new();
                fast.loss_and_grad(&mut ws, &theta, &t, kind, &mut g).unwrap();
                for _ in 0..2 {
                    let dir: Vec<f64> = (0..theta.len()).map(|_| rng.random::<f64>() - 0.5).collect();
                    let analytic: f64 = g.iter().zip(&dir).map(|(a, b)| a * b).sum();
                    let eps = 1e-6;
                    let mut at = |s: f64| {
                        let q: Vec<f64> = theta.iter().zip(&dir).map(|(a, b)| a + s * b).collect();
                        fast.loss(&mut ws, &q, &t, kind).unwrap()
                    };
                    let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                    assert!(
                        (fd - analytic).abs() < 1e-6 * (1.0 + fd.abs()),
                        "{:?} {kind:?}: fd {fd}, analytic {analytic}",
                        cfg.head
                    );
                }
            }
        }
    }

    /// `MbMaml::adapt` through the fast path gives the candle path's parameters, selection and
    /// trace; the inner steps and the meta-step agree as well.
    #[test]
    fn fast_adaptation_and_meta_step_equal_the_candle_path() {
        let base = CovNetConfig {
            n_tx: 8,
            hidden: vec![16, 16],
            head: CovHead::Salr { rank: 2, density: 0.3 },
            n_unroll: 4,
            ..Default::default()
        };
        let fast_net = CovNet::new(base.clone(), &Device::Cpu).unwrap();
        let slow_net = CovNet::new(CovNetConfig { fast_grad: false, ..base }, &Device::Cpu).unwrap();
        let cfg = MbMamlConfig { n_bases: 3, n_inner_steps: 2, meta_lr: 1e-2, ..Default::default() };
        let mb = MbMaml::new(&fast_net, cfg, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        let t = task(8, 3, 21);
        for sel in [BasisSelection::Argmin, BasisSelection::Interpolate] {
            let a = mb.adapt(&fast_net, &t, 5, 0.01, sel).unwrap();
            let b = mb.adapt(&slow_net, &t, 5, 0.01, sel).unwrap();
            assert!(a.selection.iter().zip(&b.selection).all(|(x, y)| (x - y).abs() < 1e-12));
            assert!(a.support_trace.iter().zip(&b.support_trace).all(|(x, y)| (x - y).abs() < 1e-9 * y.abs()));
            let err = rel_err(&a.params, &b.params);
            assert!(err < 1e-9, "{sel:?}: {err:e}");
            // The parameters moved.
            assert!(rel_err(&a.params, &mb.bases()[0]) > 1e-6);
        }
        let (mut m1, mut m2) = (mb.clone(), mb);
        let batch: Vec<_> = (0..2).map(|i| task(8, 3, 40 + i)).collect();
        let r1 = m1.meta_step(&fast_net, &batch).unwrap();
        let r2 = m2.meta_step(&slow_net, &batch).unwrap();
        assert!((r1.mean_query_loss - r2.mean_query_loss).abs() < 1e-9 * r2.mean_query_loss.abs());
        for (x, y) in m1.bases().iter().zip(m2.bases()) {
            let err = rel_err(x, y);
            assert!(err < 1e-7, "meta-step: {err:e}");
        }
    }

    /// `N = 1` (zero sample covariance): still equal to candle.
    #[test]
    fn single_sample_blocks_match_candle() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let h = rayleigh(3, 1, 6, &mut rng).unwrap();
        let q = haar_unitary(6, &mut rng).unwrap();
        let b =
            sample_error_block(&h, &q, &UnknownErrorParams { n_samples: 1, ..Default::default() }, &mut rng).unwrap();
        let samples: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
        let t = TaskTensors::new(&samples, None, &SystemParams::uniform(3, 0.05, 1.0), &Device::Cpu).unwrap();
        let cfg = CovNetConfig { n_tx: 6, hidden: vec![8], n_unroll: 3, ..Default::default() };
        let net = CovNet::new(cfg, &Device::Cpu).unwrap();
        let p = params(&net, 1, 2.0);
        let (lc, gc) = net.loss_and_grad(&p, &t, LossKind::Support).unwrap();
        let (lf, gf) = fast_loss_and_grad(&net, &p, &t, LossKind::Support).unwrap();
        assert!((lc - lf).abs() <= 1e-11 * lc.abs());
        assert!(rel_err(&gf, &gc) <= 1e-9);
    }

    /// The fused SGD step gives the same bits as the gradient followed by `θ − g·lr`.
    #[test]
    fn fused_sgd_step_equals_gradient_then_update() {
        for cfg in configs().into_iter().take(5) {
            let net = CovNet::new(cfg.clone(), &Device::Cpu).unwrap();
            let fast = FastNet::new(&net).unwrap();
            let t = fast.task(&task(cfg.n_tx, if cfg.n_tx == 6 { 5 } else { 3 }, 12)).unwrap();
            let mut a = fast.flatten(&params(&net, 2, 3.0)).unwrap();
            let mut b = a.clone();
            let (mut ws, mut g) = (FastWorkspace::default(), Vec::new());
            for _ in 0..2 {
                let la = fast.sgd_step(&mut ws, &mut a, &t, LossKind::Query, 0.01).unwrap();
                let lb = fast.loss_and_grad(&mut ws, &b, &t, LossKind::Query, &mut g).unwrap();
                for (p, d) in b.iter_mut().zip(&g) {
                    *p -= d * 0.01;
                }
                assert_eq!(la.to_bits(), lb.to_bits());
                assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{:?}", cfg.head);
            }
        }
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let net = CovNet::new(CovNetConfig { n_tx: 8, hidden: vec![4], ..Default::default() }, &Device::Cpu).unwrap();
        let fast = FastNet::new(&net).unwrap();
        assert!(fast.task(&task(6, 3, 1)).is_err());
        let p = net.init_params(&mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert!(fast.flatten(&p[..2]).is_err());
        let mut t = task(8, 3, 2);
        t.h_true = None;
        let ft = fast.task(&t).unwrap();
        let theta = fast.flatten(&p).unwrap();
        let mut ws = FastWorkspace::default();
        assert!(fast.loss(&mut ws, &theta, &ft, LossKind::Query).is_err());
        assert!(fast.loss(&mut ws, &theta[1..], &ft, LossKind::Support).is_err());
        assert!(fast.unflatten(&theta[1..]).is_err());
    }
}
