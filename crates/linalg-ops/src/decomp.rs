//! Complex decompositions: the only module in beamlab that calls LAPACK.
//!
//! Every function takes views, checks its input (square, finite, non-empty) and returns a typed
//! [`LinalgError`] instead of panicking. LAPACK is always called on a column-major (Fortran-order)
//! copy: ndarray-linalg's complex `eigh` returns conjugated eigenvectors on row-major input
//! (upstream issues #307/#368) and reads `UPLO` by memory order (#394); the copy costs O(n²) and
//! removes both traps. The tests check the residual of every decomposition.

use ndarray::{Array1, Array2, ArrayView2, ShapeBuilder, s};
use ndarray_linalg::{
    Cholesky, Diag, Eigh, FactorizeInto, InverseInto, Norm, ReciprocalConditionNum, SVD, Solve, SolveTriangular, UPLO,
};

use crate::{LinalgError, c64, check_finite, check_square};

/// Eigenvalues (ascending) and eigenvectors (columns).
pub type Eigen = (Array1<f64>, Array2<c64>);

/// Thin SVD factors `(U, s, V^H)`.
pub type Svd = (Array2<c64>, Array1<f64>, Array2<c64>);

/// Returns a column-major copy of `a` (the layout LAPACK sees natively).
fn fortran_copy(a: ArrayView2<'_, c64>) -> Array2<c64> {
    let mut f = Array2::<c64>::zeros(a.raw_dim().f());
    f.assign(&a);
    f
}

/// Hermitian part (A + A^H)/2, in column-major layout.
fn hermitian_part(a: ArrayView2<'_, c64>) -> Array2<c64> {
    let n = a.nrows();
    let mut f = Array2::<c64>::zeros((n, n).f());
    for j in 0..n {
        for i in 0..n {
            f[[i, j]] = (a[[i, j]] + a[[j, i]].conj()) * 0.5;
        }
    }
    f
}

fn lapack(e: ndarray_linalg::error::LinalgError) -> LinalgError {
    LinalgError::Lapack(e.to_string())
}

/// Eigendecomposition of a Hermitian matrix, `A = V diag(λ) V^H`, eigenvalues ascending.
///
/// Only the Hermitian part `(A + A^H)/2` is used. Returns `(λ, V)` with orthonormal columns of V.
///
/// # Errors
/// [`LinalgError::NotSquare`], [`LinalgError::Empty`], [`LinalgError::NonFinite`], or a LAPACK
/// failure.
pub fn self_adjoint_eigen(a: ArrayView2<'_, c64>) -> Result<Eigen, LinalgError> {
    check_square(a, "self_adjoint_eigen")?;
    check_finite(a, "self_adjoint_eigen")?;
    let f = hermitian_part(a);
    f.eigh(UPLO::Lower).map_err(lapack)
}

/// Batched [`self_adjoint_eigen`] over independent matrices.
///
/// # Errors
/// The first error of any member, tagged with its index.
pub fn self_adjoint_eigen_batch(mats: &[Array2<c64>]) -> Result<Vec<Eigen>, LinalgError> {
    mats.iter()
        .enumerate()
        .map(|(i, m)| self_adjoint_eigen(m.view()).map_err(|e| LinalgError::InBatch { index: i, source: Box::new(e) }))
        .collect()
}

/// Generalised Hermitian-definite eigenproblem `A v = λ B v` with `B` Hermitian positive definite.
///
/// Solved by reduction: `B = L L^H`, `C = L^{-1} A L^{-H}`, `C = U Λ U^H`, `V = L^{-H} U`; the
/// eigenvectors are B-orthonormal (`V^H B V = I`). Eigenvalues ascending.
///
/// # Errors
/// Shape errors, non-finite input, or [`LinalgError::NotPositiveDefinite`] when `B` is not HPD.
pub fn generalized_self_adjoint_eigen(a: ArrayView2<'_, c64>, b: ArrayView2<'_, c64>) -> Result<Eigen, LinalgError> {
    check_square(a, "generalized_self_adjoint_eigen (A)")?;
    check_square(b, "generalized_self_adjoint_eigen (B)")?;
    if a.nrows() != b.nrows() {
        return Err(LinalgError::ShapeMismatch {
            what: "generalized_self_adjoint_eigen",
            expected: format!("B of size {}x{}", a.nrows(), a.nrows()),
            found: format!("{}x{}", b.nrows(), b.ncols()),
        });
    }
    check_finite(a, "generalized_self_adjoint_eigen (A)")?;
    let l = cholesky(b)?;
    // Y = L^{-1} A, then C = (L^{-1} (L^{-1} A)^H)^H = L^{-1} A L^{-H}.
    let a_h = hermitian_part(a);
    let y = l.solve_triangular(UPLO::Lower, Diag::NonUnit, &a_h).map_err(lapack)?;
    let y_h = fortran_copy(y.t().mapv(|z| z.conj()).view());
    let c = l.solve_triangular(UPLO::Lower, Diag::NonUnit, &y_h).map_err(lapack)?;
    let (lambda, u) = self_adjoint_eigen(c.view())?;
    let l_h = fortran_copy(l.t().mapv(|z| z.conj()).view());
    let v = l_h.solve_triangular(UPLO::Upper, Diag::NonUnit, &fortran_copy(u.view())).map_err(lapack)?;
    Ok((lambda, v))
}

/// Cholesky factor `L` (lower triangular, `A = L L^H`) of a Hermitian positive definite matrix.
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`] when the factorisation breaks down; shape and finiteness
/// errors as usual.
pub fn cholesky(a: ArrayView2<'_, c64>) -> Result<Array2<c64>, LinalgError> {
    check_square(a, "cholesky")?;
    check_finite(a, "cholesky")?;
    let f = hermitian_part(a);
    f.cholesky(UPLO::Lower).map_err(|_| LinalgError::NotPositiveDefinite { what: "cholesky" })
}

/// Solves `A X = B` for Hermitian positive definite `A` via its Cholesky factor.
///
/// # Errors
/// As [`cholesky`], plus [`LinalgError::ShapeMismatch`] when `B` has the wrong number of rows.
pub fn cholesky_solve(a: ArrayView2<'_, c64>, b: ArrayView2<'_, c64>) -> Result<Array2<c64>, LinalgError> {
    let l = cholesky(a)?;
    if b.nrows() != a.nrows() {
        return Err(LinalgError::ShapeMismatch {
            what: "cholesky_solve",
            expected: format!("right-hand side with {} rows", a.nrows()),
            found: format!("{} rows", b.nrows()),
        });
    }
    check_finite(b, "cholesky_solve (B)")?;
    let y = l.solve_triangular(UPLO::Lower, Diag::NonUnit, &fortran_copy(b)).map_err(lapack)?;
    let l_h = fortran_copy(l.t().mapv(|z| z.conj()).view());
    l_h.solve_triangular(UPLO::Upper, Diag::NonUnit, &y).map_err(lapack)
}

/// Solves the general square system `A X = B` by LU with partial pivoting.
///
/// # Errors
/// [`LinalgError::Singular`] when `A` is (numerically) singular; shape and finiteness errors.
pub fn lu_solve(a: ArrayView2<'_, c64>, b: ArrayView2<'_, c64>) -> Result<Array2<c64>, LinalgError> {
    check_square(a, "lu_solve")?;
    check_finite(a, "lu_solve (A)")?;
    check_finite(b, "lu_solve (B)")?;
    if b.nrows() != a.nrows() {
        return Err(LinalgError::ShapeMismatch {
            what: "lu_solve",
            expected: format!("right-hand side with {} rows", a.nrows()),
            found: format!("{} rows", b.nrows()),
        });
    }
    let lu = lu_factor(a, "lu_solve")?;
    let mut x = Array2::<c64>::zeros((b.nrows(), b.ncols()).f());
    for j in 0..b.ncols() {
        let col = lu.solve(&b.column(j).to_owned()).map_err(|_| LinalgError::Singular { what: "lu_solve" })?;
        x.column_mut(j).assign(&col);
    }
    Ok(x)
}

/// LU factorisation with a singularity check: the reciprocal 1-norm condition number estimate
/// (LAPACK `zgecon`) must exceed 1e-14, since partial pivoting alone lets numerically singular
/// matrices through with meaningless results.
fn lu_factor(
    a: ArrayView2<'_, c64>,
    what: &'static str,
) -> Result<ndarray_linalg::LUFactorized<ndarray::OwnedRepr<c64>>, LinalgError> {
    let lu = fortran_copy(a).factorize_into().map_err(|_| LinalgError::Singular { what })?;
    let rcond = lu.rcond().map_err(|_| LinalgError::Singular { what })?;
    if !(rcond > 1e-14) {
        return Err(LinalgError::Singular { what });
    }
    Ok(lu)
}

/// Inverse of a general square matrix by LU.
///
/// # Errors
/// [`LinalgError::Singular`] for (numerically) singular input.
pub fn inverse(a: ArrayView2<'_, c64>) -> Result<Array2<c64>, LinalgError> {
    check_square(a, "inverse")?;
    check_finite(a, "inverse")?;
    let lu = lu_factor(a, "inverse")?;
    lu.inv_into().map_err(|_| LinalgError::Singular { what: "inverse" })
}

/// `ln det A` for Hermitian positive definite `A` (via Cholesky: `2 Σ ln L_ii`).
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`] when `A` is not HPD.
pub fn log_det_hpd(a: ArrayView2<'_, c64>) -> Result<f64, LinalgError> {
    let l = cholesky(a)?;
    Ok(2.0 * l.diag().iter().map(|z| z.re.ln()).sum::<f64>())
}

/// Thin singular value decomposition `A = U diag(s) V^H`, singular values descending.
///
/// Returns `(U [m×r], s [r], V^H [r×n])` with `r = min(m, n)`.
///
/// # Errors
/// Empty or non-finite input, or a LAPACK failure.
pub fn svd(a: ArrayView2<'_, c64>) -> Result<Svd, LinalgError> {
    if a.is_empty() {
        return Err(LinalgError::Empty { what: "svd" });
    }
    check_finite(a, "svd")?;
    let (u, s, vt) = fortran_copy(a).svd(true, true).map_err(lapack)?;
    let (u, vt) = match (u, vt) {
        (Some(u), Some(vt)) => (u, vt),
        _ => return Err(LinalgError::Lapack("svd returned no singular vectors".into())),
    };
    let r = s.len();
    Ok((u.slice(s![.., ..r]).to_owned(), s, vt.slice(s![..r, ..]).to_owned()))
}

/// Moore–Penrose pseudo-inverse; singular values below `rcond · s_max` are treated as zero.
///
/// # Errors
/// As [`svd`].
pub fn pinv(a: ArrayView2<'_, c64>, rcond: f64) -> Result<Array2<c64>, LinalgError> {
    let (u, s, vt) = svd(a)?;
    let smax = s.first().copied().unwrap_or(0.0);
    let mut out = Array2::<c64>::zeros((a.ncols(), a.nrows()));
    for (i, &si) in s.iter().enumerate() {
        if si > rcond * smax && si > 0.0 {
            let inv = 1.0 / si;
            for r in 0..a.ncols() {
                let v = vt[[i, r]].conj() * inv;
                for c in 0..a.nrows() {
                    out[[r, c]] += v * u[[c, i]].conj();
                }
            }
        }
    }
    Ok(out)
}

/// Frobenius norm `‖A‖_F`.
#[must_use]
pub fn frobenius_norm(a: ArrayView2<'_, c64>) -> f64 {
    a.norm_l2()
}

/// Spectral norm `‖A‖_2 = σ_max(A)`.
///
/// # Errors
/// As [`svd`].
pub fn spectral_norm(a: ArrayView2<'_, c64>) -> Result<f64, LinalgError> {
    Ok(svd(a)?.1.first().copied().unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{max_abs, rand_hermitian, rand_hpd, rand_mat};
    use ndarray::Array2;

    const EPS: f64 = f64::EPSILON;

    #[test]
    fn eigh_residual_row_and_column_major() {
        for &n in &[1usize, 2, 5, 17, 64] {
            let h = rand_hermitian(n, 11 + n as u64);
            let mut hf = Array2::<c64>::zeros((n, n).f());
            hf.assign(&h);
            for input in [h.view(), hf.view()] {
                let (lam, v) = self_adjoint_eigen(input).unwrap();
                let lhs = h.dot(&v);
                let rhs = &v * &lam.mapv(c64::from).insert_axis(ndarray::Axis(0));
                let bound = 8.0 * n as f64 * EPS * frobenius_norm(h.view());
                let res = frobenius_norm((&lhs - &rhs).view());
                assert!(res <= bound, "n={n} residual {res} > {bound}");
                let vhv = v.t().mapv(|z| z.conj()).dot(&v);
                assert!(max_abs(&(&vhv - &Array2::<c64>::eye(n))) < 1e-10);
                assert!(lam.windows(2).into_iter().all(|w| w[0] <= w[1]));
            }
        }
    }

    #[test]
    fn generalized_eigen_residual() {
        for &n in &[1usize, 3, 8, 20] {
            let a = rand_hermitian(n, 3 + n as u64);
            let b = rand_hpd(n, 5 + n as u64);
            let (lam, v) = generalized_self_adjoint_eigen(a.view(), b.view()).unwrap();
            let lhs = a.dot(&v);
            let rhs = b.dot(&v) * &lam.mapv(c64::from).insert_axis(ndarray::Axis(0));
            assert!(max_abs(&(&lhs - &rhs)) < 1e-9 * frobenius_norm(a.view()).max(1.0), "n={n}");
            let vbv = v.t().mapv(|z| z.conj()).dot(&b).dot(&v);
            assert!(max_abs(&(&vbv - &Array2::<c64>::eye(n))) < 1e-9);
        }
    }

    #[test]
    fn cholesky_and_solves_reconstruct() {
        for &n in &[1usize, 2, 9, 33] {
            let a = rand_hpd(n, 100 + n as u64);
            let l = cholesky(a.view()).unwrap();
            let llh = l.dot(&l.t().mapv(|z| z.conj()));
            assert!(max_abs(&(&llh - &a)) <= 8.0 * n as f64 * EPS * frobenius_norm(a.view()));
            let b = rand_mat(n, 3, 7);
            let x = cholesky_solve(a.view(), b.view()).unwrap();
            assert!(max_abs(&(&a.dot(&x) - &b)) < 1e-10 * frobenius_norm(a.view()));
            let g = rand_mat(n, n, 9);
            let x = lu_solve(g.view(), b.view()).unwrap();
            assert!(max_abs(&(&g.dot(&x) - &b)) < 1e-9);
            let gi = inverse(g.view()).unwrap();
            assert!(max_abs(&(&g.dot(&gi) - &Array2::<c64>::eye(n))) < 1e-9);
        }
    }

    #[test]
    fn log_det_matches_eigenvalues() {
        let a = rand_hpd(12, 4);
        let (lam, _) = self_adjoint_eigen(a.view()).unwrap();
        let expected: f64 = lam.iter().map(|l| l.ln()).sum();
        assert!((log_det_hpd(a.view()).unwrap() - expected).abs() < 1e-10);
    }

    #[test]
    fn svd_and_pinv() {
        for &(m, n) in &[(3usize, 7usize), (7, 3), (5, 5)] {
            let a = rand_mat(m, n, (m * n) as u64);
            let (u, s, vt) = svd(a.view()).unwrap();
            let us = &u * &s.mapv(c64::from).insert_axis(ndarray::Axis(0));
            assert!(max_abs(&(&us.dot(&vt) - &a)) <= 8.0 * (m.max(n) as f64) * EPS * frobenius_norm(a.view()));
            let p = pinv(a.view(), 1e-12).unwrap();
            // Penrose conditions 1 and 2.
            assert!(max_abs(&(&a.dot(&p).dot(&a) - &a)) < 1e-10);
            assert!(max_abs(&(&p.dot(&a).dot(&p) - &p)) < 1e-10);
            assert!((spectral_norm(a.view()).unwrap() - s[0]).abs() < 1e-12);
            let fro: f64 = s.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((frobenius_norm(a.view()) - fro).abs() < 1e-10);
        }
    }

    #[test]
    fn bad_input_is_typed_error() {
        let nan = Array2::from_elem((2, 2), c64::new(f64::NAN, 0.0));
        assert!(matches!(cholesky(nan.view()), Err(LinalgError::NonFinite { .. })));
        let rect = Array2::<c64>::zeros((2, 3));
        assert!(matches!(self_adjoint_eigen(rect.view()), Err(LinalgError::NotSquare { .. })));
        let empty = Array2::<c64>::zeros((0, 0));
        assert!(matches!(inverse(empty.view()), Err(LinalgError::Empty { .. })));
        let sing = Array2::<c64>::zeros((3, 3));
        assert!(matches!(inverse(sing.view()), Err(LinalgError::Singular { .. })));
        // Rank one, so LU succeeds with a tiny pivot: the condition estimate must catch it.
        let u = rand_mat(4, 1, 3);
        let rank1 = u.dot(&u.t().mapv(|z| z.conj()));
        assert!(matches!(inverse(rank1.view()), Err(LinalgError::Singular { .. })));
        assert!(matches!(lu_solve(rank1.view(), u.view()), Err(LinalgError::Singular { .. })));
        let neg = -Array2::<c64>::eye(3);
        assert!(matches!(cholesky(neg.view()), Err(LinalgError::NotPositiveDefinite { .. })));
    }
}
