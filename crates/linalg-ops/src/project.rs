//! Projections onto the constraint sets of beamforming problems, and constraint checks.

use ndarray::{Array2, ArrayView2};

use crate::{LinalgError, c64, check_finite};

/// Total transmit power `‖W‖_F²`.
#[must_use]
pub fn total_power(w: ArrayView2<'_, c64>) -> f64 {
    w.iter().map(|z| z.norm_sqr()).sum()
}

/// Scales `W` so that `‖W‖_F² = power` exactly (a projection onto the sphere of the total-power
/// constraint; for sum-rate problems full power is always optimal).
///
/// # Errors
/// [`LinalgError::InvalidParameter`] for `power ≤ 0` or non-finite; [`LinalgError::Degenerate`]
/// for an all-zero `W`; [`LinalgError::NonFinite`].
pub fn normalize_total_power(w: ArrayView2<'_, c64>, power: f64) -> Result<Array2<c64>, LinalgError> {
    check_power_value(power)?;
    check_finite(w, "precoder")?;
    let p = total_power(w);
    if p <= f64::MIN_POSITIVE {
        return Err(LinalgError::Degenerate("cannot normalise an all-zero precoder".into()));
    }
    Ok(w.mapv(|z| z * (power / p).sqrt()))
}

/// Scales `W` down to the power budget only when it exceeds it (projection onto the ball).
///
/// # Errors
/// As [`normalize_total_power`], without the all-zero case.
pub fn project_power_ball(w: ArrayView2<'_, c64>, power: f64) -> Result<Array2<c64>, LinalgError> {
    check_power_value(power)?;
    check_finite(w, "precoder")?;
    let p = total_power(w);
    Ok(if p > power { w.mapv(|z| z * (power / p).sqrt()) } else { w.to_owned() })
}

/// Element-wise projection onto the complex unit circle, `z ↦ z/|z|`; an exact zero maps to 1
/// (any unit-modulus value is a closest point; 1 is chosen for determinism).
///
/// # Errors
/// [`LinalgError::NonFinite`].
pub fn project_unit_modulus(f: ArrayView2<'_, c64>) -> Result<Array2<c64>, LinalgError> {
    check_finite(f, "analog precoder")?;
    Ok(f.mapv(|z| {
        let r = z.norm();
        if r > 0.0 { z / r } else { c64::new(1.0, 0.0) }
    }))
}

/// Checks `‖W‖_F² ≤ power (1 + rtol)`.
///
/// # Errors
/// [`LinalgError::PowerExceeded`] with both values.
pub fn check_power(w: ArrayView2<'_, c64>, power: f64, rtol: f64) -> Result<(), LinalgError> {
    check_power_value(power)?;
    let p = total_power(w);
    if !(p <= power * (1.0 + rtol)) {
        return Err(LinalgError::PowerExceeded { used: p, budget: power });
    }
    Ok(())
}

/// Checks `| |F_ij| − 1 | ≤ tol` for every entry.
///
/// # Errors
/// [`LinalgError::InvalidParameter`] naming the first offending entry.
pub fn check_unit_modulus(f: ArrayView2<'_, c64>, tol: f64) -> Result<(), LinalgError> {
    for ((i, j), z) in f.indexed_iter() {
        if !((z.norm() - 1.0).abs() <= tol) {
            return Err(LinalgError::InvalidParameter(format!("|F[{i},{j}]| = {} is not 1", z.norm())));
        }
    }
    Ok(())
}

pub(crate) fn check_power_value(power: f64) -> Result<(), LinalgError> {
    if !(power.is_finite() && power > 0.0) {
        return Err(LinalgError::InvalidParameter(format!("power budget must be finite and > 0, got {power}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::rand_mat;

    #[test]
    fn projections() {
        let w = rand_mat(5, 3, 1);
        let n = normalize_total_power(w.view(), 2.5).unwrap();
        assert!((total_power(n.view()) - 2.5).abs() < 1e-12);
        assert!(check_power(n.view(), 2.5, 1e-12).is_ok());
        assert!(check_power(n.view(), 2.0, 1e-12).is_err());
        let b = project_power_ball(n.view(), 10.0).unwrap();
        assert_eq!(b, n);
        let f = project_unit_modulus(w.view()).unwrap();
        assert!(check_unit_modulus(f.view(), 1e-12).is_ok());
        assert!(check_unit_modulus(w.view(), 1e-12).is_err());
        assert!(normalize_total_power(Array2::<c64>::zeros((2, 2)).view(), 1.0).is_err());
        assert!(normalize_total_power(w.view(), -1.0).is_err());
        assert!(normalize_total_power(w.view(), f64::NAN).is_err());
    }
}
