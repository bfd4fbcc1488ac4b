//! Data models of the outage experiments (spec §6).
//!
//! - Covariances: per-axis ULA small-angular-spread Laplacian model
//!   `[R(φ, σ)]_{mn} = e^{jπ(m−n) sin φ} / (1 + (σ²/2)(π(m−n) cos φ)²)` (the characteristic function
//!   of a Laplacian angle spread with standard deviation `σ` around `φ`, hence positive
//!   semidefinite, unit diagonal); UPA covariance `R = R^{(1)}(φ1) ⊗ R^{(2)}(φ2)`, `[N × N]`,
//!   `N = N1 N2`. Channels `h = R^{1/2} g`, `g ~ CN(0, I_N)`.
//! - Noisy MMSE estimation (55) with pilot power `ρ`: `y = √ρ h + n`, `n ~ CN(0, I)`,
//!   `ĥ = √ρ R (ρR + I)^{-1} y`; the error `e = h − ĥ` is independent of `y` with covariance
//!   `C_e = R − ρ R (ρR + I)^{-1} R`, so the posterior is `h | y ~ CN(ĥ, C_e)`.
//! - Type-II-like DFT feedback quantisation with `L` kept coefficients ([`dft_quantise`]).
//! - Constraint groups: each group fixes how the CSI is degraded (a pilot power, a uniform pilot
//!   power range, or a feedback level); outage constraints are imposed per group.
//! - Statistical-CSI systems of Table 4 ([`StatInstance`], [`draw_stat_instance`]): `T_s` samples of
//!   the same users.

use beamlab_linalg_ops::{c64, cholesky_solve, self_adjoint_eigen};
use ndarray::{Array1, Array2, ArrayView1};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::Error;
use crate::util::adjoint;

mod statistical;

pub use statistical::{StatInstance, draw_stat_instance, sample_covariance};

/// The oversampled 2-D DFT codebook `[N × O1 N1 · O2 N2]`, `N = N1 N2`:
/// `c(i1, i2) = f_{N1}(i1 / (O1 N1)) ⊗ f_{N2}(i2 / (O2 N2)) / √N`, `f_n(u) = [e^{j2πul}]_{l<n}`,
/// column index `i1 · O2 N2 + i2`. With `O1 = O2 = 1` the columns are orthonormal.
///
/// # Errors
/// [`Error::InvalidParameter`] naming a zero dimension.
pub fn dft_codebook(n1: usize, n2: usize, o1: usize, o2: usize) -> Result<Array2<c64>, Error> {
    for (name, d) in [("n1", n1), ("n2", n2), ("o1", o1), ("o2", o2)] {
        if d == 0 {
            return Err(Error::param(name, format!("codebook dimensions must be >= 1, got {n1}x{n2}, O = {o1}x{o2}")));
        }
    }
    let (c1, c2) = (o1 * n1, o2 * n2);
    let n = n1 * n2;
    let scale = 1.0 / (n as f64).sqrt();
    Ok(Array2::from_shape_fn((n, c1 * c2), |(row, col)| {
        let (l1, l2) = (row / n2, row % n2);
        let (i1, i2) = (col / c2, col % c2);
        let phase =
            2.0 * std::f64::consts::PI * (i1 as f64 * l1 as f64 / c1 as f64 + i2 as f64 * l2 as f64 / c2 as f64);
        c64::from_polar(scale, phase)
    }))
}

/// Laplacian small-spread ULA covariance `[n × n]` at mean angle `phi` and spread `sigma` (radians).
fn ula_laplacian_cov(n: usize, phi: f64, sigma: f64) -> Array2<c64> {
    use std::f64::consts::PI;
    Array2::from_shape_fn((n, n), |(m, l)| {
        let d = m as f64 - l as f64;
        let att = 1.0 / (1.0 + 0.5 * sigma * sigma * (PI * d * phi.cos()).powi(2));
        c64::from_polar(att, PI * d * phi.sin())
    })
}

/// Kronecker product `a ⊗ b`.
fn kron(a: &Array2<c64>, b: &Array2<c64>) -> Array2<c64> {
    let (ra, ca) = a.dim();
    let (rb, cb) = b.dim();
    Array2::from_shape_fn((ra * rb, ca * cb), |(i, j)| a[[i / rb, j / cb]] * b[[i % rb, j % cb]])
}

/// UPA covariance `R^{(1)}(φ1, σ) ⊗ R^{(2)}(φ2, σ)`, `[n1 n2 × n1 n2]` (angles in radians).
#[must_use]
pub fn upa_cov(n1: usize, n2: usize, phi1: f64, phi2: f64, sigma: f64) -> Array2<c64> {
    kron(&ula_laplacian_cov(n1, phi1, sigma), &ula_laplacian_cov(n2, phi2, sigma))
}

/// Hermitian positive-semidefinite square root `R^{1/2}` (negative eigenvalues from rounding are
/// clipped to zero).
///
/// # Errors
/// Linear-algebra errors (non-square, non-finite input).
pub fn psd_sqrt(r: &Array2<c64>) -> Result<Array2<c64>, Error> {
    let (lambda, v) = self_adjoint_eigen(r.view())?;
    let n = lambda.len();
    let mut vs = v.clone();
    for j in 0..n {
        let s = lambda[j].max(0.0).sqrt();
        vs.column_mut(j).mapv_inplace(|z| z * s);
    }
    Ok(vs.dot(&adjoint(&v)))
}

/// `n` i.i.d. `CN(0, 1)` entries.
pub fn complex_normal<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Array1<c64> {
    Array1::from_shape_fn(n, |_| {
        let re: f64 = StandardNormal.sample(rng);
        let im: f64 = StandardNormal.sample(rng);
        c64::new(re, im) * std::f64::consts::FRAC_1_SQRT_2
    })
}

/// The linear MMSE filter and error covariance for pilot power `rho` (linear, ≥ 0):
/// `(F, C_e)` with `ĥ = F y`, `F = √ρ R (ρR + I)^{-1}`, `C_e = R − ρ R (ρR + I)^{-1} R`.
///
/// # Errors
/// [`Error::InvalidParameter`] for a negative or non-finite `rho`, [`Error::Empty`] or
/// [`Error::ShapeMismatch`] for an empty or non-square `R`; linear-algebra errors.
fn mmse_filter(r: &Array2<c64>, rho: f64) -> Result<(Array2<c64>, Array2<c64>), Error> {
    if !(rho.is_finite() && rho >= 0.0) {
        return Err(Error::param("rho", format!("pilot power must be finite and >= 0, got {rho}")));
    }
    if r.is_empty() {
        return Err(Error::Empty { what: "MMSE filter covariance" });
    }
    if r.nrows() != r.ncols() {
        return Err(Error::shape("MMSE filter covariance", "a square matrix", format!("{:?}", r.dim())));
    }
    let n = r.nrows();
    let a = r.mapv(|z| z * rho) + Array2::<c64>::eye(n);
    // (ρR + I)^{-1} R = R (ρR + I)^{-1}: the two commute.
    let x = cholesky_solve(a.view(), r.view())?;
    let f = adjoint(&x).mapv(|z| z * rho.sqrt());
    let err = crate::util::herm(&(r - &r.dot(&x).mapv(|z| z * rho)));
    Ok((f, err))
}

/// A channel estimate with its posterior error covariance.
#[derive(Clone, Debug, PartialEq)]
struct ChannelEstimate {
    /// `ĥ: [N]`.
    h_est: Array1<c64>,
    /// `C_e: [N × N]`, the covariance of `h − ĥ` (and of the posterior `h | ĥ`).
    err_cov: Array2<c64>,
}

/// Noisy MMSE estimate (55) of `h` from one pilot observation with power `rho` (linear).
///
/// # Errors
/// As [`mmse_filter`], plus [`Error::ShapeMismatch`] when `h` does not match `R`.
fn mmse_estimate<R: Rng + ?Sized>(
    r: &Array2<c64>,
    h: ArrayView1<'_, c64>,
    rho: f64,
    rng: &mut R,
) -> Result<ChannelEstimate, Error> {
    if h.len() != r.nrows() {
        return Err(Error::shape("channel length (covariance rows)", r.nrows(), h.len()));
    }
    let (f, err_cov) = mmse_filter(r, rho)?;
    let y = h.mapv(|z| z * rho.sqrt()) + complex_normal(h.len(), rng);
    Ok(ChannelEstimate { h_est: f.dot(&y), err_cov })
}

/// Type-II-like DFT feedback quantisation of `h: [n1 n2]` with `n_keep` coefficients.
///
/// The `O1 × O2`-oversampled 2-D DFT is split into `O1 O2` orthonormal bases
/// (`c(s1 + O1 l1, s2 + O2 l2)`, `l1 < n1`, `l2 < n2`). In each basis the `n_keep` strongest
/// coefficients are kept; relative to the strongest, amplitudes are quantised to
/// `{(1/2)^{n/2}, n = 0..7} ∪ {0}` (nearest in dB; 0 below half a step under the last level) and
/// phases to QPSK. The strongest coefficient is the reference: its amplitude and phase are sent
/// unquantised (decision, docs/gnn-unroll.md). The reconstruction with the least `‖h − ĥ‖` wins.
///
/// # Errors
/// [`Error::InvalidParameter`] for zero dimensions or `n_keep = 0`, [`Error::ShapeMismatch`] when
/// `h` is not of length `n1 n2`, [`Error::NonFinite`] for a non-finite `h`.
pub fn dft_quantise(
    h: ArrayView1<'_, c64>,
    n1: usize,
    n2: usize,
    o1: usize,
    o2: usize,
    n_keep: usize,
) -> Result<Array1<c64>, Error> {
    let n = n1 * n2;
    if n_keep == 0 {
        return Err(Error::param("n_keep", "at least one DFT coefficient must be kept, got 0"));
    }
    let codebook = dft_codebook(n1, n2, o1, o2)?;
    if h.len() != n {
        return Err(Error::shape("quantised channel length (n1 n2)", n, h.len()));
    }
    if h.iter().any(|z| !(z.re.is_finite() && z.im.is_finite())) {
        return Err(Error::NonFinite { what: "channel to quantise" });
    }
    let c2 = o2 * n2;
    let levels: Vec<f64> = (0..8).map(|k| 0.5f64.powf(k as f64 / 2.0)).collect();
    let zero_below = 0.5f64.powf(7.25);
    let mut best: Option<(f64, Array1<c64>)> = None;
    for s1 in 0..o1 {
        for s2 in 0..o2 {
            let cols: Vec<usize> =
                (0..n1).flat_map(|l1| (0..n2).map(move |l2| (s1 + o1 * l1) * c2 + s2 + o2 * l2)).collect();
            let basis = codebook.select(ndarray::Axis(1), &cols);
            let coef = adjoint(&basis).dot(&h);
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| coef[b].norm().total_cmp(&coef[a].norm()));
            let strongest = coef[order[0]];
            let (a0, ph0) = (strongest.norm(), strongest.arg());
            let mut q = Array1::<c64>::zeros(n);
            if a0 > 0.0 {
                q[order[0]] = strongest;
                for &i in order.iter().take(n_keep).skip(1) {
                    let rel = coef[i].norm() / a0;
                    let amp = if rel < zero_below {
                        0.0
                    } else {
                        *levels
                            .iter()
                            .min_by(|a, b| (a.ln() - rel.ln()).abs().total_cmp(&(b.ln() - rel.ln()).abs()))
                            .unwrap_or(&0.0)
                    };
                    let dphi = coef[i].arg() - ph0;
                    let qphi = (dphi / std::f64::consts::FRAC_PI_2).round() * std::f64::consts::FRAC_PI_2;
                    q[i] = c64::from_polar(amp * a0, ph0 + qphi);
                }
            }
            let rec = basis.dot(&q);
            let err: f64 = rec.iter().zip(h.iter()).map(|(a, b)| (a - b).norm_sqr()).sum();
            if best.as_ref().is_none_or(|(e, _)| err < *e) {
                best = Some((err, rec));
            }
        }
    }
    // `o1, o2 >= 1` (checked by `dft_codebook`), so at least one basis was tried.
    best.map(|(_, r)| r).ok_or(Error::Empty { what: "DFT bases" })
}

/// How a constraint group degrades the CSI.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CsiModel {
    /// Noisy MMSE estimate with pilot power drawn uniformly in dB from `[lo, hi]` (`lo = hi` fixes it).
    Pilot {
        /// Lower pilot power (dB).
        lo_db: f64,
        /// Upper pilot power (dB).
        hi_db: f64,
    },
    /// DFT feedback with `n_keep` coefficients (oversampling 4 × 4).
    Quantised {
        /// `L`.
        n_keep: usize,
    },
}

/// The scenario of one data set (spec §6–7).
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// UPA elements per axis `(N1, N2)`.
    pub n_antennas: (usize, usize),
    /// Users per instance `K`.
    pub n_users: usize,
    /// Angular spread `σ` (degrees).
    pub angular_spread_deg: f64,
    /// Mean angles are uniform in `±max_angle_deg` on both axes.
    pub max_angle_deg: f64,
    /// SINR targets uniform in dB on `[lo, hi]`.
    pub target_db: (f64, f64),
}

impl Scenario {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the field: zero array size or users, an inverted or
    /// non-finite target range, a negative or non-finite angular spread or maximum angle.
    pub fn check(&self) -> Result<(), Error> {
        let (n1, n2) = self.n_antennas;
        if n1 == 0 || n2 == 0 {
            return Err(Error::param("n_antennas", format!("UPA sizes must be >= 1, got {n1}x{n2}")));
        }
        if self.n_users == 0 {
            return Err(Error::param("n_users", "at least one user, got 0"));
        }
        let (lo, hi) = self.target_db;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::param("target_db", format!("[{lo}, {hi}] dB must be finite and ordered")));
        }
        if !(self.angular_spread_deg.is_finite() && self.angular_spread_deg >= 0.0) {
            return Err(Error::param(
                "angular_spread_deg",
                format!("must be finite and >= 0, got {}", self.angular_spread_deg),
            ));
        }
        if !self.max_angle_deg.is_finite() {
            return Err(Error::param("max_angle_deg", format!("must be finite, got {}", self.max_angle_deg)));
        }
        Ok(())
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Self { n_antennas: (4, 4), n_users: 3, angular_spread_deg: 10.0, max_angle_deg: 60.0, target_db: (0.0, 10.0) }
    }
}

/// One outage-experiment instance: true channels, the transmitter's view and the targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// Constraint group index.
    pub group: usize,
    /// Channel covariances `R_k: [N × N]`.
    pub cov: Vec<Array2<c64>>,
    /// True channels `h_k: [N]`.
    pub h: Vec<Array1<c64>>,
    /// Estimated / fed-back channels `ĥ_k: [N]`.
    pub h_est: Vec<Array1<c64>>,
    /// Posterior error covariances `C_e,k` (pilot model only).
    pub err_cov: Option<Vec<Array2<c64>>>,
    /// SINR targets `γ_k` (linear).
    pub targets: Vec<f64>,
    /// Side information `ζ`: the pilot power (linear) or the number of kept coefficients.
    pub zeta: f64,
}

/// Draws one instance of `scenario` with the CSI model of `csi`.
///
/// # Errors
/// [`Error::InvalidParameter`] naming the scenario or CSI-model field that is out of range (zero
/// sizes, inverted or non-finite ranges, `n_keep = 0`); linear-algebra errors.
pub fn draw_instance<R: Rng + ?Sized>(
    scenario: &Scenario,
    csi: &CsiModel,
    group: usize,
    rng: &mut R,
) -> Result<Instance, Error> {
    scenario.check()?;
    let (n1, n2) = scenario.n_antennas;
    let (t_lo, t_hi) = scenario.target_db;
    let sigma = scenario.angular_spread_deg.to_radians();
    let max_angle = scenario.max_angle_deg.to_radians().abs();
    let zeta = match csi {
        CsiModel::Pilot { lo_db, hi_db } if lo_db <= hi_db && lo_db.is_finite() && hi_db.is_finite() => {
            10f64.powf(rng.random_range(*lo_db..=*hi_db) / 10.0)
        }
        CsiModel::Pilot { lo_db, hi_db } => {
            return Err(Error::param("lo_db", format!("pilot range [{lo_db}, {hi_db}] dB must be finite and ordered")));
        }
        CsiModel::Quantised { n_keep } if *n_keep >= 1 => *n_keep as f64,
        CsiModel::Quantised { .. } => {
            return Err(Error::param("n_keep", "at least one DFT coefficient must be kept, got 0"));
        }
    };
    let (mut cov, mut h, mut h_est, mut errs, mut targets) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..scenario.n_users {
        let phi1 = rng.random_range(-max_angle..=max_angle);
        let phi2 = rng.random_range(-max_angle..=max_angle);
        let r = upa_cov(n1, n2, phi1, phi2, sigma);
        let hk = psd_sqrt(&r)?.dot(&complex_normal(n1 * n2, rng));
        match csi {
            CsiModel::Pilot { .. } => {
                let est = mmse_estimate(&r, hk.view(), zeta, rng)?;
                h_est.push(est.h_est);
                errs.push(est.err_cov);
            }
            CsiModel::Quantised { n_keep } => h_est.push(dft_quantise(hk.view(), n1, n2, 4, 4, *n_keep)?),
        }
        targets.push(10f64.powf(rng.random_range(t_lo..=t_hi) / 10.0));
        cov.push(r);
        h.push(hk);
    }
    let err_cov = matches!(csi, CsiModel::Pilot { .. }).then_some(errs);
    Ok(Instance { group, cov, h, h_est, err_cov, targets, zeta })
}

/// The pilot-power constraint groups of spec §5.2: one group per fixed pilot power in `rho_db`,
/// then one group with the pilot power uniform between the smallest and the largest.
#[must_use]
pub fn pilot_groups(rho_db: &[f64]) -> Vec<CsiModel> {
    let mut g: Vec<CsiModel> = rho_db.iter().map(|&r| CsiModel::Pilot { lo_db: r, hi_db: r }).collect();
    if let (Some(lo), Some(hi)) = (rho_db.iter().copied().reduce(f64::min), rho_db.iter().copied().reduce(f64::max)) {
        g.push(CsiModel::Pilot { lo_db: lo, hi_db: hi });
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::rand_hpd;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn min_eig(r: &Array2<c64>) -> f64 {
        self_adjoint_eigen(r.view()).unwrap().0[0]
    }

    fn max_abs(a: &Array2<c64>) -> f64 {
        a.iter().map(|z| z.norm()).fold(0.0, f64::max)
    }

    #[test]
    fn covariances_are_psd_hermitian_with_unit_diagonal() {
        let r = upa_cov(4, 4, 0.3, -0.9, 10f64.to_radians());
        assert_eq!(r.dim(), (16, 16));
        assert!(max_abs(&(&r - &adjoint(&r))) < 1e-14);
        assert!(r.diag().iter().all(|z| (z - c64::new(1.0, 0.0)).norm() < 1e-14));
        assert!(min_eig(&r) > -1e-12);
        // Zero spread: rank one (a steering vector outer product).
        let r0 = upa_cov(4, 4, 0.3, -0.9, 0.0);
        let ev = self_adjoint_eigen(r0.view()).unwrap().0;
        assert!((ev[15] - 16.0).abs() < 1e-10 && ev[14].abs() < 1e-10);
        let s = psd_sqrt(&r).unwrap();
        assert!(max_abs(&(s.dot(&s) - &r)) < 1e-10);
    }

    #[test]
    fn mmse_error_covariance_identities() {
        let r = rand_hpd(5, 3);
        for rho in [0.0, 0.5, 3.0, 100.0] {
            let (f, ce) = mmse_filter(&r, rho).unwrap();
            let n = 5;
            // E[(h − Fy)(h − Fy)^H] with y = √ρ h + n.
            let cov_y = r.mapv(|z| z * rho) + Array2::<c64>::eye(n);
            let cross = r.mapv(|z| z * rho.sqrt()); // E[h y^H]
            let direct = &r - &f.dot(&adjoint(&cross)) - &cross.dot(&adjoint(&f)) + f.dot(&cov_y).dot(&adjoint(&f));
            assert!(max_abs(&(&direct - &ce)) < 1e-10, "rho {rho}");
            // Orthogonality principle: E[(h − ĥ) y^H] = 0.
            assert!(max_abs(&(&cross - &f.dot(&cov_y))) < 1e-10);
            // Equivalent form C_e = (R^{-1} + ρ I)^{-1}.
            let alt = beamlab_linalg_ops::inverse(
                (beamlab_linalg_ops::inverse(r.view()).unwrap() + Array2::<c64>::eye(n).mapv(|z| z * rho)).view(),
            )
            .unwrap();
            assert!(max_abs(&(&alt - &ce)) < 1e-9);
            assert!(min_eig(&ce) > -1e-12);
        }
        assert!(max_abs(&(mmse_filter(&r, 0.0).unwrap().1 - &r)) < 1e-12);
        assert!(mmse_filter(&r, -1.0).is_err());
    }

    #[test]
    fn sampled_estimation_error_matches_its_covariance() {
        let r = upa_cov(2, 2, 0.2, 0.4, 0.2);
        let s = psd_sqrt(&r).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n_draws = 20_000;
        let mut emp = Array2::<c64>::zeros((4, 4));
        let mut ce = Array2::zeros((4, 4));
        for _ in 0..n_draws {
            let h = s.dot(&complex_normal(4, &mut rng));
            let est = mmse_estimate(&r, h.view(), 2.0, &mut rng).unwrap();
            let e = &h - &est.h_est;
            emp += &crate::util::outer(e.view(), e.view());
            ce = est.err_cov;
        }
        emp.mapv_inplace(|z| z / n_draws as f64);
        assert!(max_abs(&(&emp - &ce)) < 0.03, "{}", max_abs(&(&emp - &ce)));
    }

    #[test]
    fn quantisation_is_exact_for_a_codeword_and_improves_with_l() {
        let c = dft_codebook(4, 4, 4, 4).unwrap();
        let h = c.column(37).mapv(|z| z * c64::from_polar(2.0, 0.7));
        let q = dft_quantise(h.view(), 4, 4, 4, 4, 1).unwrap();
        assert!(q.iter().zip(h.iter()).all(|(a, b)| (a - b).norm() < 1e-12));
        let r = upa_cov(4, 4, 0.5, -0.2, 0.3);
        let hr = psd_sqrt(&r).unwrap().dot(&complex_normal(16, &mut ChaCha8Rng::seed_from_u64(2)));
        let err = |l| {
            let q = dft_quantise(hr.view(), 4, 4, 4, 4, l).unwrap();
            q.iter().zip(hr.iter()).map(|(a, b)| (a - b).norm_sqr()).sum::<f64>()
        };
        let (e1, e4, e16) = (err(1), err(4), err(16));
        assert!(e4 < e1 && e16 < e1, "{e1} {e4} {e16}");
        assert!(dft_quantise(hr.view(), 4, 4, 4, 4, 0).is_err());
        assert!(dft_quantise(hr.view(), 4, 2, 4, 4, 1).is_err());
    }

    #[test]
    fn instances_have_consistent_shapes() {
        let sc = Scenario::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let groups = pilot_groups(&[0.0, 5.0, 10.0]);
        assert_eq!(groups.len(), 4);
        for (g, csi) in groups.iter().enumerate() {
            let inst = draw_instance(&sc, csi, g, &mut rng).unwrap();
            assert_eq!((inst.h.len(), inst.h_est.len(), inst.targets.len()), (3, 3, 3));
            assert!(inst.h[0].len() == 16 && inst.cov[0].dim() == (16, 16));
            assert!(inst.targets.iter().all(|t| (1.0..=10.0).contains(t)));
            assert!((1.0..=10.0).contains(&inst.zeta));
            assert_eq!(inst.err_cov.as_ref().map(Vec::len), Some(3));
        }
        let q = draw_instance(&sc, &CsiModel::Quantised { n_keep: 2 }, 0, &mut rng).unwrap();
        assert!(q.err_cov.is_none() && q.zeta == 2.0);
        let bad = Scenario { target_db: (5.0, 0.0), ..Scenario::default() };
        assert!(draw_instance(&bad, &groups[0], 0, &mut rng).is_err());
        assert!(draw_instance(&sc, &CsiModel::Pilot { lo_db: 3.0, hi_db: 1.0 }, 0, &mut rng).is_err());
    }
}
