//! The graph network of U-G-HBF-GCN (spec §3, (28)-(30)), in candle.
//!
//! Per instance with `K` users: input features `x_k = [ln ‖ĥ_k‖², ln γ_k, ln ζ]` (`[K × 3]`,
//! standardised with statistics of the training set, stored as non-trainable variables `norm.*`),
//! the shift operator `S: [K × K]`, `S_kj = |ĥ_k^H ĥ_j| / (‖ĥ_k‖ ‖ĥ_j‖)`, zero diagonal (29), and `L`
//! graph-filter layers (28) `Z^{(l+1)} = σ_l(Σ_{j=0..J} S^j Z^{(l)} W_j^{(l)} + b^{(l)})`, ReLU on
//! hidden layers. The output layer gives four virtual-channel coefficients per user through the
//! bounded exponential `c = exp(B tanh(z / B))`, `c ∈ [e^{−B}, e^{B}]`; the output biases start at
//! `c1 = c3 = 1`, `c2 = c4 = e^{−3}` and the output weights start small, so the untrained network is
//! close to the estimate-as-truth greedy algorithm. `J = 0` is the FCN benchmark (users processed
//! independently by a shared MLP).
//!
//! Own addition, off by default (docs/gnn-unroll.md): [`GcnConfig::group_inputs`] appends the
//! one-hot constraint group to the inputs.

use beamlab_candle_bridge::{candle_core, candle_nn};
use beamlab_linalg_ops::c64;
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use ndarray::{Array1, Array2};
use std::num::NonZeroUsize;

use crate::Error;
use crate::data::Instance;

/// Number of input features per user (the paper's).
pub(crate) const N_FEATURES: usize = 3;
/// Number of output coefficients per user.
pub(crate) const N_COEFFS: usize = 4;

/// Architecture of the graph network.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcnConfig {
    /// Number of layers `L` (≥ 1; the last is the output layer).
    pub n_layers: usize,
    /// Hidden width.
    pub width: usize,
    /// Filter order `J` (0: the FCN benchmark).
    pub filter_order: usize,
    /// Output bound `B` of `exp(B tanh(z/B))`.
    pub bound: f64,
    /// `None` (default): the paper's inputs. `Some(G)`: the instance's constraint group out of
    /// `G` is appended to every user's features as a one-hot code (not standardised). An own
    /// addition: it lets the network tell apart groups that overlap in feature space
    /// (docs/gnn-unroll.md, "Own additions"). In a config: `group_inputs = 4`.
    pub group_inputs: Option<NonZeroUsize>,
}

impl Default for GcnConfig {
    fn default() -> Self {
        Self { n_layers: 3, width: 32, filter_order: 2, bound: 5.0, group_inputs: None }
    }
}

impl GcnConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the field: a zero layer count or width, or a bound not
    /// above 3 (the initial output `e^{−3}` must lie inside `(e^{−B}, e^B)`).
    pub fn check(&self) -> Result<(), Error> {
        if self.n_layers == 0 {
            return Err(Error::param("n_layers", "at least one layer, got 0"));
        }
        if self.width == 0 {
            return Err(Error::param("width", "hidden width must be >= 1, got 0"));
        }
        if !(self.bound.is_finite() && self.bound > 3.0) {
            return Err(Error::param("bound", format!("must be finite and > 3, got {}", self.bound)));
        }
        Ok(())
    }

    /// Number of one-hot group inputs (0 without).
    #[must_use]
    pub fn n_group_inputs(&self) -> usize {
        self.group_inputs.map_or(0, NonZeroUsize::get)
    }
}

/// The graph network (module docs).
#[derive(Debug)]
pub struct Gcn {
    weights: Vec<Vec<Tensor>>,
    biases: Vec<Tensor>,
    norm_mean: Tensor,
    norm_std: Tensor,
    bound: f64,
    group_inputs: usize,
}

impl Gcn {
    /// Builds the network's variables under `vb` (use
    /// [`seeded_var_builder`](beamlab_candle_bridge::seeded_var_builder) for a deterministic init).
    ///
    /// # Errors
    /// As [`GcnConfig::check`]; candle errors.
    pub(crate) fn new(vb: &VarBuilder<'_>, cfg: &GcnConfig) -> Result<Self, Error> {
        cfg.check()?;
        let n_taps = cfg.filter_order + 1;
        let mut weights = Vec::with_capacity(cfg.n_layers);
        let mut biases = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let last = l + 1 == cfg.n_layers;
            let fan_in = if l == 0 { N_FEATURES + cfg.n_group_inputs() } else { cfg.width };
            let fan_out = if last { N_COEFFS } else { cfg.width };
            let stdev = if last { 0.01 } else { (2.0 / (fan_in * n_taps) as f64).sqrt() };
            let lvb = vb.pp(format!("layer{l}"));
            let w = (0..n_taps)
                .map(|j| lvb.get_with_hints((fan_in, fan_out), &format!("w{j}"), Init::Randn { mean: 0.0, stdev }))
                .collect::<Result<Vec<_>, _>>()?;
            // The output bias is initialised by `build` (see the module docs).
            let b = lvb.get_with_hints(fan_out, "b", Init::Const(0.0))?;
            weights.push(w);
            biases.push(b);
        }
        let n_in = N_FEATURES + cfg.n_group_inputs();
        let norm_mean = vb.pp("norm").get_with_hints(n_in, "mean", Init::Const(0.0))?;
        let norm_std = vb.pp("norm").get_with_hints(n_in, "std", Init::Const(1.0))?;
        Ok(Self { weights, biases, norm_mean, norm_std, bound: cfg.bound, group_inputs: cfg.n_group_inputs() })
    }

    /// Number of one-hot group inputs (0 without, [`GcnConfig::group_inputs`]).
    #[must_use]
    pub fn n_group_inputs(&self) -> usize {
        self.group_inputs
    }

    /// Coefficients `c: [K × 4]` from inputs `[K × (3 + n_group_inputs)]` and the shift operator
    /// `[K × K]`.
    ///
    /// # Errors
    /// candle errors (shape mismatches).
    pub(crate) fn forward(&self, features: &Tensor, shift: &Tensor) -> Result<Tensor, Error> {
        let mut z = features.broadcast_sub(&self.norm_mean)?.broadcast_div(&self.norm_std)?;
        let n_layers = self.weights.len();
        for (l, (ws, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            let mut tap = z.clone();
            let mut acc = tap.matmul(&ws[0])?;
            for w in &ws[1..] {
                tap = shift.matmul(&tap)?;
                acc = (acc + tap.matmul(w)?)?;
            }
            let pre = acc.broadcast_add(b)?;
            z = if l + 1 == n_layers { pre } else { pre.relu()? };
        }
        Ok(((z / self.bound)?.tanh()? * self.bound)?.exp()?)
    }
}

/// Features `[K × 3]` of an instance: `[ln ‖ĥ_k‖², ln γ_k, ln ζ]` (arguments floored at 1e-30).
#[must_use]
pub(crate) fn features(inst: &Instance) -> Array2<f64> {
    let ln = |x: f64| x.max(1e-30).ln();
    Array2::from_shape_fn((inst.h_est.len(), N_FEATURES), |(k, f)| match f {
        0 => ln(inst.h_est[k].iter().map(|z| z.norm_sqr()).sum()),
        1 => ln(inst.targets[k]),
        _ => ln(inst.zeta),
    })
}

/// Shift operator (29) `[K × K]`: normalised channel correlations, zero diagonal (0 for a zero
/// estimate).
#[must_use]
pub(crate) fn shift_operator(h_est: &[Array1<c64>]) -> Array2<f64> {
    let k = h_est.len();
    let norms: Vec<f64> = h_est.iter().map(|h| h.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt()).collect();
    Array2::from_shape_fn((k, k), |(i, j)| {
        if i == j || norms[i] == 0.0 || norms[j] == 0.0 || !(norms[i] * norms[j]).is_finite() {
            0.0
        } else {
            let c: c64 = h_est[i].iter().zip(&h_est[j]).map(|(a, b)| a.conj() * b).sum();
            (c.norm() / (norms[i] * norms[j])).min(1.0)
        }
    })
}

/// Statistical features `[K × 3]` (Table 4): `[ln tr R̂_k, ln γ_k, ln ζ]` (arguments floored at
/// 1e-30). For `R̂_k = ĥ_k ĥ_k^H` they equal [`features`].
///
/// # Errors
/// [`Error::ShapeMismatch`] when `r_hat` and `targets` differ in length.
pub(crate) fn stat_features(r_hat: &[Array2<c64>], targets: &[f64], zeta: f64) -> Result<Array2<f64>, Error> {
    if r_hat.len() != targets.len() {
        return Err(Error::shape("statistical features: targets (one per covariance)", r_hat.len(), targets.len()));
    }
    let ln = |x: f64| x.max(1e-30).ln();
    Ok(Array2::from_shape_fn((r_hat.len(), N_FEATURES), |(k, f)| match f {
        0 => ln(r_hat[k].diag().iter().map(|z| z.re).sum()),
        1 => ln(targets[k]),
        _ => ln(zeta),
    }))
}

/// Statistical shift operator `[K × K]` (spec §3): `|tr(R̂_k R̂_j)| / (‖R̂_k‖_F ‖R̂_j‖_F)`, zero
/// diagonal (0 for a zero covariance or mismatched sizes). For rank-one `R̂_k = ĥ_k ĥ_k^H` it is the
/// entrywise square of [`shift_operator`].
#[must_use]
pub(crate) fn stat_shift_operator(r_hat: &[Array2<c64>]) -> Array2<f64> {
    let k = r_hat.len();
    let norms: Vec<f64> = r_hat.iter().map(|r| r.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt()).collect();
    Array2::from_shape_fn((k, k), |(i, j)| {
        let (ri, rj) = (&r_hat[i], &r_hat[j]);
        if i == j || norms[i] == 0.0 || norms[j] == 0.0 || !(norms[i] * norms[j]).is_finite() || ri.dim() != rj.dim() {
            0.0
        } else {
            // tr(R_i R_j) = Σ_ab R_i[a,b] R_j[b,a].
            let c: c64 = ri.iter().zip(rj.t().iter()).map(|(a, b)| a * b).sum();
            (c.norm() / (norms[i] * norms[j])).min(1.0)
        }
    })
}

/// Builds a [`Gcn`] with its variables in `vars` (seeded), output biases initialised as in the
/// module docs.
///
/// # Errors
/// As [`Gcn::new`].
pub(crate) fn build(vars: &VarMap, cfg: &GcnConfig, seed: u64) -> Result<Gcn, Error> {
    cfg.check()?;
    let vb = beamlab_candle_bridge::seeded_var_builder(vars, seed, DType::F64, &Device::Cpu);
    let last = format!("layer{}", cfg.n_layers - 1);
    let fresh = !vars.data().lock().map(|d| d.contains_key(&format!("{last}.b"))).unwrap_or(true);
    if fresh {
        let small = cfg.bound * (-3.0 / cfg.bound).atanh();
        let n_out = N_COEFFS;
        let init = Tensor::from_vec(vec![0.0, small, 0.0, small], n_out, &Device::Cpu)?;
        // Create the output bias first, then give it the intended values.
        let _ = vb.pp(&last).get_with_hints(n_out, "b", Init::Const(0.0))?;
        set_named(vars, &format!("{last}.b"), &init)?;
    }
    Gcn::new(&vb, cfg)
}

/// Sets variable `name` of `vars` to `value`.
///
/// # Errors
/// [`Error::UnknownVariable`] for an unknown name; candle errors for a shape mismatch.
fn set_named(vars: &VarMap, name: &str, value: &Tensor) -> Result<(), Error> {
    let data = vars.data().lock().map_err(|_| Error::PoisonedLock)?;
    let var = data.get(name).ok_or_else(|| Error::UnknownVariable { name: name.to_string() })?;
    var.set(&value.to_dtype(var.dtype())?)?;
    Ok(())
}

/// Stores feature standardisation statistics (mean and standard deviation of [`features`] over
/// `instances`) in the `norm.*` variables held in `vars`.
///
/// # Errors
/// [`Error::Empty`] for an empty set; candle errors.
pub(crate) fn fit_normalisation(vars: &VarMap, instances: &[Instance]) -> Result<(), Error> {
    let rows: Vec<Array2<f64>> = instances.iter().map(features).collect();
    fit_normalisation_rows(vars, &rows)
}

/// Stores standardisation statistics of the statistical features ([`stat_features`]
/// `[ln tr R̂_k, ln γ_k, ln ζ]`) over the systems `(R̂, γ, ζ)` in the `norm.*` variables (Table 4:
/// the analog network of U-G-HBF-GCN / -2GCN), so checkpoints carry them like the instantaneous
/// ones.
///
/// # Errors
/// [`Error::Empty`] for an empty set, [`Error::ShapeMismatch`] for mismatched lengths; candle
/// errors.
pub(crate) fn fit_stat_normalisation<'a>(
    vars: &VarMap,
    systems: impl IntoIterator<Item = (&'a [Array2<c64>], &'a [f64], f64)>,
) -> Result<(), Error> {
    let rows =
        systems.into_iter().map(|(r, t, z)| stat_features(r, t, z)).collect::<Result<Vec<Array2<f64>>, Error>>()?;
    fit_normalisation_rows(vars, &rows)
}

/// Mean and standard deviation (floored at 1e-3) of the columns of the `[K × F]` feature blocks
/// (all of one width `F`), stored in `norm.mean`, `norm.std`; inputs beyond `F` (one-hot group
/// codes) keep mean 0 and deviation 1.
fn fit_normalisation_rows(vars: &VarMap, rows: &[Array2<f64>]) -> Result<(), Error> {
    let n: usize = rows.iter().map(|r| r.nrows()).sum();
    let n_f = rows.first().map_or(0, |r| r.ncols());
    if n == 0 || n_f == 0 {
        return Err(Error::Empty { what: "normalisation set (instances or users)" });
    }
    if let Some(r) = rows.iter().find(|r| r.ncols() != n_f) {
        return Err(Error::shape("feature block width", n_f, r.ncols()));
    }
    let mut mean = vec![0.0; n_f];
    let mut sq = vec![0.0; n_f];
    for r in rows {
        for row in r.rows() {
            for f in 0..n_f {
                mean[f] += row[f] / n as f64;
                sq[f] += row[f] * row[f] / n as f64;
            }
        }
    }
    let mut std: Vec<f64> = (0..n_f).map(|f| (sq[f] - mean[f] * mean[f]).max(0.0).sqrt().max(1e-3)).collect();
    let n_in = vars
        .data()
        .lock()
        .map_err(|_| Error::PoisonedLock)?
        .get("norm.mean")
        .map_or(n_f, |v| v.as_tensor().elem_count());
    if n_in < n_f {
        return Err(Error::shape("features (network inputs)", format!("at most {n_in}"), n_f));
    }
    mean.resize(n_in, 0.0);
    std.resize(n_in, 1.0);
    set_named(vars, "norm.mean", &Tensor::from_vec(mean, n_in, &Device::Cpu)?)?;
    set_named(vars, "norm.std", &Tensor::from_vec(std, n_in, &Device::Cpu)?)?;
    Ok(())
}

/// The network's inputs for `inst`: [`features`], then (if the model has group inputs) the
/// one-hot code of the instance's group (groups beyond the last count as the last).
#[must_use]
fn network_inputs(model: &Gcn, inst: &Instance) -> Array2<f64> {
    let x = features(inst);
    let n_groups = model.group_inputs;
    if n_groups == 0 {
        return x;
    }
    let (g, n_b) = (inst.group.min(n_groups - 1), x.ncols());
    Array2::from_shape_fn((x.nrows(), n_b + n_groups), |(k, f)| {
        if f < n_b { x[[k, f]] } else { f64::from(u8::from(f - n_b == g)) }
    })
}

/// Coefficients `[K × 4]` of one instance: the tensor (with its graph) and its values.
///
/// # Errors
/// candle errors.
pub(crate) fn coefficients(model: &Gcn, inst: &Instance) -> Result<(Tensor, Array2<f64>), Error> {
    coefficients_from(model, &network_inputs(model, inst), &shift_operator(&inst.h_est))
}

/// Coefficients `[K × 4]` of a statistical-CSI system (Table 4) from [`stat_features`] and
/// [`stat_shift_operator`] of its covariance estimates `R̂_k`, targets and `ζ`.
///
/// # Errors
/// As [`stat_features`]; candle errors.
pub(crate) fn stat_coefficients(
    model: &Gcn,
    r_hat: &[Array2<c64>],
    targets: &[f64],
    zeta: f64,
) -> Result<(Tensor, Array2<f64>), Error> {
    coefficients_from(model, &stat_features(r_hat, targets, zeta)?, &stat_shift_operator(r_hat))
}

/// The network on inputs `x: [K × n_in]` and shift operator `s: [K × K]`: the coefficient tensor
/// (with its graph) and its values.
fn coefficients_from(model: &Gcn, x: &Array2<f64>, s: &Array2<f64>) -> Result<(Tensor, Array2<f64>), Error> {
    let (k, n_in) = x.dim();
    let xt = Tensor::from_vec(x.iter().copied().collect::<Vec<_>>(), (k, n_in), &Device::Cpu)?;
    let st = Tensor::from_vec(s.iter().copied().collect::<Vec<_>>(), (k, k), &Device::Cpu)?;
    let c = model.forward(&xt, &st)?;
    let v: Vec<Vec<f64>> = c.to_vec2()?;
    let arr = Array2::from_shape_fn((k, N_COEFFS), |(i, j)| v[i][j]);
    Ok((c, arr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::greedy::rank_one_covariances;

    /// Group inputs: a one-hot code after the three features, untouched by the normalisation; a
    /// network without them sees exactly the features.
    #[test]
    fn group_inputs_are_a_one_hot_code_after_the_features() {
        let mut inst = crate::unroll::tests::instance(7);
        inst.group = 2;
        let plain = build(&VarMap::new(), &GcnConfig::default(), 1).unwrap();
        assert_eq!(network_inputs(&plain, &inst), features(&inst));
        let vars = VarMap::new();
        let cfg = GcnConfig { group_inputs: NonZeroUsize::new(3), ..GcnConfig::default() };
        let model = build(&vars, &cfg, 1).unwrap();
        let x = network_inputs(&model, &inst);
        assert_eq!(x.dim(), (inst.targets.len(), N_FEATURES + 3));
        for k in 0..x.nrows() {
            assert_eq!(x.row(k).slice(ndarray::s![N_FEATURES..]).to_vec(), vec![0.0, 0.0, 1.0]);
        }
        inst.group = 9; // beyond the last group: counts as the last
        assert_eq!(network_inputs(&model, &inst)[[0, N_FEATURES + 2]], 1.0);
        // The one-hot part keeps mean 0 and std 1 in the normalisation.
        fit_normalisation(&vars, std::slice::from_ref(&inst)).unwrap();
        let mean: Vec<f64> = model.norm_mean.to_vec1().unwrap();
        let std: Vec<f64> = model.norm_std.to_vec1().unwrap();
        assert_eq!((mean.len(), std.len()), (N_FEATURES + 3, N_FEATURES + 3));
        assert_eq!((&mean[N_FEATURES..], &std[N_FEATURES..]), (&[0.0; 3][..], &[1.0; 3][..]));
        assert!((mean[1] - features(&inst).column(1).mean().unwrap()).abs() < 1e-12);
        // The group changes the output of the (untrained) network.
        let (_, c2) = coefficients(&model, &inst).unwrap();
        inst.group = 0;
        let (_, c0) = coefficients(&model, &inst).unwrap();
        assert!(c0.iter().zip(c2.iter()).any(|(a, b)| (a - b).abs() > 1e-9));
    }

    /// The statistical normalisation holds the mean and (floored) standard deviation of the
    /// statistical features over all users of all systems, not those of the instantaneous ones.
    #[test]
    fn statistical_normalisation_fits_the_statistical_features() {
        use rand::SeedableRng;
        let sc = crate::data::Scenario { angular_spread_deg: 5.0, ..crate::data::Scenario::default() };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let systems: Vec<_> =
            (0..5).map(|i| crate::data::draw_stat_instance(&sc, 1 + i % 3, 4, 0, &mut rng).unwrap()).collect();
        let vars = VarMap::new();
        let _ = build(&vars, &GcnConfig::default(), 1).unwrap();
        fit_stat_normalisation(&vars, systems.iter().map(|s| (s.r_hat.as_slice(), s.targets(), s.zeta()))).unwrap();
        let get = |name: &str| -> Vec<f64> { vars.data().lock().unwrap()[name].as_tensor().to_vec1().unwrap() };
        let rows: Vec<Array2<f64>> =
            systems.iter().map(|s| stat_features(&s.r_hat, s.targets(), s.zeta()).unwrap()).collect();
        let n = 15.0;
        for f in 0..N_FEATURES {
            let mean: f64 = rows.iter().flat_map(|r| r.column(f).to_vec()).sum::<f64>() / n;
            let var: f64 = rows.iter().flat_map(|r| r.column(f).to_vec()).map(|x| (x - mean).powi(2)).sum::<f64>() / n;
            assert!((get("norm.mean")[f] - mean).abs() < 1e-12, "feature {f}");
            assert!((get("norm.std")[f] - var.sqrt().max(1e-3)).abs() < 1e-9, "feature {f}");
        }
        // ln ζ = ln L varies over L = 1, 2, 3: a real spread, not the floor.
        assert!(get("norm.std")[2] > 0.1);
        // The instantaneous statistics of the same samples differ (tr R̂_k is a mean of ‖ĥ_kt‖²).
        let inst: Vec<Instance> = systems.iter().flat_map(|s| s.samples.clone()).collect();
        let other = VarMap::new();
        let _ = build(&other, &GcnConfig::default(), 1).unwrap();
        fit_normalisation(&other, &inst).unwrap();
        let std0 = other.data().lock().unwrap()["norm.std"].as_tensor().to_vec1::<f64>().unwrap()[0];
        assert!((std0 - get("norm.std")[0]).abs() > 1e-3, "{std0}");
        assert!(fit_stat_normalisation(&vars, std::iter::empty()).is_err());
    }

    /// Rank-one statistics reduce to the instantaneous inputs: same features, squared shift.
    #[test]
    fn statistical_inputs_reduce_to_the_instantaneous_ones_for_rank_one_covariances() {
        let inst = crate::unroll::tests::instance(7);
        let r = rank_one_covariances(&inst.h_est);
        let f = stat_features(&r, &inst.targets, inst.zeta).unwrap();
        assert!(f.iter().zip(features(&inst).iter()).all(|(a, b)| (a - b).abs() < 1e-12));
        let s = stat_shift_operator(&r);
        let s1 = shift_operator(&inst.h_est);
        assert!(s.iter().zip(s1.iter()).all(|(a, b)| (a - b * b).abs() < 1e-12), "{s} vs {s1}");
        // A sum of rank-one terms: symmetric, in [0, 1], zero diagonal; orthogonal supports give 0.
        let full: Vec<Array2<c64>> = r.iter().map(|ri| ri + &r[0]).collect();
        let s = stat_shift_operator(&full);
        for i in 0..s.nrows() {
            assert_eq!(s[[i, i]], 0.0);
            for j in 0..s.ncols() {
                assert!((s[[i, j]] - s[[j, i]]).abs() < 1e-12 && (0.0..=1.0).contains(&s[[i, j]]));
            }
        }
        let mut e0 = Array2::<c64>::zeros((2, 2));
        e0[[0, 0]] = c64::new(1.0, 0.0);
        let mut e1 = Array2::<c64>::zeros((2, 2));
        e1[[1, 1]] = c64::new(2.0, 0.0);
        assert_eq!(stat_shift_operator(&[e0.clone(), e1, Array2::zeros((2, 2))]), Array2::<f64>::zeros((3, 3)));
        assert!(stat_features(&[e0], &[1.0, 2.0], 1.0).is_err());
    }
}
