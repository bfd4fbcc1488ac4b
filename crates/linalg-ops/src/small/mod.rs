//! Allocation-free kernels for the tiny Hermitian systems of the rate maths (`N_k × N_k`,
//! typically 1–4), where a LAPACK call costs more than the arithmetic, and (in [`real`]) the real
//! row-major factorisations of the learning crates' small dense systems.

pub mod real;
pub mod split;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::{LinalgError, c64};

/// Solves `C x = b` in place for Hermitian positive definite `C` (overwritten by its Cholesky
/// factor in the lower triangle; `b` becomes `x`).
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`] when a pivot is not positive and finite.
pub fn hpd_solve_in_place(c: &mut Array2<c64>, b: &mut Array1<c64>) -> Result<(), LinalgError> {
    let n = c.nrows();
    // Cholesky, lower triangle.
    for j in 0..n {
        let mut d = c[[j, j]].re;
        for p in 0..j {
            d -= c[[j, p]].norm_sqr();
        }
        if !(d.is_finite() && d > 0.0) {
            return Err(LinalgError::NotPositiveDefinite { what: "interference-plus-noise covariance" });
        }
        let d = d.sqrt();
        c[[j, j]] = c64::new(d, 0.0);
        for i in (j + 1)..n {
            let mut s = c[[i, j]];
            for p in 0..j {
                s -= c[[i, p]] * c[[j, p]].conj();
            }
            c[[i, j]] = s / d;
        }
    }
    // Forward: L y = b.
    for i in 0..n {
        let mut s = b[i];
        for p in 0..i {
            s -= c[[i, p]] * b[p];
        }
        b[i] = s / c[[i, i]].re;
    }
    // Backward: L^H x = y.
    for i in (0..n).rev() {
        let mut s = b[i];
        for p in (i + 1)..n {
            s -= c[[p, i]].conj() * b[p];
        }
        b[i] = s / c[[i, i]].re;
    }
    Ok(())
}

/// Solves `C x = b` for a small Hermitian positive definite `C` without calling LAPACK (for the
/// `N_k × N_k` systems of multi-antenna users; O(n³) with tiny constants).
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`], or shape/finiteness errors.
pub fn small_hpd_solve(c: ArrayView2<'_, c64>, b: ArrayView1<'_, c64>) -> Result<Array1<c64>, LinalgError> {
    crate::check_square(c, "small_hpd_solve")?;
    crate::check_finite(c, "small_hpd_solve")?;
    if b.len() != c.nrows() {
        return Err(LinalgError::ShapeMismatch {
            what: "small_hpd_solve",
            expected: format!("{} entries", c.nrows()),
            found: format!("{}", b.len()),
        });
    }
    let mut cc = c.to_owned();
    let mut x = b.to_owned();
    hpd_solve_in_place(&mut cc, &mut x)?;
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{max_abs, rand_hpd, rand_mat};

    #[test]
    fn matches_lapack_cholesky_solve() {
        for n in 1..6 {
            let a = rand_hpd(n, n as u64);
            let b = rand_mat(n, 1, 3).column(0).to_owned();
            let mut c = a.clone();
            let mut x = b.clone();
            hpd_solve_in_place(&mut c, &mut x).unwrap();
            let r = a.dot(&x) - &b;
            assert!(max_abs(&r.insert_axis(ndarray::Axis(1))) < 1e-12);
        }
        let mut z = Array2::<c64>::zeros((2, 2));
        let mut b = Array1::<c64>::ones(2);
        assert!(hpd_solve_in_place(&mut z, &mut b).is_err());
    }
}
