//! One Kolmogorov–Arnold layer: a learnable activation on every edge.
//!
//! For input `x: [n_batch × n_in]` the layer returns `y: [n_batch × n_out]` with
//!
//! ```text
//! y_{b,o} = Σ_i φ_{o,i}(x_{b,i}),   φ_{o,i}(x) = w_b[o,i] · silu(x) + s[o,i] · Σ_j c[o,i,j] B_j^{(i)}(x),
//! ```
//!
//! `B_j^{(i)}` the `G + k` B-spline bases of input `i`'s knot vector (module `bspline`),
//! `w_b` the base weights, `c` the spline coefficients and `s` the optional standalone spline
//! scaler (efficient-KAN's parameterisation; Liu et al. 2024, "KAN: Kolmogorov–Arnold Networks").
//! Evaluation is batched: the bases of every input are computed once (one custom candle op with a
//! hand-written backward) and the spline branch is then a single matrix product
//! `B(x): [n_batch × n_in (G+k)]` × `c ⊙ s: [n_in (G+k) × n_out]`. Weights are stored input-major
//! (`[n_in × n_out]`, `[n_in (G+k) × n_out]`) so that neither pass needs a transpose.
//!
//! Grid update ([`KanLayer::update_grid`]) moves every input's knots to the quantiles of observed
//! data (mixed with a uniform grid, weight `grid_eps`) and re-fits the coefficients by least squares
//! so that each edge function is preserved where the new grid covers the old one.

use std::sync::Arc;

use beamlab_linalg_ops::LinalgError;
use beamlab_linalg_ops::small::real::spd_solve_in_place;
use candle_core::{DType, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};
use serde::Deserialize;

use crate::bspline::{SplineBasisOp, batch_bases, uniform_knots};
use crate::{KanError, invalid};

/// Hyper-parameters of a KAN layer (efficient-KAN's defaults).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KanConfig {
    /// Grid intervals `G` (default 5).
    pub grid_size: usize,
    /// Spline order `k` (default 3, cubic).
    pub spline_order: usize,
    /// Initial grid range `[lo, hi]` (default `[−1, 1]`).
    pub grid_range: [f64; 2],
    /// Amplitude of the random initial spline coefficients, `U(−a/2, a/2)/G` with `a` this value
    /// (default 0.1).
    pub scale_noise: f64,
    /// Scale of the base-weight initialisation (default 1: `U(±1/√n_in)`).
    pub scale_base: f64,
    /// Scale of the spline-scaler initialisation (default 1: `U(±1/√n_in)`).
    pub scale_spline: f64,
    /// Whether each edge has a separate learnable spline scale `s[o,i]` (default true).
    pub standalone_spline_scaler: bool,
    /// Weight of the uniform grid in grid updates (default 0.02).
    pub grid_eps: f64,
    /// In a multi-layer [`crate::KanNet`], divide every hidden layer's input row by
    /// `3 · RMS(row)` (differentiable, an RMS norm composed of basic ops) so that it falls on the
    /// layer's `[−1, 1]` grid (default false: efficient-KAN has no such normalisation).
    pub hidden_rms_norm: bool,
}

impl Default for KanConfig {
    fn default() -> Self {
        Self {
            grid_size: 5,
            spline_order: 3,
            grid_range: [-1.0, 1.0],
            scale_noise: 0.1,
            scale_base: 1.0,
            scale_spline: 1.0,
            standalone_spline_scaler: true,
            grid_eps: 0.02,
            hidden_rms_norm: false,
        }
    }
}

impl KanConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`KanError::InvalidParameter`] naming the field.
    pub fn check(&self) -> Result<(), KanError> {
        uniform_knots(self.grid_size, self.spline_order, self.grid_range[0], self.grid_range[1])?;
        if self.spline_order > 8 {
            return Err(invalid("spline_order", format!("must be <= 8, got {}", self.spline_order)));
        }
        for (name, v) in
            [("scale_noise", self.scale_noise), ("scale_base", self.scale_base), ("scale_spline", self.scale_spline)]
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(name, format!("must be finite and >= 0, got {v}")));
            }
        }
        if !(0.0..=1.0).contains(&self.grid_eps) {
            return Err(invalid("grid_eps", format!("must be in [0, 1], got {}", self.grid_eps)));
        }
        Ok(())
    }

    /// Bases per input, `G + k`.
    #[must_use]
    pub fn n_basis(&self) -> usize {
        self.grid_size + self.spline_order
    }

    /// Knots per input, `G + 2k + 1`.
    #[must_use]
    pub fn n_knots(&self) -> usize {
        self.grid_size + 2 * self.spline_order + 1
    }
}

/// A KAN layer `[n_batch × n_in] → [n_batch × n_out]` (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct KanLayer {
    n_in: usize,
    n_out: usize,
    config: KanConfig,
    base_weight: Var,
    spline_weight: Var,
    spline_scaler: Option<Var>,
    grid: Var,
    op: SplineBasisOp,
}

fn find_var(vars: &VarMap, name: &str) -> Result<Var, KanError> {
    let data = vars.data().lock().map_err(|_| KanError::Shape("variable map lock poisoned".into()))?;
    data.get(name).cloned().ok_or_else(|| KanError::Shape(format!("no variable named {name}")))
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

impl KanLayer {
    /// Creates a layer whose variables live in `vars` under `vb`'s prefix (`vb` must be backed by
    /// `vars`, e.g. [`beamlab_candle_bridge::seeded_var_builder`]). Parameters: `base_weight
    /// [n_in × n_out]`, `spline_weight [n_in (G+k) × n_out]`, `spline_scaler [n_in × n_out]`
    /// (optional) and the non-trainable `grid [n_in × (G+2k+1)]` (always `f64`).
    ///
    /// # Errors
    /// [`KanError::InvalidParameter`] for zero sizes or a bad config; candle errors.
    pub fn new(n_in: usize, n_out: usize, config: &KanConfig, vars: &VarMap, vb: VarBuilder) -> Result<Self, KanError> {
        config.check()?;
        if n_in == 0 || n_out == 0 {
            return Err(invalid("widths", format!("KAN layer sizes must be >= 1, got {n_in} -> {n_out}")));
        }
        let nb = config.n_basis();
        let nk = config.n_knots();
        let prefix = vb.prefix();
        let bb = config.scale_base / (n_in as f64).sqrt();
        vb.get_with_hints((n_in, n_out), "base_weight", Init::Uniform { lo: -bb, up: bb })?;
        let sn = config.scale_noise / (2.0 * config.grid_size as f64);
        vb.get_with_hints((n_in * nb, n_out), "spline_weight", Init::Uniform { lo: -sn, up: sn })?;
        if config.standalone_spline_scaler {
            let sb = config.scale_spline / (n_in as f64).sqrt();
            vb.get_with_hints((n_in, n_out), "spline_scaler", Init::Uniform { lo: -sb, up: sb })?;
        }
        let knots = uniform_knots(config.grid_size, config.spline_order, config.grid_range[0], config.grid_range[1])?;
        let all: Vec<f64> = (0..n_in).flat_map(|_| knots.iter().copied()).collect();
        vb.to_dtype(DType::F64).get_with_hints((n_in, nk), "grid", Init::Const(0.0))?;
        let grid = find_var(vars, &join(&prefix, "grid"))?;
        grid.set(&Tensor::from_vec(all.clone(), (n_in, nk), grid.device())?)?;
        Ok(Self {
            n_in,
            n_out,
            config: config.clone(),
            base_weight: find_var(vars, &join(&prefix, "base_weight"))?,
            spline_weight: find_var(vars, &join(&prefix, "spline_weight"))?,
            spline_scaler: if config.standalone_spline_scaler {
                Some(find_var(vars, &join(&prefix, "spline_scaler"))?)
            } else {
                None
            },
            grid,
            op: SplineBasisOp { knots: Arc::new(all), n_in, n_knots: nk, order: config.spline_order },
        })
    }

    /// Input width.
    #[must_use]
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Output width.
    #[must_use]
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    /// The layer's configuration.
    #[must_use]
    pub fn config(&self) -> &KanConfig {
        &self.config
    }

    /// Trainable variables (base weights, spline coefficients, scalers; not the grid).
    #[must_use]
    pub fn trainable_vars(&self) -> Vec<Var> {
        let mut v = vec![self.base_weight.clone(), self.spline_weight.clone()];
        v.extend(self.spline_scaler.iter().cloned());
        v
    }

    /// The current knots, `n_in × (G+2k+1)` row-major.
    #[must_use]
    pub fn knots(&self) -> &[f64] {
        &self.op.knots
    }

    /// Fraction of the entries of `x: [n_batch × n_in]` inside their input's inner grid range
    /// `[t_k, t_{G+k})` (where the bases sum to one).
    ///
    /// # Errors
    /// Shape and candle errors.
    pub fn in_grid_fraction(&self, x: &Tensor) -> Result<f64, KanError> {
        let (_, n_in) = x.dims2()?;
        if n_in != self.n_in {
            return Err(KanError::InputWidth { what: "KAN layer", expected: self.n_in, found: n_in });
        }
        let xs: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let (k, g, nk) = (self.config.spline_order, self.config.grid_size, self.config.n_knots());
        let inside = xs
            .iter()
            .enumerate()
            .filter(|(idx, v)| {
                let kn = &self.op.knots[(idx % n_in) * nk..(idx % n_in + 1) * nk];
                **v >= kn[k] && **v < kn[k + g]
            })
            .count();
        Ok(inside as f64 / xs.len().max(1) as f64)
    }

    /// Re-reads the grid from its variable (after a checkpoint load).
    ///
    /// # Errors
    /// candle errors.
    pub fn refresh_grid(&mut self) -> Result<(), KanError> {
        let g: Vec<f64> = self.grid.as_tensor().flatten_all()?.to_vec1()?;
        self.op.knots = Arc::new(g);
        Ok(())
    }

    fn effective_spline_weight(&self) -> Result<Tensor, KanError> {
        let w = self.spline_weight.as_tensor();
        Ok(match &self.spline_scaler {
            None => w.clone(),
            Some(s) => {
                let nb = self.config.n_basis();
                w.reshape((self.n_in, nb, self.n_out))?
                    .broadcast_mul(&s.as_tensor().unsqueeze(1)?)?
                    .reshape((self.n_in * nb, self.n_out))?
            }
        })
    }

    /// The layer output for `x: [n_batch × n_in]`.
    ///
    /// # Errors
    /// [`KanError::Shape`] for a wrong input width; candle errors.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, KanError> {
        let (_, n_in) = x.dims2()?;
        if n_in != self.n_in {
            return Err(KanError::InputWidth { what: "KAN layer", expected: self.n_in, found: n_in });
        }
        let x = x.contiguous()?;
        let base = x.silu()?.matmul(self.base_weight.as_tensor())?;
        let bases = x.apply_op1(self.op.clone())?;
        let spline = bases.matmul(&self.effective_spline_weight()?)?;
        Ok((base + spline)?)
    }

    /// Grid update from data `x: [n_batch × n_in]` (efficient-KAN's rule): for each input, the new
    /// `G + 1` grid points are `ε · uniform + (1 − ε) · quantiles` of the samples (uniform over
    /// `[min − 0.01, max + 0.01]`), extended by `k` knots of the uniform step on each side. The
    /// spline coefficients are then re-fitted by least squares so that every edge's spline
    /// function is preserved at the samples and on a dense set of points of the old inner range
    /// (restricted to the new grid's support). Optimiser moments of the coefficients are not reset.
    ///
    /// # Errors
    /// [`KanError::GridSamples`] for fewer than 2 samples or non-finite samples;
    /// [`KanError::InputWidth`]; [`KanError::SingularGridRefit`]; candle errors.
    pub fn update_grid(&mut self, x: &Tensor) -> Result<(), KanError> {
        let (n_batch, n_in) = x.dims2()?;
        if n_in != self.n_in {
            return Err(KanError::InputWidth { what: "KAN layer", expected: self.n_in, found: n_in });
        }
        let xs: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let finite = xs.iter().all(|v| v.is_finite());
        if n_batch < 2 || !finite {
            return Err(KanError::GridSamples { found: n_batch, finite });
        }
        let (g, k, nb, nk) =
            (self.config.grid_size, self.config.spline_order, self.config.n_basis(), self.config.n_knots());
        let eps = self.config.grid_eps;
        let w_eff: Vec<f64> = self.effective_spline_weight()?.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let scaler: Option<Vec<f64>> = match &self.spline_scaler {
            Some(s) => Some(s.as_tensor().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?),
            None => None,
        };
        let old = self.op.knots.clone();
        let mut new_knots = vec![0.0; n_in * nk];
        let mut new_w = vec![0.0; self.n_out * n_in * nb];
        let n_dense = 4 * nb + 16;
        for i in 0..n_in {
            let mut s: Vec<f64> = (0..n_batch).map(|b| xs[b * n_in + i]).collect();
            s.sort_by(f64::total_cmp);
            let margin = 0.01;
            let (lo, hi) = (s[0] - margin, s[n_batch - 1] + margin);
            let step = (hi - lo) / g as f64;
            let kn = &mut new_knots[i * nk..(i + 1) * nk];
            for j in 0..=g {
                let q = s[(j * (n_batch - 1)) / g];
                kn[k + j] = eps * (lo + j as f64 * step) + (1.0 - eps) * q;
            }
            for j in 1..=k {
                kn[k - j] = kn[k] - j as f64 * step;
                kn[k + g + j] = kn[k + g] + j as f64 * step;
            }
            // Fit points: the samples plus a dense set over the old inner range.
            let ok = &old[i * nk..(i + 1) * nk];
            let (a, b) = (ok[k], ok[k + g]);
            let mut pts = s.clone();
            pts.extend((0..n_dense).map(|q| a + (b - a) * (q as f64 + 0.5) / n_dense as f64));
            let b_old = batch_bases(&pts, 1, ok, nk, k);
            let b_new = batch_bases(&pts, 1, kn, nk, k);
            // Targets y[p, o] = Σ_j B_old[p, j] W_eff[o, i, j].
            let np = pts.len();
            let mut ata = vec![0.0; nb * nb];
            let mut aty = vec![0.0; nb * self.n_out];
            for p in 0..np {
                let bn = &b_new[p * nb..(p + 1) * nb];
                let bo = &b_old[p * nb..(p + 1) * nb];
                for r in 0..nb {
                    for c in 0..nb {
                        ata[r * nb + c] += bn[r] * bn[c];
                    }
                }
                for o in 0..self.n_out {
                    let y: f64 = (0..nb).map(|j| bo[j] * w_eff[(i * nb + j) * self.n_out + o]).sum();
                    for r in 0..nb {
                        aty[r * self.n_out + o] += bn[r] * y;
                    }
                }
            }
            let tr: f64 = (0..nb).map(|r| ata[r * nb + r]).sum();
            for r in 0..nb {
                ata[r * nb + r] += 1e-10 * tr.max(1e-300) / nb as f64;
            }
            spd_solve_in_place(&mut ata, &mut aty, nb, self.n_out).map_err(|e| match e {
                LinalgError::NotPositiveDefinite { .. } => KanError::SingularGridRefit,
                other => KanError::Linalg(other),
            })?;
            for o in 0..self.n_out {
                let sc = scaler.as_ref().map_or(1.0, |s| s[i * self.n_out + o]);
                for j in 0..nb {
                    new_w[(i * nb + j) * self.n_out + o] =
                        if sc.abs() > 1e-12 { aty[j * self.n_out + o] / sc } else { 0.0 };
                }
            }
        }
        let dev = self.grid.device().clone();
        self.grid.set(&Tensor::from_vec(new_knots.clone(), (n_in, nk), &dev)?)?;
        let dt = self.spline_weight.dtype();
        self.spline_weight.set(&Tensor::from_vec(new_w, (n_in * nb, self.n_out), &dev)?.to_dtype(dt)?)?;
        self.op.knots = Arc::new(new_knots);
        Ok(())
    }
}
