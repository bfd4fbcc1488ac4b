//! Small numerical helpers of the crate (quadratic forms, a dense real solver, outer products).

use beamlab_linalg_ops::c64;
use ndarray::{Array1, Array2, ArrayView1};

/// `Re(x^H A x)`.
pub(crate) fn quad(a: &Array2<c64>, x: ArrayView1<'_, c64>) -> f64 {
    let n = x.len();
    let mut acc = c64::new(0.0, 0.0);
    for i in 0..n {
        let mut row = c64::new(0.0, 0.0);
        for j in 0..n {
            row += a[[i, j]] * x[j];
        }
        acc += x[i].conj() * row;
    }
    acc.re
}

/// `x y^H`.
pub(crate) fn outer(x: ArrayView1<'_, c64>, y: ArrayView1<'_, c64>) -> Array2<c64> {
    Array2::from_shape_fn((x.len(), y.len()), |(i, j)| x[i] * y[j].conj())
}

/// `(X + X^H) / 2`.
pub(crate) fn herm(x: &Array2<c64>) -> Array2<c64> {
    Array2::from_shape_fn(x.dim(), |(i, j)| (x[[i, j]] + x[[j, i]].conj()) * 0.5)
}

/// `A^H`.
pub(crate) fn adjoint(a: &Array2<c64>) -> Array2<c64> {
    a.t().mapv(|z| z.conj())
}

/// Solves the dense real system `A x = b` by Gaussian elimination with partial pivoting.
///
/// Returns `None` when a pivot falls below `1e-13 · max|A|` (numerically singular) or the input is
/// not finite. Meant for the small systems of this crate (`K × K` power systems, the `2MK × 2MK`
/// implicit Jacobian); larger systems belong in linalg-ops.
pub(crate) fn solve_real(mut a: Array2<f64>, mut b: Array1<f64>) -> Option<Array1<f64>> {
    let n = b.len();
    if a.dim() != (n, n) {
        return None;
    }
    let scale = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if !(scale.is_finite() && scale > 0.0) || b.iter().any(|x| !x.is_finite()) {
        return None;
    }
    for col in 0..n {
        let (piv, val) =
            (col..n).map(|r| (r, a[[r, col]].abs())).fold((col, -1.0), |m, x| if x.1 > m.1 { x } else { m });
        if !(val > 1e-13 * scale) {
            return None;
        }
        if piv != col {
            for c in 0..n {
                a.swap([piv, c], [col, c]);
            }
            b.swap(piv, col);
        }
        let d = a[[col, col]];
        for r in col + 1..n {
            let f = a[[r, col]] / d;
            if f != 0.0 {
                for c in col..n {
                    a[[r, c]] -= f * a[[col, c]];
                }
                b[r] -= f * b[col];
            }
        }
    }
    let mut x = Array1::zeros(n);
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| a[[r, c]] * x[c]).sum();
        x[r] = (b[r] - s) / a[[r, r]];
    }
    x.iter().all(|v: &f64| v.is_finite()).then_some(x)
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::c64;
    use ndarray::{Array1, Array2};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    pub fn rand_vec(n: usize, seed: u64) -> Array1<c64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array1::from_shape_fn(n, |_| {
            let re: f64 = StandardNormal.sample(&mut rng);
            let im: f64 = StandardNormal.sample(&mut rng);
            c64::new(re, im) * std::f64::consts::FRAC_1_SQRT_2
        })
    }

    pub fn rand_mat(m: usize, n: usize, seed: u64) -> Array2<c64> {
        let v = rand_vec(m * n, seed);
        Array2::from_shape_fn((m, n), |(i, j)| v[i * n + j])
    }

    pub fn rand_hpd(n: usize, seed: u64) -> Array2<c64> {
        let a = rand_mat(n, n, seed);
        a.dot(&a.t().mapv(|z| z.conj())) + Array2::<c64>::eye(n) * c64::from(0.1)
    }

    pub fn rand_hermitian(n: usize, seed: u64) -> Array2<c64> {
        let a = rand_mat(n, n, seed);
        (&a + &a.t().mapv(|z| z.conj())).mapv(|z| z * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn real_solver_solves_and_detects_singularity() {
        let a = array![[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [3.0, 0.0, 1.0]];
        let x = array![1.0, -2.0, 0.5];
        let b = a.dot(&x);
        let sol = solve_real(a, b).unwrap();
        assert!(sol.iter().zip(&x).all(|(s, t)| (s - t).abs() < 1e-13));
        assert!(solve_real(array![[1.0, 2.0], [2.0, 4.0]], array![1.0, 1.0]).is_none());
        assert!(solve_real(array![[f64::NAN]], array![1.0]).is_none());
    }
}
