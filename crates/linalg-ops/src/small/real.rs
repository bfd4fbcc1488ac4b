//! Real dense factorisations and solves on row-major `f64` buffers, allocation-free, for the small
//! systems of the learning crates' hot loops (B-spline least squares, implicit Jacobians, the
//! unrolled solver's real blocks) and the constant correlation matrices of the channel models.
//!
//! Layout: `a` is `n × n` row-major (`a[i * n + j]`), right-hand sides `b` are `n × k` row-major
//! (`b[i * k + j]`); each solve overwrites `b` with the solution and `a` with its factor.

use crate::LinalgError;

fn check_sizes(what: &'static str, a: &[f64], n: usize, b: &[f64], k: usize) -> Result<(), LinalgError> {
    if n == 0 {
        return Err(LinalgError::Empty { what });
    }
    if a.len() != n * n || b.len() != n * k {
        return Err(LinalgError::ShapeMismatch {
            what,
            expected: format!("a: {} and b: {} entries (n = {n}, k = {k})", n * n, n * k),
            found: format!("a: {}, b: {}", a.len(), b.len()),
        });
    }
    Ok(())
}

/// Solves `A X = B` in place by Gaussian elimination with partial pivoting (`a` becomes its `U`
/// factor, `b` becomes `X`).
///
/// A pivot whose magnitude is not above `rel_tol · max|A|` (or not finite) makes the system
/// numerically singular; `rel_tol = 0.0` accepts every non-zero pivot.
///
/// # Errors
/// [`LinalgError::Singular`] when a pivot fails; [`LinalgError::Empty`] /
/// [`LinalgError::ShapeMismatch`] for bad sizes.
pub fn lu_solve_in_place(a: &mut [f64], b: &mut [f64], n: usize, k: usize, rel_tol: f64) -> Result<(), LinalgError> {
    const WHAT: &str = "real LU solve";
    check_sizes(WHAT, a, n, b, k)?;
    let scale = if rel_tol > 0.0 { a.iter().fold(0.0f64, |m, x| m.max(x.abs())) } else { 0.0 };
    let floor = rel_tol * scale;
    for col in 0..n {
        let mut piv = col;
        let mut best = a[col * n + col].abs();
        for r in col + 1..n {
            let v = a[r * n + col].abs();
            if v > best {
                best = v;
                piv = r;
            }
        }
        if !(best > floor) || !best.is_finite() || best == 0.0 {
            return Err(LinalgError::Singular { what: WHAT });
        }
        if piv != col {
            for j in 0..n {
                a.swap(col * n + j, piv * n + j);
            }
            for j in 0..k {
                b.swap(col * k + j, piv * k + j);
            }
        }
        let d = a[col * n + col];
        for r in col + 1..n {
            let f = a[r * n + col] / d;
            if f == 0.0 {
                continue;
            }
            for j in col..n {
                a[r * n + j] -= f * a[col * n + j];
            }
            for j in 0..k {
                b[r * k + j] -= f * b[col * k + j];
            }
        }
    }
    for col in (0..n).rev() {
        let d = a[col * n + col];
        for j in 0..k {
            let mut s = b[col * k + j];
            for c in col + 1..n {
                s -= a[col * n + c] * b[c * k + j];
            }
            b[col * k + j] = s / d;
        }
    }
    Ok(())
}

/// Cholesky factorisation in place: the lower triangle of `a` becomes `L` with `A = L Lᵀ` (the
/// strict upper triangle is left as it was).
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`] when a pivot is not positive and finite.
pub fn cholesky_in_place(a: &mut [f64], n: usize) -> Result<(), LinalgError> {
    const WHAT: &str = "real Cholesky";
    if a.len() != n * n {
        return Err(LinalgError::ShapeMismatch {
            what: WHAT,
            expected: format!("{} entries (n = {n})", n * n),
            found: format!("{}", a.len()),
        });
    }
    for j in 0..n {
        let mut d = a[j * n + j];
        for p in 0..j {
            d -= a[j * n + p] * a[j * n + p];
        }
        if !(d > 0.0 && d.is_finite()) {
            return Err(LinalgError::NotPositiveDefinite { what: WHAT });
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for p in 0..j {
                s -= a[i * n + p] * a[j * n + p];
            }
            a[i * n + j] = s / d;
        }
    }
    Ok(())
}

/// Solves `A X = B` in place for symmetric positive definite `A` by Cholesky (`a` becomes `L` in
/// its lower triangle, `b` becomes `X`).
///
/// # Errors
/// [`LinalgError::NotPositiveDefinite`]; [`LinalgError::Empty`] / [`LinalgError::ShapeMismatch`]
/// for bad sizes.
pub fn spd_solve_in_place(a: &mut [f64], b: &mut [f64], n: usize, k: usize) -> Result<(), LinalgError> {
    check_sizes("real SPD solve", a, n, b, k)?;
    cholesky_in_place(a, n)?;
    for c in 0..k {
        for i in 0..n {
            let mut s = b[i * k + c];
            for p in 0..i {
                s -= a[i * n + p] * b[p * k + c];
            }
            b[i * k + c] = s / a[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = b[i * k + c];
            for p in i + 1..n {
                s -= a[p * n + i] * b[p * k + c];
            }
            b[i * k + c] = s / a[i * n + i];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rand_buf(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn matmul(a: &[f64], x: &[f64], n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0.0; n * k];
        for i in 0..n {
            for j in 0..k {
                out[i * k + j] = (0..n).map(|p| a[i * n + p] * x[p * k + j]).sum();
            }
        }
        out
    }

    fn spd(n: usize, seed: u64) -> Vec<f64> {
        let g = rand_buf(n * n, seed);
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] =
                    (0..n).map(|p| g[i * n + p] * g[j * n + p]).sum::<f64>() + if i == j { 0.5 } else { 0.0 };
            }
        }
        a
    }

    #[test]
    fn lu_solve_reproduces_the_right_hand_side() {
        for (n, k) in [(1, 1), (3, 2), (7, 4), (12, 1)] {
            let a = rand_buf(n * n, n as u64);
            let b = rand_buf(n * k, 100 + n as u64);
            let (mut f, mut x) = (a.clone(), b.clone());
            lu_solve_in_place(&mut f, &mut x, n, k, 1e-13).unwrap();
            let r = matmul(&a, &x, n, k);
            for (ri, bi) in r.iter().zip(&b) {
                assert!((ri - bi).abs() < 1e-10, "n = {n}: {ri} vs {bi}");
            }
        }
    }

    #[test]
    fn lu_solve_needs_pivoting_and_reports_singularity() {
        // A zero leading entry: fails without row exchanges.
        let mut a = vec![0.0, 1.0, 1.0, 0.0];
        let mut b = vec![2.0, 3.0];
        lu_solve_in_place(&mut a, &mut b, 2, 1, 0.0).unwrap();
        assert_eq!(b, vec![3.0, 2.0]);
        let mut s = vec![1.0, 2.0, 2.0, 4.0];
        let mut b = vec![1.0, 1.0];
        assert!(matches!(lu_solve_in_place(&mut s, &mut b, 2, 1, 1e-13), Err(LinalgError::Singular { .. })));
        let mut nan = vec![f64::NAN, 0.0, 0.0, 1.0];
        assert!(lu_solve_in_place(&mut nan, &mut [1.0, 1.0], 2, 1, 0.0).is_err());
        assert!(matches!(
            lu_solve_in_place(&mut [1.0; 4], &mut [1.0; 3], 2, 1, 0.0),
            Err(LinalgError::ShapeMismatch { .. })
        ));
        assert!(matches!(lu_solve_in_place(&mut [], &mut [], 0, 1, 0.0), Err(LinalgError::Empty { .. })));
    }

    #[test]
    fn spd_solve_and_cholesky_agree_with_the_definition() {
        for n in [1, 2, 5, 9] {
            let a = spd(n, 7 + n as u64);
            let b = rand_buf(n * 3, 3);
            let (mut f, mut x) = (a.clone(), b.clone());
            spd_solve_in_place(&mut f, &mut x, n, 3).unwrap();
            for (ri, bi) in matmul(&a, &x, n, 3).iter().zip(&b) {
                assert!((ri - bi).abs() < 1e-10);
            }
            // L Lᵀ = A from the lower triangle.
            for i in 0..n {
                for j in 0..=i {
                    let s: f64 = (0..=j).map(|p| f[i * n + p] * f[j * n + p]).sum();
                    assert!((s - a[i * n + j]).abs() < 1e-10);
                }
            }
        }
        let mut indef = vec![1.0, 2.0, 2.0, 1.0];
        assert!(matches!(cholesky_in_place(&mut indef, 2), Err(LinalgError::NotPositiveDefinite { .. })));
    }
}
