//! Small numerical helpers of the crate (quadratic forms, outer products, a row-major adapter to
//! linalg-ops' real LU solve).

use beamlab_linalg_ops::c64;
use beamlab_linalg_ops::small::real::lu_solve_in_place;
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

/// Solves the dense real system `A x = b` with linalg-ops' LU with partial pivoting
/// ([`lu_solve_in_place`], relative pivot threshold 1e-13) on a row-major copy.
///
/// Returns `None` when the system is numerically singular or an input or the solution is not
/// finite. Meant for the small systems of this crate (`K × K` power systems, the `2MK × 2MK`
/// implicit Jacobian).
pub(crate) fn lu_solve(a: Array2<f64>, b: Array1<f64>) -> Option<Array1<f64>> {
    let n = b.len();
    if a.dim() != (n, n) || b.iter().any(|x| !x.is_finite()) || a.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut a_rows: Vec<f64> = a.iter().copied().collect();
    let mut x = b.to_vec();
    lu_solve_in_place(&mut a_rows, &mut x, n, 1, 1e-13).ok()?;
    x.iter().all(|v| v.is_finite()).then(|| Array1::from(x))
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
        let sol = lu_solve(a.t().to_owned(), a.t().dot(&x)).unwrap();
        assert!(sol.iter().zip(&x).all(|(s, t)| (s - t).abs() < 1e-13));
        let sol = lu_solve(a, b).unwrap();
        assert!(sol.iter().zip(&x).all(|(s, t)| (s - t).abs() < 1e-13));
        assert!(lu_solve(array![[1.0, 2.0], [2.0, 4.0]], array![1.0, 1.0]).is_none());
        assert!(lu_solve(array![[f64::NAN]], array![1.0]).is_none());
    }
}
