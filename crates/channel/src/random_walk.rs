//! A single-antenna user on a random walk around a base station (model 6 of the channel spec; the
//! channel-prediction case study of the LNN telecom survey, §7.1 and Table 1): a geometric
//! narrowband MISO channel sampled in time, so that CSI evolves consistently.
//!
//! ## Geometry
//!
//! Coordinates are `(x, y, z)` in metres, ground at `z = 0`. The base station (BS) stands at
//! `(0, 0, h_BS)` (urban microcell: `h_BS` = 10 m) with an `M`-element ULA along `x`
//! (`M = 4`, spacing `λ/2`, element `m` at `x = −m s λ`); the user is at height `h_UE` = 1.5 m with a
//! single antenna. The user's horizontal distance to the BS is kept in the annulus
//! `[min_distance_m, cell_radius_m]` (default 10–100 m).
//!
//! A [`RandomWalkScene`] holds the propagation environment, drawn once: whether the line of sight
//! (LoS) exists (probability [`RandomWalkParams::los_probability`]; when it is blocked the ground
//! bounce is blocked too), and `S` fixed point scatterers (default 8, horizontal position uniform
//! in the cell disc outside 5 m, height uniform in `[1, 15]` m, reflection `ρ e^{jφ_s}` with a
//! fixed `ρ` = 0.5 and a uniform phase). Paths ([`RandomWalkPath`]): LoS, the ground bounce (image
//! of the BS at `z = −h_BS`, ITU-R P.2040 concrete, TM polarisation as in the street canyon) and one
//! single bounce per scatterer. A path of total length `d_p` has the gain
//!
//! ```text
//! g_p = Γ_p λ / (4π d_p) · e^{−j 2π d_p / λ}
//! ```
//!
//! and, with `θ_p` the angle between the array axis `+x` and the path's departure direction,
//!
//! ```text
//! h = c · Σ_p g_p a(θ_p)^H,      a(θ) = [1, e^{j2π s cos θ}, …, e^{j2π s (M−1) cos θ}]ᵀ,  h: [M]
//! ```
//!
//! (plane wave per path, exact for the element positions above; the array is 7.5 cm long at
//! 6 GHz, so every user is in its far field). `c` normalises: with
//! [`RandomWalkParams::normalise`] one constant per trajectory makes the mean per-entry power over
//! the trajectory 1 (the dynamics are untouched); otherwise `c = 1` (physical gains).
//!
//! ## Motion
//!
//! The user starts at a point uniform (in area) in the annulus, with a direction uniform in
//! `[0, 2π)`, and moves `v T_s` per sample (`v` = 2 m/s). Before each step the direction is
//! re-drawn uniformly with probability [`RandomWalkParams::turn_probability`] (default 0: a
//! straight walk, the survey's "direction uniformly distributed in `[0, 2π)` from its initial
//! position"). A step that would leave the annulus is replaced by one in a freshly drawn uniform
//! direction that stays inside (up to 64 draws; if none does, the user stays put for that sample).
//! Sample `t` is the channel at the position after `t` steps. Since the geometry is recomputed for
//! every sample, Doppler shifts (path `p` rotates by `−2π Δd_p/λ` per sample, `|Δd_p| ≤ v T_s`) and
//! spatial consistency follow exactly.
//!
//! ## Sampling
//!
//! The default sample period `T_s` = 1.25 ms gives a maximum Doppler shift `f_D = v/λ` ≈ 40 Hz
//! and a normalised Doppler `f_D T_s` ≈ 0.05: a path's phase turns by up to 0.31 rad per sample, a
//! full turn in 20 samples — the prediction history. The sampled channel is unaliased while
//! `v T_s < λ/2`; parameters that break this are rejected.
//!
//! ## CSI feedback
//!
//! With [`RandomWalkParams::feedback_snr_db`] the transmitter observes `ĥ_t = h_t + n_t`,
//! `n_t ~ CN(0, σ² I)`, `σ² = P̄ · 10^{−SNR/10}` with `P̄` the trajectory's mean per-entry power
//! (so `SNR = −CEE` in the sense of the CSI-error spec); otherwise `ĥ_t = h_t`.
//!
//! ```
//! use beamlab_channel::{RandomWalkParams, random_walk_trajectory};
//! use rand::SeedableRng;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let p = RandomWalkParams::default();
//! let traj = random_walk_trajectory(&p, 30, &mut rng)?;
//! assert_eq!(traj.channels.dim(), (30, 4));
//! assert!((p.normalised_doppler() - 0.05).abs() < 1e-3); // λ = c / 6 GHz ≈ 4.997 cm
//! # Ok::<(), beamlab_channel::ChannelError>(())
//! ```

use std::f64::consts::{PI, TAU};

use ndarray::{Array1, Array2};
use num_complex::Complex64 as c64;
use rand::Rng;

use crate::street_canyon::{Polarisation, concrete_permittivity, fresnel_reflection};
use crate::{ChannelError, standard_complex_normal};

/// Speed of light (m/s).
const SPEED_OF_LIGHT: f64 = 299_792_458.0;

/// Parameters of the random-walk channel (defaults: the survey's Table 1, Fig. 4 column).
#[derive(Clone, Debug, PartialEq)]
pub struct RandomWalkParams {
    /// Carrier frequency (Hz), default 6 GHz.
    pub carrier_hz: f64,
    /// BS antennas `M`, default 4.
    pub n_tx_antennas: usize,
    /// Element spacing in wavelengths `s`, default 0.5.
    pub antenna_spacing_wavelengths: f64,
    /// BS height (m), default 10.
    pub bs_height_m: f64,
    /// User height (m), default 1.5.
    pub ue_height_m: f64,
    /// Smallest horizontal user–BS distance (m), default 10.
    pub min_distance_m: f64,
    /// Largest horizontal user–BS distance (m), default 100.
    pub cell_radius_m: f64,
    /// User speed `v` (m/s), default 2.
    pub speed_mps: f64,
    /// Sample period `T_s` (s), default 1.25 ms (`f_D T_s ≈ 0.05`).
    pub sample_period_s: f64,
    /// Probability per sample of re-drawing the direction, default 0 (straight walk).
    pub turn_probability: f64,
    /// Number of fixed point scatterers `S`, default 8.
    pub n_scatterers: usize,
    /// Scatterer reflection magnitude `ρ`, default 0.5.
    pub scatterer_reflection: f64,
    /// Probability that the LoS (and the ground bounce) exists in a scene, default 0.5.
    pub los_probability: f64,
    /// SNR of the CSI feedback (dB); `None` (default) for perfect feedback.
    pub feedback_snr_db: Option<f64>,
    /// Scale each trajectory to unit mean per-entry power (default true).
    pub normalise: bool,
}

impl Default for RandomWalkParams {
    fn default() -> Self {
        Self {
            carrier_hz: 6e9,
            n_tx_antennas: 4,
            antenna_spacing_wavelengths: 0.5,
            bs_height_m: 10.0,
            ue_height_m: 1.5,
            min_distance_m: 10.0,
            cell_radius_m: 100.0,
            speed_mps: 2.0,
            sample_period_s: 1.25e-3,
            turn_probability: 0.0,
            n_scatterers: 8,
            scatterer_reflection: 0.5,
            los_probability: 0.5,
            feedback_snr_db: None,
            normalise: true,
        }
    }
}

impl RandomWalkParams {
    /// The wavelength `λ = c / f` (m).
    #[must_use]
    pub fn wavelength_m(&self) -> f64 {
        SPEED_OF_LIGHT / self.carrier_hz
    }

    /// The normalised maximum Doppler shift `f_D T_s = v T_s / λ`.
    #[must_use]
    pub fn normalised_doppler(&self) -> f64 {
        self.speed_mps * self.sample_period_s / self.wavelength_m()
    }

    /// Validates the parameters.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for zero antennas, non-finite or non-positive
    /// frequencies, heights, distances, spacing or period, a negative speed, probabilities outside
    /// `[0, 1]`, `min_distance_m ≥ cell_radius_m`, a negative reflection, a NaN SNR, or an aliased
    /// sampling (`v T_s ≥ λ/2`).
    pub fn check(&self) -> Result<(), ChannelError> {
        let bad = |m: String| Err(ChannelError::InvalidParameter(m));
        let positive = |x: f64| x > 0.0 && x.is_finite();
        if self.n_tx_antennas == 0 {
            return bad("random walk needs n_tx_antennas >= 1".into());
        }
        for (name, x) in [
            ("carrier_hz", self.carrier_hz),
            ("antenna_spacing_wavelengths", self.antenna_spacing_wavelengths),
            ("bs_height_m", self.bs_height_m),
            ("ue_height_m", self.ue_height_m),
            ("min_distance_m", self.min_distance_m),
            ("cell_radius_m", self.cell_radius_m),
            ("sample_period_s", self.sample_period_s),
        ] {
            if !positive(x) {
                return bad(format!("{name} = {x} must be positive and finite"));
            }
        }
        if !(self.speed_mps >= 0.0 && self.speed_mps.is_finite()) {
            return bad(format!("speed_mps = {} must be finite and >= 0", self.speed_mps));
        }
        if !(self.scatterer_reflection >= 0.0 && self.scatterer_reflection.is_finite()) {
            return bad(format!("scatterer_reflection = {} must be finite and >= 0", self.scatterer_reflection));
        }
        for (name, p) in [("turn_probability", self.turn_probability), ("los_probability", self.los_probability)] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} = {p} must be in [0, 1]"));
            }
        }
        if !(self.min_distance_m < self.cell_radius_m) {
            return bad(format!(
                "min_distance_m = {} must be below cell_radius_m = {}",
                self.min_distance_m, self.cell_radius_m
            ));
        }
        if let Some(snr) = self.feedback_snr_db
            && !snr.is_finite()
        {
            return bad(format!("feedback_snr_db = {snr} must be finite"));
        }
        if !(self.speed_mps * self.sample_period_s < self.wavelength_m() / 2.0) {
            return bad(format!(
                "v T_s = {} m must be below λ/2 = {} m (aliased sampling)",
                self.speed_mps * self.sample_period_s,
                self.wavelength_m() / 2.0
            ));
        }
        Ok(())
    }
}

/// A fixed point scatterer of a [`RandomWalkScene`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointScatterer {
    /// Position `(x, y, z)` (m).
    pub position_m: [f64; 3],
    /// Complex reflection coefficient `Γ`.
    pub reflection: c64,
}

/// The kind of a [`RandomWalkPath`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RandomWalkPathKind {
    /// Line of sight.
    LineOfSight,
    /// Ground bounce.
    Ground,
    /// Single bounce on scatterer `i`.
    Scatterer(usize),
}

/// One propagation path at one user position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomWalkPath {
    /// What the path is.
    pub kind: RandomWalkPathKind,
    /// Total length `d_p` (m) from BS element 0.
    pub length_m: f64,
    /// `g_p = Γ_p λ/(4π d_p) e^{−j2π d_p/λ}` (before normalisation).
    pub gain: c64,
    /// `cos θ_p` of the departure direction against the array axis `+x`.
    pub cos_departure: f64,
}

/// The propagation environment of a random walk: BS, LoS flag and fixed scatterers.
#[derive(Clone, Debug)]
pub struct RandomWalkScene {
    params: RandomWalkParams,
    los: bool,
    scatterers: Vec<PointScatterer>,
}

/// A sampled trajectory.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomWalkTrajectory {
    /// True channels `h_t` as rows: `[T, M]`.
    pub channels: Array2<c64>,
    /// Fed-back CSI `ĥ_t` (equal to `channels` without feedback noise): `[T, M]`.
    pub observed: Array2<c64>,
    /// User positions `(x, y)` (m): `[T, 2]` (height `ue_height_m`).
    pub positions: Array2<f64>,
    /// The normalisation constant `c` applied to `channels`.
    pub scale: f64,
}

fn dist3(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

impl RandomWalkScene {
    /// A scene with the given LoS flag and scatterers (for tests and hand-made layouts).
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for bad parameters or non-finite scatterers.
    pub fn new(params: &RandomWalkParams, los: bool, scatterers: Vec<PointScatterer>) -> Result<Self, ChannelError> {
        params.check()?;
        if scatterers.iter().any(|s| s.position_m.iter().any(|x| !x.is_finite()) || !s.reflection.is_finite()) {
            return Err(ChannelError::InvalidParameter("scatterers must be finite".into()));
        }
        Ok(Self { params: params.clone(), los, scatterers })
    }

    /// Draws a scene: the LoS flag, then per scatterer radius, angle, height and phase.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for bad parameters.
    pub fn draw<R: Rng + ?Sized>(params: &RandomWalkParams, rng: &mut R) -> Result<Self, ChannelError> {
        params.check()?;
        let los = rng.random::<f64>() < params.los_probability;
        let (r0, r1) = (5.0_f64.min(params.cell_radius_m / 2.0), params.cell_radius_m);
        let scatterers = (0..params.n_scatterers)
            .map(|_| {
                let r = (r0 * r0 + rng.random::<f64>() * (r1 * r1 - r0 * r0)).sqrt();
                let a = TAU * rng.random::<f64>();
                let z = 1.0 + 14.0 * rng.random::<f64>();
                let phase = TAU * rng.random::<f64>();
                PointScatterer {
                    position_m: [r * a.cos(), r * a.sin(), z],
                    reflection: c64::from_polar(params.scatterer_reflection, phase),
                }
            })
            .collect();
        Ok(Self { params: params.clone(), los, scatterers })
    }

    /// The parameters.
    #[must_use]
    pub fn params(&self) -> &RandomWalkParams {
        &self.params
    }

    /// Whether the LoS (and ground bounce) exists.
    #[must_use]
    pub fn has_los(&self) -> bool {
        self.los
    }

    /// The scatterers.
    #[must_use]
    pub fn scatterers(&self) -> &[PointScatterer] {
        &self.scatterers
    }

    fn bs(&self) -> [f64; 3] {
        [0.0, 0.0, self.params.bs_height_m]
    }

    /// Every path to a user at horizontal position `(x, y)`.
    #[must_use]
    pub fn paths_at(&self, xy: [f64; 2]) -> Vec<RandomWalkPath> {
        let p = &self.params;
        let lambda = p.wavelength_m();
        let bs = self.bs();
        let ue = [xy[0], xy[1], p.ue_height_m];
        let gain = |gamma: c64, d: f64| gamma * (lambda / (4.0 * PI * d)) * c64::from_polar(1.0, -TAU * d / lambda);
        let mut paths = Vec::with_capacity(2 + self.scatterers.len());
        if self.los {
            let d = dist3(bs, ue);
            paths.push(RandomWalkPath {
                kind: RandomWalkPathKind::LineOfSight,
                length_m: d,
                gain: gain(c64::new(1.0, 0.0), d),
                cos_departure: (ue[0] - bs[0]) / d,
            });
            let image = [bs[0], bs[1], -bs[2]];
            let d = dist3(image, ue);
            let cos_incidence = (p.bs_height_m + p.ue_height_m) / d;
            let gamma = fresnel_reflection(concrete_permittivity(p.carrier_hz), cos_incidence, Polarisation::Tm);
            paths.push(RandomWalkPath {
                kind: RandomWalkPathKind::Ground,
                length_m: d,
                gain: gain(gamma, d),
                cos_departure: (ue[0] - bs[0]) / d,
            });
        }
        for (i, s) in self.scatterers.iter().enumerate() {
            let d1 = dist3(bs, s.position_m);
            let d = d1 + dist3(s.position_m, ue);
            let cos_departure = if d1 > 0.0 { (s.position_m[0] - bs[0]) / d1 } else { 0.0 };
            paths.push(RandomWalkPath {
                kind: RandomWalkPathKind::Scatterer(i),
                length_m: d,
                gain: gain(s.reflection, d),
                cos_departure,
            });
        }
        paths
    }

    /// The unnormalised channel `h = Σ_p g_p a(θ_p)^H: [M]` at horizontal position `(x, y)`.
    #[must_use]
    pub fn channel_at(&self, xy: [f64; 2]) -> Array1<c64> {
        let p = &self.params;
        let mut h = Array1::<c64>::zeros(p.n_tx_antennas);
        for path in self.paths_at(xy) {
            let step = -TAU * p.antenna_spacing_wavelengths * path.cos_departure;
            for (m, hm) in h.iter_mut().enumerate() {
                *hm += path.gain * c64::from_polar(1.0, step * m as f64);
            }
        }
        h
    }

    fn inside(&self, xy: [f64; 2]) -> bool {
        let r = xy[0].hypot(xy[1]);
        r >= self.params.min_distance_m && r <= self.params.cell_radius_m
    }

    /// Walks `n_samples` samples from `start` (horizontal, inside the annulus) with initial
    /// direction `direction_rad` (see the module docs), then applies normalisation and feedback
    /// noise.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for `n_samples = 0`, a non-finite direction or a start
    /// outside the annulus.
    pub fn walk<R: Rng + ?Sized>(
        &self,
        start: [f64; 2],
        direction_rad: f64,
        n_samples: usize,
        rng: &mut R,
    ) -> Result<RandomWalkTrajectory, ChannelError> {
        let p = &self.params;
        if n_samples == 0 {
            return Err(ChannelError::InvalidParameter("a trajectory needs n_samples >= 1".into()));
        }
        if !direction_rad.is_finite() || !start.iter().all(|x| x.is_finite()) || !self.inside(start) {
            return Err(ChannelError::InvalidParameter(format!(
                "start {start:?} must be finite and inside the annulus, direction {direction_rad} finite"
            )));
        }
        let m = p.n_tx_antennas;
        let step_len = p.speed_mps * p.sample_period_s;
        let mut channels = Array2::<c64>::zeros((n_samples, m));
        let mut positions = Array2::<f64>::zeros((n_samples, 2));
        let (mut pos, mut dir) = (start, direction_rad);
        for t in 0..n_samples {
            if t > 0 {
                if p.turn_probability > 0.0 && rng.random::<f64>() < p.turn_probability {
                    dir = TAU * rng.random::<f64>();
                }
                let advance = |d: f64| [pos[0] + step_len * d.cos(), pos[1] + step_len * d.sin()];
                let mut next = advance(dir);
                if !self.inside(next) {
                    next = pos;
                    for _ in 0..64 {
                        let d = TAU * rng.random::<f64>();
                        if self.inside(advance(d)) {
                            dir = d;
                            next = advance(d);
                            break;
                        }
                    }
                }
                pos = next;
            }
            positions[[t, 0]] = pos[0];
            positions[[t, 1]] = pos[1];
            channels.row_mut(t).assign(&self.channel_at(pos));
        }
        let mut scale = 1.0;
        if p.normalise {
            let power = channels.iter().map(|h| h.norm_sqr()).sum::<f64>() / (n_samples * m) as f64;
            if power > 0.0 && power.is_finite() {
                scale = 1.0 / power.sqrt();
                channels.mapv_inplace(|h| h * scale);
            }
        }
        let observed = match p.feedback_snr_db {
            None => channels.clone(),
            Some(snr_db) => {
                let power = channels.iter().map(|h| h.norm_sqr()).sum::<f64>() / (n_samples * m) as f64;
                let sigma = (power * 10f64.powf(-snr_db / 10.0)).sqrt();
                channels.mapv(|h| h + sigma * standard_complex_normal(rng))
            }
        };
        Ok(RandomWalkTrajectory { channels, observed, positions, scale })
    }

    /// Draws a start point uniform (in area) in the annulus and a uniform direction, then walks.
    ///
    /// # Errors
    /// As [`walk`](Self::walk).
    pub fn random_walk<R: Rng + ?Sized>(
        &self,
        n_samples: usize,
        rng: &mut R,
    ) -> Result<RandomWalkTrajectory, ChannelError> {
        let (r0, r1) = (self.params.min_distance_m, self.params.cell_radius_m);
        let r = (r0 * r0 + rng.random::<f64>() * (r1 * r1 - r0 * r0)).sqrt().clamp(r0, r1);
        let a = TAU * rng.random::<f64>();
        let dir = TAU * rng.random::<f64>();
        self.walk([r * a.cos(), r * a.sin()], dir, n_samples, rng)
    }
}

/// One trajectory in a freshly drawn scene: [`RandomWalkScene::draw`] then
/// [`RandomWalkScene::random_walk`].
///
/// # Errors
/// [`ChannelError::InvalidParameter`] for bad parameters or `n_samples = 0`.
pub fn random_walk_trajectory<R: Rng + ?Sized>(
    params: &RandomWalkParams,
    n_samples: usize,
    rng: &mut R,
) -> Result<RandomWalkTrajectory, ChannelError> {
    RandomWalkScene::draw(params, rng)?.random_walk(n_samples, rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn wrap(x: f64) -> f64 {
        (x + PI).rem_euclid(TAU) - PI
    }

    fn los_only() -> (RandomWalkParams, RandomWalkScene) {
        let p = RandomWalkParams { normalise: false, ..RandomWalkParams::default() };
        let scene = RandomWalkScene::new(&p, true, vec![]).unwrap();
        (p, scene)
    }

    #[test]
    fn los_doppler_and_step_length_follow_geometry() {
        let (p, scene) = los_only();
        let lambda = p.wavelength_m();
        let step = p.speed_mps * p.sample_period_s;
        for (start, dir) in [([60.0, 20.0], 0.3), ([-40.0, 50.0], 2.5), ([30.0, -70.0], 4.9)] {
            let traj = scene.walk(start, dir, 40, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
            for t in 1..40 {
                let (a, b) = (traj.positions.row(t - 1), traj.positions.row(t));
                let moved = (b[0] - a[0]).hypot(b[1] - a[1]);
                assert!((moved - step).abs() < 1e-12, "moved {moved}");
                // The LoS path's phase turns by −2π (u · v̂) v T_s / λ, u the unit vector BS → UE.
                let los = |xy: [f64; 2]| {
                    scene.paths_at(xy).into_iter().find(|q| q.kind == RandomWalkPathKind::LineOfSight).unwrap()
                };
                let (pa, pb) = (los([a[0], a[1]]), los([b[0], b[1]]));
                let ue = [a[0], a[1], p.ue_height_m - p.bs_height_m];
                let radial = (ue[0] * dir.cos() + ue[1] * dir.sin()) / pa.length_m;
                let predicted = -TAU * radial * step / lambda;
                let measured = wrap(pb.gain.arg() - pa.gain.arg());
                assert!((measured - predicted).abs() < 1e-5, "{measured} vs {predicted}");
                assert!(predicted.abs() <= TAU * p.normalised_doppler() + 1e-12);
            }
        }
    }

    #[test]
    fn los_array_response_matches_departure_angle() {
        let p = RandomWalkParams { normalise: false, ..RandomWalkParams::default() };
        let scene = RandomWalkScene::new(
            &p,
            false,
            vec![PointScatterer { position_m: [20.0, 35.0, 8.0], reflection: c64::new(0.5, 0.0) }],
        )
        .unwrap();
        let h = scene.channel_at([-30.0, 40.0]);
        let path = scene.paths_at([-30.0, 40.0])[0];
        let cos = 20.0 / (20.0f64.powi(2) + 35.0f64.powi(2) + 2.0f64.powi(2)).sqrt();
        assert!((path.cos_departure - cos).abs() < 1e-12);
        for m in 0..4 {
            let expected = path.gain * c64::from_polar(1.0, -PI * m as f64 * cos);
            assert!((h[m] - expected).norm() < 1e-12 * path.gain.norm());
        }
        // Plane wave vs exact spherical phases to each element: equal up to the far-field error.
        let lambda = p.wavelength_m();
        let s = scene.scatterers()[0].position_m;
        let d2 = dist3(s, [-30.0, 40.0, p.ue_height_m]);
        for m in 0..4 {
            let el = [-(m as f64) * lambda / 2.0, 0.0, p.bs_height_m];
            let d = dist3(el, s) + d2;
            let exact = c64::from_polar(1.0, -TAU * d / lambda);
            let ratio = h[m] / path.gain.norm() / exact;
            assert!((ratio.arg()).abs() < 1e-2, "element {m}: {}", ratio.arg());
        }
    }

    #[test]
    fn small_steps_give_small_changes() {
        let p = RandomWalkParams { turn_probability: 0.1, ..RandomWalkParams::default() };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let bound_per_path = TAU * p.normalised_doppler() * 1.05;
        for _ in 0..20 {
            let scene = RandomWalkScene::draw(&p, &mut rng).unwrap();
            let traj = scene.random_walk(50, &mut rng).unwrap();
            for t in 1..50 {
                let xy = [traj.positions[[t - 1, 0]], traj.positions[[t - 1, 1]]];
                let sum_gain: f64 = scene.paths_at(xy).iter().map(|q| q.gain.norm()).sum::<f64>() * traj.scale;
                for m in 0..p.n_tx_antennas {
                    let dh = (traj.channels[[t, m]] - traj.channels[[t - 1, m]]).norm();
                    // Each path turns by at most 2π v T_s / λ and its magnitude barely changes.
                    assert!(dh <= sum_gain * bound_per_path, "{dh} > {}", sum_gain * bound_per_path);
                }
            }
            // In the linear regime (T_s / 10), halving the period halves the change.
            let base = RandomWalkParams { sample_period_s: p.sample_period_s / 10.0, normalise: false, ..p.clone() };
            let half = RandomWalkParams { sample_period_s: base.sample_period_s / 2.0, normalise: false, ..p.clone() };
            let scene_half = RandomWalkScene::new(&half, scene.has_los(), scene.scatterers().to_vec()).unwrap();
            let full = RandomWalkScene::new(&base, scene.has_los(), scene.scatterers().to_vec()).unwrap();
            let a = full.walk([50.0, 0.0], 1.0, 2, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
            let b = scene_half.walk([50.0, 0.0], 1.0, 2, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
            let d = |x: &RandomWalkTrajectory| {
                (0..4).map(|m| (x.channels[[1, m]] - x.channels[[0, m]]).norm_sqr()).sum::<f64>().sqrt()
            };
            let ratio = d(&b) / d(&a);
            assert!((ratio - 0.5).abs() < 0.02, "ratio {ratio}");
        }
    }

    #[test]
    fn walk_stays_in_annulus_and_is_deterministic() {
        let p =
            RandomWalkParams { turn_probability: 0.05, speed_mps: 20.0, sample_period_s: 1e-3, ..Default::default() };
        let run = |seed| random_walk_trajectory(&p, 3000, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
        let a = run(3);
        assert_eq!(a, run(3));
        assert_ne!(a.channels, run(4).channels);
        for row in a.positions.rows() {
            let r = row[0].hypot(row[1]);
            assert!((p.min_distance_m..=p.cell_radius_m).contains(&r), "r = {r}");
        }
        // Unit mean per-entry power.
        let power = a.channels.iter().map(|h| h.norm_sqr()).sum::<f64>() / a.channels.len() as f64;
        assert!((power - 1.0).abs() < 1e-12);
        assert_eq!(a.channels, a.observed);
        // A straight walk keeps its direction until the boundary.
        let straight = RandomWalkScene::new(&RandomWalkParams::default(), true, vec![]).unwrap();
        let t = straight.walk([50.0, 0.0], 0.5, 100, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        for k in 1..100 {
            let dx = t.positions[[k, 0]] - t.positions[[k - 1, 0]];
            let dy = t.positions[[k, 1]] - t.positions[[k - 1, 1]];
            assert!((dy.atan2(dx) - 0.5).abs() < 1e-9);
        }
    }

    #[test]
    fn feedback_noise_has_the_stated_snr() {
        let p = RandomWalkParams { feedback_snr_db: Some(10.0), ..Default::default() };
        let t = random_walk_trajectory(&p, 20_000, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
        let err = (&t.observed - &t.channels).iter().map(|e| e.norm_sqr()).sum::<f64>();
        let sig = t.channels.iter().map(|h| h.norm_sqr()).sum::<f64>();
        let snr_db = 10.0 * (sig / err).log10();
        assert!((snr_db - 10.0).abs() < 0.1, "{snr_db}");
    }

    #[test]
    fn bad_parameters_are_typed_errors() {
        let ok = RandomWalkParams::default();
        let cases = [
            RandomWalkParams { n_tx_antennas: 0, ..ok.clone() },
            RandomWalkParams { carrier_hz: f64::NAN, ..ok.clone() },
            RandomWalkParams { speed_mps: -1.0, ..ok.clone() },
            RandomWalkParams { sample_period_s: 0.0, ..ok.clone() },
            RandomWalkParams { turn_probability: 1.5, ..ok.clone() },
            RandomWalkParams { min_distance_m: 200.0, ..ok.clone() },
            RandomWalkParams { feedback_snr_db: Some(f64::NAN), ..ok.clone() },
            RandomWalkParams { sample_period_s: 0.02, ..ok.clone() },
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for c in cases {
            assert!(
                matches!(random_walk_trajectory(&c, 10, &mut rng), Err(ChannelError::InvalidParameter(_))),
                "{c:?}"
            );
        }
        assert!(matches!(random_walk_trajectory(&ok, 0, &mut rng), Err(ChannelError::InvalidParameter(_))));
        let scene = RandomWalkScene::draw(&ok, &mut rng).unwrap();
        assert!(scene.walk([1.0, 0.0], 0.0, 5, &mut rng).is_err());
        assert!(scene.walk([50.0, 0.0], f64::NAN, 5, &mut rng).is_err());
    }
}
