//! Statistical-CSI system instances (Table 4, paper §5.5): `T_s` channel samples of the same `K`
//! users (fixed covariances `R_k`, targets and feedback level): true channels
//! `h_{k,t} = R_k^{1/2} g_{k,t}` and their DFT feedback `ĥ_{k,t}` with `L` kept coefficients
//! ([`dft_quantise`], `ζ = L`). The transmitter's statistical CSI is the sample covariance of the
//! fed-back vectors `R̂_k = (1/T_s) Σ_t ĥ_{k,t} ĥ_{k,t}^H` ([`sample_covariance`]).

use beamlab_linalg_ops::c64;
use ndarray::{Array1, Array2};
use rand::Rng;

use super::{Instance, Scenario, complex_normal, dft_quantise, psd_sqrt, upa_cov};
use crate::Error;
use crate::util::outer;

/// Sample covariance `(1/T) Σ_t v_t v_t^H` of `T ≥ 1` vectors of equal length.
///
/// # Errors
/// [`Error::Empty`] for no vectors or zero-length vectors, [`Error::ShapeMismatch`] for unequal
/// lengths, [`Error::NonFinite`] for non-finite entries.
pub fn sample_covariance(vectors: &[Array1<c64>]) -> Result<Array2<c64>, Error> {
    let n = vectors.first().map(Array1::len).ok_or(Error::Empty { what: "sample covariance samples" })?;
    if n == 0 {
        return Err(Error::Empty { what: "sample covariance vectors" });
    }
    if let Some(v) = vectors.iter().find(|v| v.len() != n) {
        return Err(Error::shape("sample covariance vector length", n, v.len()));
    }
    if vectors.iter().flat_map(|v| v.iter()).any(|z| !(z.re.is_finite() && z.im.is_finite())) {
        return Err(Error::NonFinite { what: "sample covariance vectors" });
    }
    let mut r = Array2::<c64>::zeros((n, n));
    for v in vectors {
        r += &outer(v.view(), v.view());
    }
    Ok(r.mapv(|z| z / vectors.len() as f64))
}

/// One system instance with `T_s` channel samples (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct StatInstance {
    /// Constraint group.
    pub group: usize,
    /// The samples, each an [`Instance`] (true `h_t`, feedback `ĥ_t`, the common covariances,
    /// targets and `ζ`).
    pub samples: Vec<Instance>,
    /// Statistical CSI `R̂_k` (sample covariance of the feedback), `K` matrices `[N × N]`.
    pub r_hat: Vec<Array2<c64>>,
    /// Sample covariance of the true channels (the perfect-CSI statistics of G-HBF-perf).
    pub r_true: Vec<Array2<c64>>,
}

impl StatInstance {
    /// SINR targets `γ_k` (common to all samples).
    #[must_use]
    pub fn targets(&self) -> &[f64] {
        self.samples.first().map_or(&[], |s| s.targets.as_slice())
    }

    /// Side information `ζ = L` (common to all samples; 0 without samples).
    #[must_use]
    pub fn zeta(&self) -> f64 {
        self.samples.first().map_or(0.0, |s| s.zeta)
    }
}

/// Draws one [`StatInstance`]: `K` users with covariances as in [`super::draw_instance`],
/// `n_samples` channel samples each, DFT feedback with `n_keep` coefficients (oversampling 4 × 4).
///
/// # Errors
/// [`Error::InvalidParameter`] naming the field for a bad scenario ([`Scenario::check`]),
/// `n_keep = 0` or `n_samples = 0`; linear-algebra errors.
pub fn draw_stat_instance<R: Rng + ?Sized>(
    scenario: &Scenario,
    n_keep: usize,
    n_samples: usize,
    group: usize,
    rng: &mut R,
) -> Result<StatInstance, Error> {
    scenario.check()?;
    if n_keep == 0 {
        return Err(Error::param("n_keep", "at least one DFT coefficient must be kept, got 0"));
    }
    if n_samples == 0 {
        return Err(Error::param("n_samples", "at least one channel sample per system, got 0"));
    }
    let (n1, n2) = scenario.n_antennas;
    let (t_lo, t_hi) = scenario.target_db;
    let sigma = scenario.angular_spread_deg.to_radians();
    let max_angle = scenario.max_angle_deg.to_radians().abs();
    let (mut cov, mut roots, mut targets) = (vec![], vec![], vec![]);
    for _ in 0..scenario.n_users {
        let phi1 = rng.random_range(-max_angle..=max_angle);
        let phi2 = rng.random_range(-max_angle..=max_angle);
        let r = upa_cov(n1, n2, phi1, phi2, sigma);
        roots.push(psd_sqrt(&r)?);
        cov.push(r);
        targets.push(10f64.powf(rng.random_range(t_lo..=t_hi) / 10.0));
    }
    let mut samples = Vec::with_capacity(n_samples);
    for _ in 0..n_samples {
        let h: Vec<Array1<c64>> = roots.iter().map(|s| s.dot(&complex_normal(n1 * n2, rng))).collect();
        let h_est = h.iter().map(|hk| dft_quantise(hk.view(), n1, n2, 4, 4, n_keep)).collect::<Result<Vec<_>, _>>()?;
        samples.push(Instance {
            group,
            cov: cov.clone(),
            h,
            h_est,
            err_cov: None,
            targets: targets.clone(),
            zeta: n_keep as f64,
        });
    }
    let per_user = |est: bool| {
        (0..scenario.n_users)
            .map(|k| {
                let v: Vec<Array1<c64>> =
                    samples.iter().map(|s| if est { s.h_est[k].clone() } else { s.h[k].clone() }).collect();
                sample_covariance(&v)
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(StatInstance { group, r_hat: per_user(true)?, r_true: per_user(false)?, samples })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn max_abs(a: &Array2<c64>) -> f64 {
        a.iter().map(|z| z.norm()).fold(0.0, f64::max)
    }

    #[test]
    fn sample_covariance_converges_to_the_covariance() {
        let r = upa_cov(2, 2, 0.3, -0.4, 0.2);
        let s = psd_sqrt(&r).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let draws: Vec<Array1<c64>> = (0..40_000).map(|_| s.dot(&complex_normal(4, &mut rng))).collect();
        let err = |t: usize| max_abs(&(sample_covariance(&draws[..t]).unwrap() - &r));
        let (e_small, e_large) = (err(40), err(40_000));
        assert!(e_large < 0.03, "T = 40000: {e_large}");
        assert!(e_large < e_small / 5.0, "{e_small} -> {e_large}");
        // One sample: the rank-one outer product; Hermitian always.
        let one = sample_covariance(&draws[..1]).unwrap();
        assert!(max_abs(&(&one - &outer(draws[0].view(), draws[0].view()))) < 1e-15);
        assert!(sample_covariance(&[]).is_err());
        assert!(sample_covariance(&[draws[0].clone(), Array1::zeros(3)]).is_err());
    }

    #[test]
    fn instances_share_statistics_across_samples() {
        let sc = Scenario { angular_spread_deg: 5.0, ..Scenario::default() };
        let inst = draw_stat_instance(&sc, 2, 6, 1, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!((inst.samples.len(), inst.r_hat.len(), inst.group), (6, 3, 1));
        for s in &inst.samples {
            assert_eq!(s.targets, inst.targets());
            assert_eq!((s.zeta, s.group), (2.0, 1));
            assert!(s.err_cov.is_none());
        }
        assert_ne!(inst.samples[0].h, inst.samples[1].h, "samples are independent draws");
        let direct = sample_covariance(&inst.samples.iter().map(|s| s.h_est[2].clone()).collect::<Vec<_>>()).unwrap();
        assert!(max_abs(&(&direct - &inst.r_hat[2])) < 1e-12);
        assert!(draw_stat_instance(&sc, 0, 6, 0, &mut ChaCha8Rng::seed_from_u64(1)).is_err());
        assert!(draw_stat_instance(&sc, 2, 0, 0, &mut ChaCha8Rng::seed_from_u64(1)).is_err());
    }
}
