//! B-spline bases on (possibly non-uniform) knot vectors, evaluated in plain Rust, and the candle
//! op that turns a batch of inputs into their spline bases in one pass.
//!
//! A grid of `G` intervals with spline order `k` on the range `[a, b]` has the extended knot vector
//! `t_j = a + (j − k) h`, `j = 0..=G+2k`, `h = (b − a)/G` (`G + 2k + 1` knots), and `G + k` bases
//! `B_{i,k}`, `i = 0..G+k`, each supported on `[t_i, t_{i+k+1})`. The bases follow the Cox–de Boor
//! recursion
//!
//! ```text
//! B_{i,0}(x) = 1[t_i ≤ x < t_{i+1}],
//! B_{i,p}(x) = (x − t_i)/(t_{i+p} − t_i) B_{i,p−1}(x) + (t_{i+p+1} − x)/(t_{i+p+1} − t_{i+1}) B_{i+1,p−1}(x),
//! ```
//!
//! (a term with a zero denominator is 0), and they form a partition of unity on the inner range
//! `[t_k, t_{G+k})`; outside `[t_0, t_{G+2k})` every basis is 0 (efficient-KAN's convention, the
//! layer's SiLU branch then carries the signal alone). The derivative is
//! `B'_{i,k} = k (B_{i,k−1}/(t_{i+k} − t_i) − B_{i+1,k−1}/(t_{i+k+1} − t_{i+1}))`.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

use crate::{KanError, invalid};

/// The extended uniform knot vector of `grid_size` intervals on `[lo, hi]` with `order` extra
/// knots on each side (`grid_size + 2 order + 1` knots).
///
/// # Errors
/// [`KanError::InvalidParameter`] for a zero grid size, a non-finite or empty range.
pub(crate) fn uniform_knots(grid_size: usize, order: usize, lo: f64, hi: f64) -> Result<Vec<f64>, KanError> {
    if grid_size == 0 {
        return Err(invalid("grid_size", "must be >= 1"));
    }
    if !(lo.is_finite() && hi.is_finite() && hi > lo) {
        return Err(invalid("grid_range", format!("must be finite with lo < hi, got [{lo}, {hi}]")));
    }
    let h = (hi - lo) / grid_size as f64;
    Ok((0..=grid_size + 2 * order).map(|j| lo + (j as f64 - order as f64) * h).collect())
}

/// Scratch-free evaluation of all `n_knots − order − 1` bases of order `order` at `x` into `out`
/// (and, when `deriv` is given, their derivatives). `work` must hold at least `n_knots − 1` values.
pub(crate) fn eval_bases(
    knots: &[f64],
    order: usize,
    x: f64,
    work: &mut [f64],
    out: &mut [f64],
    deriv: Option<&mut [f64]>,
) {
    let n_int = knots.len() - 1;
    let n_basis = n_int - order;
    let work = &mut work[..n_int];
    // Order 0: the indicator of the interval containing x.
    for (i, w) in work.iter_mut().enumerate() {
        *w = if knots[i] <= x && x < knots[i + 1] { 1.0 } else { 0.0 };
    }
    let mut deriv = deriv;
    for p in 1..=order {
        if p == order {
            if let Some(d) = deriv.as_deref_mut() {
                // Derivatives need the order-(k−1) values, which `work` holds right now.
                for i in 0..n_basis {
                    let l = knots[i + p] - knots[i];
                    let r = knots[i + p + 1] - knots[i + 1];
                    let a = if l > 0.0 { work[i] / l } else { 0.0 };
                    let b = if r > 0.0 { work[i + 1] / r } else { 0.0 };
                    d[i] = p as f64 * (a - b);
                }
            }
        }
        for i in 0..n_int - p {
            let l = knots[i + p] - knots[i];
            let r = knots[i + p + 1] - knots[i + 1];
            let a = if l > 0.0 { (x - knots[i]) / l * work[i] } else { 0.0 };
            let b = if r > 0.0 { (knots[i + p + 1] - x) / r * work[i + 1] } else { 0.0 };
            work[i] = a + b;
        }
    }
    if order == 0 {
        if let Some(d) = deriv {
            d[..n_basis].iter_mut().for_each(|v| *v = 0.0);
        }
    }
    out[..n_basis].copy_from_slice(&work[..n_basis]);
}

/// Bases of every input of a batch: `x: [n_batch × n_in]` (row-major values), `knots` the per-input
/// knot vectors concatenated (`n_in × n_knots`). Returns `[n_batch × n_in × n_basis]` row-major.
#[must_use]
pub(crate) fn batch_bases(x: &[f64], n_in: usize, knots: &[f64], n_knots: usize, order: usize) -> Vec<f64> {
    let n_basis = n_knots - order - 1;
    let mut out = vec![0.0; x.len() * n_basis];
    let mut work = vec![0.0; n_knots];
    for (idx, &xv) in x.iter().enumerate() {
        let i = idx % n_in;
        let kn = &knots[i * n_knots..(i + 1) * n_knots];
        eval_bases(kn, order, xv, &mut work, &mut out[idx * n_basis..(idx + 1) * n_basis], None);
    }
    out
}

fn batch_bases_deriv(x: &[f64], n_in: usize, knots: &[f64], n_knots: usize, order: usize) -> Vec<f64> {
    let n_basis = n_knots - order - 1;
    let mut out = vec![0.0; x.len() * n_basis];
    let mut scratch = vec![0.0; n_basis];
    let mut work = vec![0.0; n_knots];
    for (idx, &xv) in x.iter().enumerate() {
        let i = idx % n_in;
        let kn = &knots[i * n_knots..(i + 1) * n_knots];
        eval_bases(kn, order, xv, &mut work, &mut scratch, Some(&mut out[idx * n_basis..(idx + 1) * n_basis]));
    }
    out
}

/// The candle op `x: [n_batch × n_in] ↦ B(x): [n_batch × (n_in · n_basis)]` with a hand-written
/// backward (`∂/∂x_{b,i} = Σ_j g_{b,i,j} B'_j(x_{b,i})`). Works in `f32` and `f64`; the bases are
/// always computed in `f64`.
#[derive(Clone, Debug)]
pub(crate) struct SplineBasisOp {
    /// Per-input knot vectors, `n_in × n_knots`, row-major.
    pub knots: std::sync::Arc<Vec<f64>>,
    /// Number of inputs.
    pub n_in: usize,
    /// Knots per input.
    pub n_knots: usize,
    /// Spline order `k`.
    pub order: usize,
}

impl SplineBasisOp {
    fn n_basis(&self) -> usize {
        self.n_knots - self.order - 1
    }
}

fn storage_to_f64(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Vec<f64>> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("spline basis op needs a contiguous input".into()))?;
    match storage {
        CpuStorage::F64(v) => Ok(v[start..end].to_vec()),
        CpuStorage::F32(v) => Ok(v[start..end].iter().map(|&a| f64::from(a)).collect()),
        _ => Err(candle_core::Error::Msg("spline basis op supports f32 and f64 only".into())),
    }
}

impl CustomOp1 for SplineBasisOp {
    fn name(&self) -> &'static str {
        "kan-spline-basis"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims();
        if dims.len() != 2 || dims[1] != self.n_in {
            return Err(candle_core::Error::Msg(format!(
                "spline basis op: expected [batch, {}], got {dims:?}",
                self.n_in
            )));
        }
        let x = storage_to_f64(storage, layout)?;
        let out = batch_bases(&x, self.n_in, &self.knots, self.n_knots, self.order);
        let shape = Shape::from((dims[0], self.n_in * self.n_basis()));
        let st = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(out.iter().map(|&v| v as f32).collect()),
            _ => CpuStorage::F64(out),
        };
        Ok((st, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (n_batch, n_in) = arg.dims2()?;
        let x: Vec<f64> = arg.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let d = batch_bases_deriv(&x, self.n_in, &self.knots, self.n_knots, self.order);
        let g: Vec<f64> = grad_res.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let nb = self.n_basis();
        let gx: Vec<f64> =
            (0..x.len()).map(|idx| (0..nb).map(|j| g[idx * nb + j] * d[idx * nb + j]).sum::<f64>()).collect();
        Tensor::from_vec(gx, (n_batch, n_in), arg.device())?.to_dtype(arg.dtype()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent textbook recursion (no shared code with `eval_bases`).
    fn cox_de_boor(i: usize, p: usize, x: f64, t: &[f64]) -> f64 {
        if p == 0 {
            return if t[i] <= x && x < t[i + 1] { 1.0 } else { 0.0 };
        }
        let mut v = 0.0;
        if t[i + p] != t[i] {
            v += (x - t[i]) / (t[i + p] - t[i]) * cox_de_boor(i, p - 1, x, t);
        }
        if t[i + p + 1] != t[i + 1] {
            v += (t[i + p + 1] - x) / (t[i + p + 1] - t[i + 1]) * cox_de_boor(i + 1, p - 1, x, t);
        }
        v
    }

    fn knot_sets() -> Vec<(Vec<f64>, usize)> {
        let mut sets = vec![
            (uniform_knots(5, 3, -1.0, 1.0).unwrap(), 3),
            (uniform_knots(7, 2, -3.0, 0.5).unwrap(), 2),
            (uniform_knots(4, 1, 0.0, 2.0).unwrap(), 1),
        ];
        // A non-uniform knot vector (as produced by grid adaptation).
        sets.push((vec![-2.0, -1.5, -1.2, -1.0, -0.3, 0.0, 0.1, 0.8, 1.0, 1.6, 2.0, 2.2], 3));
        sets
    }

    #[test]
    fn bases_match_scalar_cox_de_boor_and_sum_to_one_inside() {
        for (t, k) in knot_sets() {
            let n_basis = t.len() - k - 1;
            let mut work = vec![0.0; t.len()];
            let mut out = vec![0.0; n_basis];
            for s in 0..=400 {
                let x = t[0] - 0.3 + (t[t.len() - 1] - t[0] + 0.6) * s as f64 / 400.0;
                eval_bases(&t, k, x, &mut work, &mut out, None);
                for (i, &v) in out.iter().enumerate() {
                    let r = cox_de_boor(i, k, x, &t);
                    assert!((v - r).abs() < 1e-12, "basis {i} at {x}: {v} vs {r}");
                }
                let inside = x >= t[k] && x < t[t.len() - 1 - k];
                let sum: f64 = out.iter().sum();
                if inside {
                    assert!((sum - 1.0).abs() < 1e-12, "partition of unity fails at {x}: {sum}");
                }
                if x < t[0] || x >= t[t.len() - 1] {
                    assert_eq!(sum, 0.0);
                }
            }
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for (t, k) in knot_sets() {
            let n_basis = t.len() - k - 1;
            let mut work = vec![0.0; t.len()];
            let (mut o1, mut o2, mut d, mut s) =
                (vec![0.0; n_basis], vec![0.0; n_basis], vec![0.0; n_basis], vec![0.0; n_basis]);
            for q in 0..97 {
                let x = t[k] + (t[t.len() - 1 - k] - t[k]) * (q as f64 + 0.37) / 97.0;
                // Skip points within the finite-difference step of a knot (kinks for k = 1).
                if t.iter().any(|tk| (tk - x).abs() < 1e-5) {
                    continue;
                }
                let e = 1e-7;
                eval_bases(&t, k, x, &mut work, &mut s, Some(&mut d));
                eval_bases(&t, k, x + e, &mut work, &mut o1, None);
                eval_bases(&t, k, x - e, &mut work, &mut o2, None);
                for i in 0..n_basis {
                    let fd = (o1[i] - o2[i]) / (2.0 * e);
                    assert!((fd - d[i]).abs() < 1e-5 * (1.0 + fd.abs()), "B'_{i} at {x}: fd {fd} vs {}", d[i]);
                }
            }
        }
    }
}
