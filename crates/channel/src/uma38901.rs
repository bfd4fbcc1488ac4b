//! 3GPP TR 38.901 (v16.1) Urban Macro NLOS, narrowband, single BS (model 4 of the channel spec,
//! the QuaDRiGa substitute of MB-MAML).
//!
//! System model (downlink, one BS with an `M`-element half-wavelength ULA, `N_k`-antenna users):
//! user `k` sees the block `H_k: [N_k × M]`,
//!
//! ```text
//! H_k[u, s] = c_k Σ_n √(P_n / N_ray) Σ_m F_tx(θ_ZOD,nm, φ_AOD,nm) F_rx e^{jΦ_nm}
//!             · e^{jπ u sin θ_ZOA,nm sin(φ_AOA,nm − ψ_k)} · e^{jπ s sin θ_ZOD,nm sin φ_AOD,nm}
//! ```
//!
//! with cluster powers `P_n` (Σ P_n = 1), `N_ray = 20` rays per cluster, random ray phases
//! `Φ_nm ~ U(−π, π)` (one polarisation), the BS array along the y axis with boresight x, the UE
//! array with a random azimuth orientation `ψ_k`, and the normalisation `c_k` chosen so that the
//! expectation over the ray phases is `E‖H_k‖_F² = M N_k` (path loss, shadow fading and the
//! element-gain level are removed; the fading itself — cluster powers, angles and phases — is
//! kept). This is the `E‖h_k‖² = M_t` convention of the MB-MAML spec §1.
//!
//! The procedure follows TR 38.901 §7.5 steps 1–11 (spec `channels.md` §4):
//! 1. layout: BS at the origin at height 25 m, UEs uniform in a disc of radius 200 m with
//!    `d2D ≥ 35 m`, at 1.5 m height, all outdoor NLOS;
//! 2. large-scale parameters (SF, DS, ASD, ASA, ZSD, ZSA) as correlated Gaussians in the log
//!    domain — the 6 × 6 cross-correlation matrix of Table 7.5-6 is factored by Cholesky — and
//!    clipped at ASD, ASA ≤ 104°, ZSD, ZSA ≤ 52°;
//! 3. cluster delays `τ_n = −r_τ DS ln X_n` (sorted, shifted to 0) and powers
//!    `P_n ∝ exp(−τ_n (r_τ − 1)/(r_τ DS)) 10^{−Z_n/10}`, `Z_n ~ N(0, 3²)`; clusters weaker than
//!    −25 dB below the strongest are removed;
//! 4. azimuths `φ_n = X_n φ'_n + Y_n + φ_LOS`, `φ'_n = 2 (AS/1.4) √(−ln(P_n/max P)) / C_φ`, and
//!    zeniths `θ_n = X_n θ'_n + Y_n + θ̄`, `θ'_n = −ZS ln(P_n/max P) / C_θ`, with
//!    `C_φ = 1.289`, `C_θ = 1.178`, `X_n = ±1`, `Y_n ~ N(0, (AS/7)²)`; the ZOD gets the
//!    `μ_offset,ZOD` of Table 7.5-7;
//! 5. rays at the 20 offsets `±α_m` scaled by `c_ASD = 2°`, `c_ASA = 15°`, `c_ZSA = 7°`,
//!    `c_ZSD = (3/8) 10^{μ_lgZSD}`, randomly coupled (independent shuffles of AOD/AOA/ZOD/ZOA within
//!    a cluster) and given random phases.
//!
//! Simplifications (documented in `docs/channel-38901.md`): narrowband, so the delays only shape
//! the cluster powers and the sub-cluster split of the two strongest clusters (a wideband
//! refinement) is omitted; one polarisation (no XPR); LSPs independent between users (no
//! spatial-consistency procedure); no O2I users; no LOS. Every draw comes from the `rng` argument.

use std::f64::consts::PI;

use beamlab_core::Channel;
use beamlab_linalg_ops::small::real::cholesky_in_place;
use ndarray::Array2;
use num_complex::Complex64 as c64;
use rand::Rng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, StandardNormal};

use crate::ChannelError;

/// Names of the large-scale parameters, in the order used by [`UmaLsp::as_array`],
/// [`lsp_mean_std`] and [`LSP_CROSS_CORRELATION`].
pub const LSP_NAMES: [&str; 6] = ["SF", "lgDS", "lgASD", "lgASA", "lgZSD", "lgZSA"];

/// Cross-correlation of the six LSPs of UMa NLOS (TR 38.901 Table 7.5-6), order [`LSP_NAMES`]
/// (SF in dB, the others in log10 units).
pub const LSP_CROSS_CORRELATION: [[f64; 6]; 6] = [
    // SF    DS    ASD   ASA   ZSD   ZSA
    [1.0, -0.4, -0.6, 0.0, 0.0, -0.4],
    [-0.4, 1.0, 0.4, 0.6, -0.5, 0.0],
    [-0.6, 0.4, 1.0, 0.4, 0.5, -0.1],
    [0.0, 0.6, 0.4, 1.0, 0.0, 0.0],
    [0.0, -0.5, 0.5, 0.0, 1.0, 0.0],
    [-0.4, 0.0, -0.1, 0.0, 0.0, 1.0],
];

/// Ray offset angles `α_m` of TR 38.901 Table 7.5-3 (unit rms angular spread).
pub const RAY_OFFSETS: [f64; 20] = [
    0.0447, -0.0447, 0.1413, -0.1413, 0.2492, -0.2492, 0.3715, -0.3715, 0.5129, -0.5129, 0.6797, -0.6797, 0.8844,
    -0.8844, 1.1481, -1.1481, 1.5195, -1.5195, 2.1551, -2.1551,
];

/// Delay scaling `r_τ` of UMa NLOS.
pub const DELAY_SCALING: f64 = 2.3;
/// Per-cluster shadowing standard deviation `ζ` in dB.
pub const CLUSTER_SHADOWING_DB: f64 = 3.0;
/// Cluster ASD `c_ASD` in degrees.
pub const C_ASD_DEG: f64 = 2.0;
/// Cluster ASA `c_ASA` in degrees.
pub const C_ASA_DEG: f64 = 15.0;
/// Cluster ZSA `c_ZSA` in degrees.
pub const C_ZSA_DEG: f64 = 7.0;
/// Azimuth scaling factor `C_φ^NLOS` for 20 clusters.
pub const C_PHI: f64 = 1.289;
/// Zenith scaling factor `C_θ^NLOS` for 20 clusters.
pub const C_THETA: f64 = 1.178;
/// Shadow-fading standard deviation in dB.
pub const SF_STD_DB: f64 = 6.0;
/// Clusters weaker than this (dB below the strongest) are removed.
pub const CLUSTER_DROP_DB: f64 = -25.0;

/// Antenna element radiation pattern of the BS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ElementPattern {
    /// Isotropic elements (unit gain in every direction, the default).
    #[default]
    Isotropic,
    /// The TR 38.901 Table 7.3-1 sector element (65° half-power beam widths, 30 dB front-back
    /// ratio, 8 dBi maximum gain), boresight along the array normal, no tilt.
    Tr38901,
}

/// Parameters of the UMa NLOS generator. Defaults: the MB-MAML setting (6 GHz, 32-element BS
/// ULA, single-antenna UEs in a 200 m disc with `d2D ≥ 35 m`).
#[derive(Clone, Debug, PartialEq)]
pub struct Uma38901Params {
    /// Carrier frequency in GHz (default 6; below 6 GHz the LSP tables use 6, per TR 38.901).
    pub carrier_ghz: f64,
    /// Number of BS antennas `M` of the half-wavelength ULA (default 32).
    pub n_bs_antennas: usize,
    /// Number of UE antennas `N_k` of the half-wavelength UE ULA (default 1).
    pub n_ue_antennas: usize,
    /// Radius of the disc of UE positions in metres (default 200).
    pub cell_radius_m: f64,
    /// Minimum BS–UE 2D distance in metres (default 35).
    pub min_distance_m: f64,
    /// BS height in metres (default 25).
    pub bs_height_m: f64,
    /// UE height in metres (default 1.5).
    pub ue_height_m: f64,
    /// BS element pattern (default isotropic).
    pub element_pattern: ElementPattern,
}

impl Default for Uma38901Params {
    fn default() -> Self {
        Self {
            carrier_ghz: 6.0,
            n_bs_antennas: 32,
            n_ue_antennas: 1,
            cell_radius_m: 200.0,
            min_distance_m: 35.0,
            bs_height_m: 25.0,
            ue_height_m: 1.5,
            element_pattern: ElementPattern::Isotropic,
        }
    }
}

impl Uma38901Params {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for zero antennas, a non-positive or non-finite carrier,
    /// a disc that cannot hold `d2D ≥ min_distance`, or non-positive heights with the UE not below
    /// the BS.
    pub fn check(&self) -> Result<(), ChannelError> {
        let bad = |m: String| Err(ChannelError::InvalidParameter(m));
        if self.n_bs_antennas == 0 || self.n_ue_antennas == 0 {
            return bad(format!(
                "38.901 UMa needs antennas at both ends, got n_bs_antennas = {}, n_ue_antennas = {}",
                self.n_bs_antennas, self.n_ue_antennas
            ));
        }
        if !(self.carrier_ghz.is_finite() && self.carrier_ghz > 0.0) {
            return bad(format!("carrier frequency must be finite and > 0 GHz, got {}", self.carrier_ghz));
        }
        if !(self.min_distance_m.is_finite()
            && self.min_distance_m >= 0.0
            && self.cell_radius_m.is_finite()
            && self.cell_radius_m > self.min_distance_m)
        {
            return bad(format!(
                "need 0 <= min_distance_m < cell_radius_m (finite), got {} and {}",
                self.min_distance_m, self.cell_radius_m
            ));
        }
        if !(self.ue_height_m.is_finite()
            && self.ue_height_m > 0.0
            && self.bs_height_m.is_finite()
            && self.bs_height_m > self.ue_height_m)
        {
            return bad(format!(
                "need 0 < ue_height_m < bs_height_m (finite), got {} and {}",
                self.ue_height_m, self.bs_height_m
            ));
        }
        Ok(())
    }

    /// The carrier used by the LSP tables: `max(f_c, 6 GHz)` (TR 38.901 Table 7.5-6 note 6).
    fn table_carrier_ghz(&self) -> f64 {
        self.carrier_ghz.max(6.0)
    }

    /// Mean of lg ZSD at 2D distance `d2d_m` (Table 7.5-7).
    #[must_use]
    pub fn mu_lg_zsd(&self, d2d_m: f64) -> f64 {
        (-2.1 * d2d_m / 1000.0 - 0.01 * (self.ue_height_m - 1.5) + 0.9).max(-0.5)
    }

    /// The ZOD offset `μ_offset,ZOD` in degrees at 2D distance `d2d_m` (Table 7.5-7, NLOS).
    #[must_use]
    pub fn zod_offset_deg(&self, d2d_m: f64) -> f64 {
        let lf = self.table_carrier_ghz().log10();
        let a = 0.208 * lf - 0.782;
        let c = -0.13 * lf + 2.03;
        let e = 7.66 * lf - 5.96;
        e - 10f64.powf(a * d2d_m.max(25.0).log10() + c - 0.07 * (self.ue_height_m - 1.5))
    }

    /// UMa NLOS path loss in dB at 3D distance `d3d_m` (§7.4.1, `PL = max(PL_LOS, PL'_NLOS)`,
    /// `h_E = 1 m`). Reported for information only; the generated channels are normalised.
    #[must_use]
    pub fn path_loss_db(&self, d2d_m: f64) -> f64 {
        let fc = self.carrier_ghz;
        let dh = self.bs_height_m - self.ue_height_m;
        let d3d = (d2d_m * d2d_m + dh * dh).sqrt();
        let d_bp = 4.0 * (self.bs_height_m - 1.0) * (self.ue_height_m - 1.0).max(0.0) * fc * 1e9 / 299_792_458.0;
        let pl_los = if d2d_m <= d_bp {
            28.0 + 22.0 * d3d.log10() + 20.0 * fc.log10()
        } else {
            28.0 + 40.0 * d3d.log10() + 20.0 * fc.log10() - 9.0 * (d_bp * d_bp + dh * dh).log10()
        };
        let pl_nlos = 13.54 + 39.08 * d3d.log10() + 20.0 * fc.log10() - 0.6 * (self.ue_height_m - 1.5);
        pl_los.max(pl_nlos)
    }
}

/// Means and standard deviations `(μ, σ)` of the six LSPs (order [`LSP_NAMES`]) at 2D distance
/// `d2d_m` (TR 38.901 Table 7.5-6/7, UMa NLOS; SF in dB, the others log10 of seconds / degrees).
#[must_use]
#[allow(clippy::approx_constant)] // −6.28 is the table's lg DS intercept, not −2π.
pub fn lsp_mean_std(params: &Uma38901Params, d2d_m: f64) -> [(f64, f64); 6] {
    let lf = params.table_carrier_ghz().log10();
    [
        (0.0, SF_STD_DB),
        (-6.28 - 0.204 * lf, 0.39),
        (1.5 - 0.1144 * lf, 0.28),
        (2.08 - 0.27 * lf, 0.11),
        (params.mu_lg_zsd(d2d_m), 0.49),
        (1.512 - 0.3236 * lf, 0.16),
    ]
}

/// One user's large-scale parameters, as drawn (before the angular-spread clipping, which
/// [`UmaLsp::asd_deg`] etc. apply).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UmaLsp {
    /// Shadow fading in dB.
    pub sf_db: f64,
    /// log10 of the delay spread in seconds.
    pub lg_ds: f64,
    /// log10 of the azimuth spread of departure in degrees.
    pub lg_asd: f64,
    /// log10 of the azimuth spread of arrival in degrees.
    pub lg_asa: f64,
    /// log10 of the zenith spread of departure in degrees.
    pub lg_zsd: f64,
    /// log10 of the zenith spread of arrival in degrees.
    pub lg_zsa: f64,
}

impl UmaLsp {
    /// The six values in the order of [`LSP_NAMES`].
    #[must_use]
    pub fn as_array(&self) -> [f64; 6] {
        [self.sf_db, self.lg_ds, self.lg_asd, self.lg_asa, self.lg_zsd, self.lg_zsa]
    }
    /// Delay spread in seconds.
    #[must_use]
    pub fn ds_s(&self) -> f64 {
        10f64.powf(self.lg_ds)
    }
    /// ASD in degrees, clipped at 104°.
    #[must_use]
    pub fn asd_deg(&self) -> f64 {
        10f64.powf(self.lg_asd).min(104.0)
    }
    /// ASA in degrees, clipped at 104°.
    #[must_use]
    pub fn asa_deg(&self) -> f64 {
        10f64.powf(self.lg_asa).min(104.0)
    }
    /// ZSD in degrees, clipped at 52°.
    #[must_use]
    pub fn zsd_deg(&self) -> f64 {
        10f64.powf(self.lg_zsd).min(52.0)
    }
    /// ZSA in degrees, clipped at 52°.
    #[must_use]
    pub fn zsa_deg(&self) -> f64 {
        10f64.powf(self.lg_zsa).min(52.0)
    }
}

/// Lower Cholesky factor of [`LSP_CROSS_CORRELATION`] (row-major `6 × 6`, lower triangle).
fn lsp_correlation_factor() -> Result<[f64; 36], ChannelError> {
    let mut l: [f64; 36] = std::array::from_fn(|k| LSP_CROSS_CORRELATION[k / 6][k % 6]);
    cholesky_in_place(&mut l, 6)
        .map_err(|e| ChannelError::InvalidParameter(format!("LSP cross-correlation matrix: {e}")))?;
    Ok(l)
}

/// Draws the correlated LSPs of one user at 2D distance `d2d_m`.
///
/// # Errors
/// Only if [`LSP_CROSS_CORRELATION`] were not positive definite (it is).
pub fn sample_lsp<R: Rng + ?Sized>(params: &Uma38901Params, d2d_m: f64, rng: &mut R) -> Result<UmaLsp, ChannelError> {
    let l = lsp_correlation_factor()?;
    let z: [f64; 6] = std::array::from_fn(|_| StandardNormal.sample(rng));
    let ms = lsp_mean_std(params, d2d_m);
    let v: [f64; 6] = std::array::from_fn(|i| {
        let c: f64 = (0..=i).map(|j| l[i * 6 + j] * z[j]).sum();
        ms[i].0 + ms[i].1 * c
    });
    Ok(UmaLsp { sf_db: v[0], lg_ds: v[1], lg_asd: v[2], lg_asa: v[3], lg_zsd: v[4], lg_zsa: v[5] })
}

/// One cluster of a UMa NLOS link: its delay, power and the 20 coupled rays.
#[derive(Clone, Debug, PartialEq)]
pub struct UmaCluster {
    /// Delay in seconds (the earliest cluster at 0; narrowband channels use the delays only
    /// through the cluster powers).
    pub delay_s: f64,
    /// Normalised power (the powers of all kept clusters sum to 1).
    pub power: f64,
    /// Ray azimuths of departure in degrees (relative to the BS boresight).
    pub aod_deg: Vec<f64>,
    /// Ray azimuths of arrival in degrees (global frame).
    pub aoa_deg: Vec<f64>,
    /// Ray zeniths of departure in degrees.
    pub zod_deg: Vec<f64>,
    /// Ray zeniths of arrival in degrees.
    pub zoa_deg: Vec<f64>,
    /// Ray phases in radians.
    pub phase: Vec<f64>,
}

/// One user of a UMa drop: position, LSPs, clusters.
#[derive(Clone, Debug, PartialEq)]
pub struct UmaUser {
    /// Position `(x, y)` in metres relative to the BS (x = array boresight).
    pub position_m: [f64; 2],
    /// 2D distance in metres.
    pub d2d_m: f64,
    /// Path loss in dB (information only; removed by the normalisation).
    pub path_loss_db: f64,
    /// Azimuth orientation of the UE array in degrees.
    pub ue_orientation_deg: f64,
    /// Large-scale parameters.
    pub lsp: UmaLsp,
    /// Clusters kept after the −25 dB cut, in delay order.
    pub clusters: Vec<UmaCluster>,
}

fn sample_normal<R: Rng + ?Sized>(rng: &mut R, std: f64) -> f64 {
    let z: f64 = StandardNormal.sample(rng);
    std * z
}

fn random_sign<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    if rng.random::<bool>() { 1.0 } else { -1.0 }
}

/// Wraps an azimuth to `(−180°, 180°]`.
fn wrap_deg(a: f64) -> f64 {
    let w = (a + 180.0).rem_euclid(360.0) - 180.0;
    if w == -180.0 { 180.0 } else { w }
}

/// Maps a zenith angle to `[0°, 180°]` (reflection at the poles, TR 38.901 §7.5 step 7 note).
fn fold_zenith(t: f64) -> f64 {
    let t = t.rem_euclid(360.0);
    if t > 180.0 { 360.0 - t } else { t }
}

/// Draws one user's position, LSPs, clusters and rays.
///
/// # Errors
/// [`ChannelError::InvalidParameter`] for bad parameters.
pub fn sample_user<R: Rng + ?Sized>(params: &Uma38901Params, rng: &mut R) -> Result<UmaUser, ChannelError> {
    params.check()?;
    // Uniform in the annulus min_distance ≤ d ≤ radius (area-uniform).
    let (r0, r1) = (params.min_distance_m, params.cell_radius_m);
    let d2d = (r0 * r0 + rng.random::<f64>() * (r1 * r1 - r0 * r0)).sqrt();
    let az = rng.random::<f64>() * 2.0 * PI - PI;
    let position_m = [d2d * az.cos(), d2d * az.sin()];
    let ue_orientation_deg = rng.random::<f64>() * 360.0 - 180.0;
    let lsp = sample_lsp(params, d2d, rng)?;
    let clusters = sample_clusters(params, d2d, az.to_degrees(), &lsp, rng);
    Ok(UmaUser { position_m, d2d_m: d2d, path_loss_db: params.path_loss_db(d2d), ue_orientation_deg, lsp, clusters })
}

/// Steps 5–8 of §7.5 for one link: delays, powers, angles, rays, coupling and phases.
/// `phi_los_deg` is the azimuth of the UE seen from the BS.
fn sample_clusters<R: Rng + ?Sized>(
    params: &Uma38901Params,
    d2d: f64,
    phi_los_deg: f64,
    lsp: &UmaLsp,
    rng: &mut R,
) -> Vec<UmaCluster> {
    const N_CLUSTERS: usize = 20;
    let ds = lsp.ds_s();
    let r_tau = DELAY_SCALING;
    // Step 5: delays.
    let mut tau: Vec<f64> = (0..N_CLUSTERS).map(|_| -r_tau * ds * (1.0 - rng.random::<f64>()).ln()).collect();
    let t_min = tau.iter().copied().fold(f64::INFINITY, f64::min);
    tau.iter_mut().for_each(|t| *t -= t_min);
    tau.sort_by(f64::total_cmp);
    // Step 6: powers with per-cluster shadowing, then the −25 dB cut.
    let mut p: Vec<f64> = tau
        .iter()
        .map(|&t| {
            let z = sample_normal(rng, CLUSTER_SHADOWING_DB);
            (-t * (r_tau - 1.0) / (r_tau * ds)).exp() * 10f64.powf(-z / 10.0)
        })
        .collect();
    let total: f64 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= total);
    let p_max = p.iter().copied().fold(0.0, f64::max);
    let keep: Vec<usize> = (0..N_CLUSTERS).filter(|&n| 10.0 * (p[n] / p_max).log10() >= CLUSTER_DROP_DB).collect();
    let kept_total: f64 = keep.iter().map(|&n| p[n]).sum();

    // Step 7: angles.
    let (asd, asa, zsd, zsa) = (lsp.asd_deg(), lsp.asa_deg(), lsp.zsd_deg(), lsp.zsa_deg());
    let theta_los_zod = 90.0 + ((params.bs_height_m - params.ue_height_m) / d2d).atan().to_degrees();
    let theta_los_zoa = 180.0 - theta_los_zod;
    let phi_los_aoa = phi_los_deg + 180.0;
    let zod_offset = params.zod_offset_deg(d2d);
    let c_zsd = 0.375 * 10f64.powf(params.mu_lg_zsd(d2d));
    keep.iter()
        .map(|&n| {
            let rel = p[n] / p_max;
            let az_prime = |spread: f64| 2.0 * (spread / 1.4) * (-rel.ln()).sqrt() / C_PHI;
            let ze_prime = |spread: f64| -spread * rel.ln() / C_THETA;
            let aoa = random_sign(rng) * az_prime(asa) + sample_normal(rng, asa / 7.0) + phi_los_aoa;
            let aod = random_sign(rng) * az_prime(asd) + sample_normal(rng, asd / 7.0) + phi_los_deg;
            let zoa = random_sign(rng) * ze_prime(zsa) + sample_normal(rng, zsa / 7.0) + theta_los_zoa;
            let zod = random_sign(rng) * ze_prime(zsd) + sample_normal(rng, zsd / 7.0) + theta_los_zod + zod_offset;
            // Step 8: rays, randomly coupled by independent permutations of the offsets.
            let mut rays = |centre: f64, c: f64, zenith: bool| -> Vec<f64> {
                let mut idx: Vec<usize> = (0..RAY_OFFSETS.len()).collect();
                idx.shuffle(rng);
                idx.iter()
                    .map(|&m| {
                        let a = centre + c * RAY_OFFSETS[m];
                        if zenith { fold_zenith(a) } else { wrap_deg(a) }
                    })
                    .collect()
            };
            let aod_deg = rays(aod, C_ASD_DEG, false);
            let aoa_deg = rays(aoa, C_ASA_DEG, false);
            let zod_deg = rays(zod, c_zsd, true);
            let zoa_deg = rays(zoa, C_ZSA_DEG, true);
            let phase = (0..RAY_OFFSETS.len()).map(|_| rng.random::<f64>() * 2.0 * PI - PI).collect();
            UmaCluster { delay_s: tau[n], power: p[n] / kept_total, aod_deg, aoa_deg, zod_deg, zoa_deg, phase }
        })
        .collect()
}

/// Power gain (linear) of the BS element towards zenith `theta_deg`, azimuth `phi_deg`.
#[must_use]
pub fn element_gain(pattern: ElementPattern, theta_deg: f64, phi_deg: f64) -> f64 {
    match pattern {
        ElementPattern::Isotropic => 1.0,
        ElementPattern::Tr38901 => {
            let phi = wrap_deg(phi_deg);
            let a_v = -(12.0 * ((theta_deg - 90.0) / 65.0).powi(2)).min(30.0);
            let a_h = -(12.0 * (phi / 65.0).powi(2)).min(30.0);
            let a_db = -(-(a_v + a_h)).min(30.0);
            10f64.powf((a_db + 8.0) / 10.0)
        }
    }
}

/// Narrowband channel block `H: [N_ue × M]` of one user (system model in the module docs),
/// normalised to `E‖H‖_F² = M N_ue` over the ray phases.
#[must_use]
pub fn user_channel(params: &Uma38901Params, user: &UmaUser) -> Array2<c64> {
    let (n_rx, n_tx) = (params.n_ue_antennas, params.n_bs_antennas);
    let mut h = Array2::<c64>::zeros((n_rx, n_tx));
    let mut expected_power = 0.0;
    let n_rays = RAY_OFFSETS.len() as f64;
    let mut a_tx = vec![c64::new(0.0, 0.0); n_tx];
    let mut a_rx = vec![c64::new(0.0, 0.0); n_rx];
    for cl in &user.clusters {
        for m in 0..cl.phase.len() {
            let (zod, aod) = (cl.zod_deg[m].to_radians(), cl.aod_deg[m].to_radians());
            let (zoa, aoa) = (cl.zoa_deg[m].to_radians(), (cl.aoa_deg[m] - user.ue_orientation_deg).to_radians());
            let gain = element_gain(params.element_pattern, cl.zod_deg[m], cl.aod_deg[m]);
            let w = cl.power / n_rays * gain;
            expected_power += w;
            let g = c64::from_polar(w.sqrt(), cl.phase[m]);
            let step_tx = PI * zod.sin() * aod.sin();
            let step_rx = PI * zoa.sin() * aoa.sin();
            a_tx.iter_mut().enumerate().for_each(|(s, a)| *a = c64::from_polar(1.0, step_tx * s as f64));
            a_rx.iter_mut().enumerate().for_each(|(u, a)| *a = g * c64::from_polar(1.0, step_rx * u as f64));
            for (u, &ar) in a_rx.iter().enumerate() {
                for (s, &at) in a_tx.iter().enumerate() {
                    h[[u, s]] += ar * at;
                }
            }
        }
    }
    if expected_power > 0.0 {
        h.mapv_inplace(|z| z / expected_power.sqrt());
    }
    h
}

/// BS-side spatial covariance `R = E[h hᴴ]: [M × M]` of one user's first receive antenna over
/// the ray phases, with `h = conj(H[0, :])ᵀ` (so that the received signal is `hᴴ v`), normalised
/// like [`user_channel`] (`tr R = M`).
#[must_use]
pub fn spatial_covariance(params: &Uma38901Params, user: &UmaUser) -> Array2<c64> {
    let n_tx = params.n_bs_antennas;
    let mut r = Array2::<c64>::zeros((n_tx, n_tx));
    let n_rays = RAY_OFFSETS.len() as f64;
    let mut total = 0.0;
    for cl in &user.clusters {
        for m in 0..cl.phase.len() {
            let w = cl.power / n_rays * element_gain(params.element_pattern, cl.zod_deg[m], cl.aod_deg[m]);
            total += w;
            let step = PI * cl.zod_deg[m].to_radians().sin() * cl.aod_deg[m].to_radians().sin();
            for s in 0..n_tx {
                for t in 0..n_tx {
                    // conj(a_s) a_t
                    r[[s, t]] += c64::from_polar(w, step * (t as f64 - s as f64));
                }
            }
        }
    }
    if total > 0.0 {
        r.mapv_inplace(|z| z / total);
    }
    r
}

/// Draws `n_users` users (independent positions, LSPs and clusters).
///
/// # Errors
/// [`ChannelError::InvalidParameter`] for bad parameters or `n_users = 0`.
pub fn uma38901_drop<R: Rng + ?Sized>(
    params: &Uma38901Params,
    n_users: usize,
    rng: &mut R,
) -> Result<Vec<UmaUser>, ChannelError> {
    params.check()?;
    if n_users == 0 {
        return Err(ChannelError::InvalidParameter("38.901 UMa needs at least one user".into()));
    }
    (0..n_users).map(|_| sample_user(params, rng)).collect()
}

/// A `K`-user UMa NLOS channel `H_k: [N_ue × M]` with `E‖H_k‖_F² = M N_ue`.
///
/// # Errors
/// As [`uma38901_drop`].
///
/// # Example
/// ```
/// use beamlab_channel::{Uma38901Params, uma38901};
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
/// let h = uma38901(&Uma38901Params::default(), 4, &mut rng)?;
/// assert_eq!((h.n_users(), h.n_tx()), (4, 32));
/// # Ok::<(), beamlab_channel::ChannelError>(())
/// ```
pub fn uma38901<R: Rng + ?Sized>(
    params: &Uma38901Params,
    n_users: usize,
    rng: &mut R,
) -> Result<Channel, ChannelError> {
    let users = uma38901_drop(params, n_users, rng)?;
    Ok(Channel::new(users.iter().map(|u| user_channel(params, u)).collect())?)
}

/// Power-weighted rms azimuth spread in degrees of a set of rays (TR 38.901 Annex A.1 circular
/// definition, minimised over the angle shift `Δ`, searched on a 1° grid).
#[must_use]
pub fn rms_angular_spread_deg(angles_deg: &[f64], powers: &[f64]) -> f64 {
    let total: f64 = powers.iter().sum();
    if total <= 0.0 || angles_deg.is_empty() {
        return 0.0;
    }
    let mut best = f64::INFINITY;
    for shift in 0..360 {
        let d = f64::from(shift);
        let shifted: Vec<f64> = angles_deg.iter().map(|&a| wrap_deg(a + d)).collect();
        let mean: f64 = shifted.iter().zip(powers).map(|(a, p)| a * p).sum::<f64>() / total;
        let var: f64 = shifted.iter().zip(powers).map(|(a, p)| p * wrap_deg(a - mean).powi(2)).sum::<f64>() / total;
        best = best.min(var.sqrt());
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn wrapping_and_folding() {
        assert!((wrap_deg(190.0) + 170.0).abs() < 1e-12);
        assert!((wrap_deg(-180.0) - 180.0).abs() < 1e-12);
        assert!((fold_zenith(190.0) - 170.0).abs() < 1e-12);
        assert!((fold_zenith(-10.0) - 10.0).abs() < 1e-12);
    }

    #[test]
    fn rms_spread_of_two_equal_rays_is_half_their_distance() {
        let s = rms_angular_spread_deg(&[170.0, -170.0], &[1.0, 1.0]);
        assert!((s - 10.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn element_gain_peaks_at_boresight() {
        let g0 = element_gain(ElementPattern::Tr38901, 90.0, 0.0);
        assert!((10.0 * g0.log10() - 8.0).abs() < 1e-12);
        let back = element_gain(ElementPattern::Tr38901, 90.0, 180.0);
        assert!((10.0 * back.log10() - (8.0 - 30.0)).abs() < 1e-9);
    }

    #[test]
    fn clusters_are_normalised_and_above_the_cut() {
        let p = Uma38901Params::default();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let u = sample_user(&p, &mut rng).unwrap();
            let tot: f64 = u.clusters.iter().map(|c| c.power).sum();
            assert!((tot - 1.0).abs() < 1e-12);
            let pm = u.clusters.iter().map(|c| c.power).fold(0.0, f64::max);
            assert!(u.clusters.iter().all(|c| 10.0 * (c.power / pm).log10() >= CLUSTER_DROP_DB - 1e-12));
            assert!(u.d2d_m >= 35.0 && u.d2d_m <= 200.0);
            assert!(u.clusters.iter().all(|c| c.zod_deg.iter().all(|&z| (0.0..=180.0).contains(&z))));
        }
    }
}
