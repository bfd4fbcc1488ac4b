//! Moving users in a street canyon (model 5 of the channel spec): a deterministic geometric
//! channel built with the image method, the synthetic stand-in for the DeepMIMO O1 data set in
//! GLNN's dynamic scenario.
//!
//! ## Geometry
//!
//! Coordinates are `(x, y, z)` in metres. The street runs along `x`; its walls are the planes
//! `y = ±W` (`W` = [`StreetCanyonParams::half_width_m`], 20 m by default), infinitely tall and
//! long as far as propagation is concerned; the ground is `z = 0`. The base station (BS) stands at
//! `(x_BS, y_BS, h_BS)` (default `(0, 0, 6)`) with an `M`-element half-wavelength ULA along `x`.
//! Users are at height `h_UE` (2 m) with `N`-element half-wavelength ULAs (default `N = 2`), also
//! along `x`. Users travel along `±x`, so this *is* their direction of travel, up to sign; the
//! orientation is kept fixed at `+x` so that the element order does not flip when a user turns
//! round at the end of the street.
//!
//! ## Paths
//!
//! For every user and slot the geometry is traced afresh, giving `6 + S` paths ([`PathKind`]):
//! line of sight; one first-order reflection per wall; the two second-order wall-to-wall
//! reflections (`−W` then `+W`, and `+W` then `−W`); the ground bounce (image of the BS below the
//! ground); and one single-bounce path via each of the `S` fixed point scatterers. Specular paths
//! come from the image method, so their length is the distance between the receiver and the
//! mirrored BS. Diffraction, blockage, wall–ground combinations and higher orders are not modelled.
//!
//! A path `p` of total length `d_p` (sum of its legs) has the complex gain
//!
//! ```text
//! g_p = Γ_p λ / (4π d_p) · e^{−j 2π d_p / λ}
//! ```
//!
//! where `Γ_p` is the product of the Fresnel reflection coefficients of its bounces
//! ([`fresnel_reflection`], ITU-R P.2040 concrete with [`concrete_permittivity`]) or, for a
//! scatterer, `ρ e^{jφ_s}` with a fixed magnitude `ρ` (default 0.5) and a phase `φ_s` drawn once per
//! scatterer. Antennas are vertically polarised, so the electric field is perpendicular to the
//! plane of incidence on the vertical walls (**TE**) and lies in it on the ground (**TM**); the
//! small cross-polar coupling due to the paths' elevation is neglected.
//!
//! ## Channel
//!
//! With `θ_D,p` the angle between the BS array axis (`+x`) and the departure direction of path
//! `p`, and `θ_A,p` the angle between the UE array axis (`+x`) and the direction from the UE
//! towards the path's last interaction point (the BS for line of sight), both in `[0, π]`,
//!
//! ```text
//! H_k = c · Σ_p g_p a_N(θ_A,p) a_M(θ_D,p)^H,        H_k: [N × M]
//! a_n(θ) = [1, e^{jπ cos θ}, …, e^{jπ (n−1) cos θ}]ᵀ, a_n: [n]   (unit-modulus entries)
//! ```
//!
//! This is the plane-wave (per-path far-field) form of the spec. With the `^H` on the BS side it
//! is exact, under that approximation, for BS element `m` at `x_BS − mλ/2` and UE element `n` at
//! `x_UE + nλ/2` (element 0 at the nominal position; tested). The 64-element array at 3.5 GHz is
//! 2.7 m long, so users closer than its Fraunhofer distance (≈ 170 m) are really in its near field;
//! like the spec, the model ignores this.
//!
//! The constant `c` follows [`Normalisation`]: by default ([`Normalisation::Trajectory`]) one
//! constant per scenario, computed exactly at construction, makes the mean per-entry power over all
//! users and all slots of the speed schedule equal to 1 (the unit-power channels of the GLNN
//! experiments, `P = 10`, `σ² = 1`), while keeping the relative path loss between users and over
//! time; [`Normalisation::PerSlot`] scales every block to `‖H_k‖_F² = N M`;
//! [`Normalisation::Raw`] returns the physical gains (`c = 1`, entries around `λ/(4πd)`).
//!
//! ## Motion
//!
//! User `k` starts at `(x_k, y_k, h_UE)` with `x_k` uniform in [`StreetCanyonParams::start_x_m`],
//! `y_k` uniform in `[−W + margin, W − margin]` and a direction `±x` with probability 1/2 each. It
//! keeps its `y`; during slot `t` it moves by `v(t) T_slot` along its direction, where `v(t)` is
//! the speed of the phase of the speed schedule containing `t` (default 6, 15 and 30 m/s for 700,
//! 600 and 500 slots, `T_slot` = 1 ms), so the position at slot `t` is the start plus the distance
//! `Σ_{τ<t} v(τ) T_slot`. A user reaching an end of the street ([`StreetCanyonParams::street_x_m`])
//! is reflected: it turns round and continues, so positions stay in the street and are continuous.
//! All users share the speed schedule. Since the geometry is recomputed every slot, Doppler shifts
//! (the phase of `g_p` rotates by `−2π Δd_p/λ` per slot) and spatial consistency follow exactly.
//! The slot-sampled channel is free of aliasing while `v T_slot < λ/2`: up to 30 m/s at 3.5 GHz
//! (λ ≈ 8.6 cm), but only up to ≈ 5.4 m/s at 28 GHz.
//!
//! ## Carrier frequency
//!
//! The spec leaves the carrier open; the default is 3.5 GHz, the sub-6 GHz band of DeepMIMO O1
//! (which also has 28 GHz scenarios; set [`StreetCanyonParams::carrier_hz`] to `28e9` for those).
//! P.2040's concrete model is stated for 1–100 GHz.
//!
//! ## Randomness
//!
//! Only [`StreetCanyon::new`] draws: first, per scatterer, `x`, `y`, `z` and phase; then, per
//! user, start `x`, `y` and direction. Everything after that is a deterministic function of the
//! scenario and the slot. This is a synthetic substitute for DeepMIMO O1, not a ray tracer of it.

use std::f64::consts::{PI, TAU};

use beamlab_core::Channel;
use ndarray::Array2;
use num_complex::Complex64 as c64;
use rand::Rng;

use crate::ChannelError;

mod params;
mod paths;
#[cfg(test)]
mod tests;

use params::invalid;
pub use params::{Normalisation, StreetCanyonParams};
pub use paths::{PathKind, Polarisation, PropagationPath, Wall, concrete_permittivity, fresnel_reflection};
use paths::{Point, assemble, axis_angle, crossing, distance, mirror, wall_cos};

/// Height range of the point scatterers (cars, poles, signs), metres.
const SCATTERER_HEIGHT_M: (f64, f64) = (1.0, 5.0);

/// A fixed point scatterer of a scenario.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scatterer {
    /// Position `(x, y, z)` in metres.
    pub position_m: [f64; 3],
    /// Fixed phase `φ_s ∈ [0, 2π)` of its reflection coefficient `ρ e^{jφ_s}`.
    pub phase_rad: f64,
}

/// Where a user is in a given slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UserState {
    /// Position `(x, y, z)` in metres.
    pub position_m: [f64; 3],
    /// Direction of travel along `x` during this slot: `+1.0` or `−1.0`.
    pub direction: f64,
}

/// A street-canyon scenario: parameters, scatterers and users' initial states, from which the
/// channel of every slot follows deterministically (see the [module docs](self)).
///
/// # Example
/// ```
/// use beamlab_channel::{StreetCanyon, StreetCanyonParams};
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
/// let params = StreetCanyonParams { speed_schedule: vec![(6.0, 10), (30.0, 10)], ..Default::default() };
/// let scenario = StreetCanyon::new(params, 4, &mut rng)?;
/// assert_eq!(scenario.n_slots(), 20);
/// assert_eq!(scenario.user_speed_at(10), Some(30.0));
/// let h = scenario.channel_at(0)?;
/// assert_eq!((h.n_users(), h.n_tx(), h.n_rx()), (4, 64, vec![2; 4]));
/// // Unit mean per-entry power over the whole trajectory (the default normalisation).
/// let energy: f64 = scenario.trajectory().map(|h| h.map(|h| h.energy())).sum::<Result<f64, _>>()?;
/// assert!((energy / (20.0 * 4.0 * 2.0 * 64.0) - 1.0).abs() < 1e-9);
/// # Ok::<(), beamlab_channel::ChannelError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct StreetCanyon {
    params: StreetCanyonParams,
    scatterers: Vec<Scatterer>,
    starts: Vec<UserState>,
    /// First slot of each speed phase.
    phase_start_slot: Vec<usize>,
    /// Distance travelled before each speed phase, metres.
    phase_start_distance: Vec<f64>,
    n_slots: usize,
    wavelength: f64,
    eps_concrete: c64,
    /// Amplitude factor of [`Normalisation::Trajectory`] (1 otherwise).
    trajectory_scale: f64,
}

impl StreetCanyon {
    /// Builds a scenario with `n_users` users: draws the scatterers, then the users' start
    /// positions and directions (see the [module docs](self)), and, with
    /// [`Normalisation::Trajectory`], computes the normalisation constant over the whole speed
    /// schedule (cost `O(K · slots · paths · N · M)`).
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for zero users, parameters rejected by
    /// [`StreetCanyonParams::check`], or a trajectory without any channel energy.
    pub fn new<R: Rng + ?Sized>(params: StreetCanyonParams, n_users: usize, rng: &mut R) -> Result<Self, ChannelError> {
        params.check()?;
        if n_users == 0 {
            return Err(invalid("street canyon: needs at least one user".into()));
        }
        let uniform = |rng: &mut R, lo: f64, hi: f64| lo + (hi - lo) * rng.random::<f64>();
        let y_max = params.half_width_m - params.wall_margin_m;
        let (s_lo, s_hi) = params.start_x_m;
        let scatterers = (0..params.n_scatterers)
            .map(|_| {
                let x = uniform(rng, s_lo, s_hi);
                let y = uniform(rng, -y_max, y_max);
                let z = uniform(rng, SCATTERER_HEIGHT_M.0, SCATTERER_HEIGHT_M.1);
                let phase_rad = uniform(rng, 0.0, TAU);
                Scatterer { position_m: [x, y, z], phase_rad }
            })
            .collect();
        let starts = (0..n_users)
            .map(|_| {
                let x = uniform(rng, s_lo, s_hi);
                let y = uniform(rng, -y_max, y_max);
                let direction = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                UserState { position_m: [x, y, params.ue_height_m], direction }
            })
            .collect();
        let mut phase_start_slot = Vec::with_capacity(params.speed_schedule.len());
        let mut phase_start_distance = Vec::with_capacity(params.speed_schedule.len());
        let (mut slot, mut distance) = (0usize, 0.0);
        for &(speed, n) in &params.speed_schedule {
            phase_start_slot.push(slot);
            phase_start_distance.push(distance);
            slot = slot
                .checked_add(n)
                .ok_or_else(|| invalid("street canyon: the speed schedule has too many slots".into()))?;
            distance += speed * params.slot_s * n as f64;
        }
        if !distance.is_finite() {
            return Err(invalid("street canyon: the total distance travelled overflows".into()));
        }
        let mut scenario = Self {
            wavelength: params.wavelength_m(),
            eps_concrete: concrete_permittivity(params.carrier_hz),
            params,
            scatterers,
            starts,
            phase_start_slot,
            phase_start_distance,
            n_slots: slot,
            trajectory_scale: 1.0,
        };
        if scenario.params.normalisation == Normalisation::Trajectory {
            let mut energy = 0.0;
            for slot in 0..scenario.n_slots {
                for user in 0..n_users {
                    let h = scenario.raw_block(scenario.state(user, slot).position_m);
                    energy += h.iter().map(|z| z.norm_sqr()).sum::<f64>();
                }
            }
            let entries = (scenario.n_slots * n_users * scenario.params.n_rx * scenario.params.n_tx) as f64;
            let scale = (entries / energy).sqrt();
            if !(scale.is_finite() && scale > 0.0) {
                return Err(invalid(format!("street canyon: cannot normalise a trajectory of energy {energy}")));
            }
            scenario.trajectory_scale = scale;
        }
        Ok(scenario)
    }

    /// The parameters.
    #[must_use]
    pub fn params(&self) -> &StreetCanyonParams {
        &self.params
    }

    /// The fixed point scatterers.
    #[must_use]
    pub fn scatterers(&self) -> &[Scatterer] {
        &self.scatterers
    }

    /// Number of users `K`.
    #[must_use]
    pub fn n_users(&self) -> usize {
        self.starts.len()
    }

    /// Number of slots of the trajectory (the sum of the speed schedule's slot counts).
    #[must_use]
    pub fn n_slots(&self) -> usize {
        self.n_slots
    }

    /// Amplitude factor `c` applied to the raw gains under [`Normalisation::Trajectory`]
    /// (1 under the other normalisations).
    #[must_use]
    pub fn trajectory_scale(&self) -> f64 {
        self.trajectory_scale
    }

    /// Index of the speed phase containing `slot` (`None` past the trajectory).
    fn phase_of(&self, slot: usize) -> Option<usize> {
        if slot >= self.n_slots {
            return None;
        }
        // The last phase whose first slot is <= slot and that is not empty.
        (0..self.params.speed_schedule.len())
            .rev()
            .find(|&i| self.phase_start_slot[i] <= slot && self.params.speed_schedule[i].1 > 0)
    }

    /// The users' speed in m/s during `slot` (the motion from `slot` to `slot + 1`), or `None`
    /// past the trajectory. With the default schedule: 6 m/s for slots 0–699, 15 m/s for 700–1299
    /// and 30 m/s for 1300–1799.
    #[must_use]
    pub fn user_speed_at(&self, slot: usize) -> Option<f64> {
        self.phase_of(slot).map(|i| self.params.speed_schedule[i].0)
    }

    fn state(&self, user: usize, slot: usize) -> UserState {
        let start = self.starts[user];
        let distance = match self.phase_of(slot) {
            Some(i) => {
                self.phase_start_distance[i]
                    + self.params.speed_schedule[i].0 * self.params.slot_s * (slot - self.phase_start_slot[i]) as f64
            }
            None => 0.0,
        };
        // Unfold the reflections at the street ends: a triangle wave of period 2L.
        let (x_lo, x_hi) = self.params.street_x_m;
        let length = x_hi - x_lo;
        let unfolded = (start.position_m[0] - x_lo + start.direction * distance).rem_euclid(2.0 * length);
        let (x, direction) = if unfolded <= length {
            (x_lo + unfolded, start.direction)
        } else {
            (x_lo + 2.0 * length - unfolded, -start.direction)
        };
        UserState { position_m: [x, start.position_m[1], start.position_m[2]], direction }
    }

    fn check_slot(&self, slot: usize) -> Result<(), ChannelError> {
        if slot >= self.n_slots {
            return Err(invalid(format!(
                "street canyon: slot {slot} is past the trajectory of {} slots",
                self.n_slots
            )));
        }
        Ok(())
    }

    fn check_user(&self, user: usize) -> Result<(), ChannelError> {
        if user >= self.n_users() {
            return Err(invalid(format!("street canyon: user {user} does not exist ({} users)", self.n_users())));
        }
        Ok(())
    }

    /// Position and direction of travel of `user` in `slot`.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for a user or slot out of range.
    pub fn user_state(&self, user: usize, slot: usize) -> Result<UserState, ChannelError> {
        self.check_user(user)?;
        self.check_slot(slot)?;
        Ok(self.state(user, slot))
    }

    /// The propagation paths from the BS to `user` in `slot`, in the order line of sight, wall
    /// `−W`, wall `+W`, wall–wall starting at `−W`, wall–wall starting at `+W`, ground,
    /// scatterers.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for a user or slot out of range.
    pub fn paths(&self, user: usize, slot: usize) -> Result<Vec<PropagationPath>, ChannelError> {
        self.check_user(user)?;
        self.check_slot(slot)?;
        Ok(self.trace(self.state(user, slot).position_m))
    }

    /// The channel of all users in `slot`: blocks `H_k: [N × M]`, scaled as
    /// [`StreetCanyonParams::normalisation`] says. Deterministic given the scenario.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for a slot past the trajectory (or, with
    /// [`Normalisation::PerSlot`], a block without energy).
    pub fn channel_at(&self, slot: usize) -> Result<Channel, ChannelError> {
        self.check_slot(slot)?;
        let blocks = (0..self.n_users())
            .map(|user| {
                let mut h = self.raw_block(self.state(user, slot).position_m);
                let scale = match self.params.normalisation {
                    Normalisation::Raw => 1.0,
                    Normalisation::Trajectory => self.trajectory_scale,
                    Normalisation::PerSlot => {
                        let energy: f64 = h.iter().map(|z| z.norm_sqr()).sum();
                        let scale = (h.len() as f64 / energy).sqrt();
                        if !scale.is_finite() {
                            return Err(invalid(format!(
                                "street canyon: user {user} has a channel of energy {energy} in slot {slot}"
                            )));
                        }
                        scale
                    }
                };
                h.mapv_inplace(|z| z * scale);
                Ok(h)
            })
            .collect::<Result<Vec<_>, ChannelError>>()?;
        Ok(Channel::new(blocks)?)
    }

    /// The channels of slots `0, 1, …, n_slots − 1`, as [`StreetCanyon::channel_at`].
    pub fn trajectory(&self) -> impl Iterator<Item = Result<Channel, ChannelError>> + '_ {
        (0..self.n_slots).map(|slot| self.channel_at(slot))
    }

    /// Raw block `Σ_p g_p a_N(θ_A) a_M(θ_D)^H` for a user at `ue`.
    fn raw_block(&self, ue: Point) -> Array2<c64> {
        assemble(&self.trace(ue), self.params.n_rx, self.params.n_tx)
    }

    /// Traces every path from the BS to a user at `ue` (see [`StreetCanyon::paths`]).
    fn trace(&self, ue: Point) -> Vec<PropagationPath> {
        let p = &self.params;
        let w = p.half_width_m;
        let bs = [p.bs_xy_m.0, p.bs_xy_m.1, p.bs_height_m];
        let one = c64::new(1.0, 0.0);
        let mut paths = Vec::with_capacity(6 + self.scatterers.len());
        paths.push(self.path(PathKind::LineOfSight, &[bs, ue], one));
        for wall in [Wall::MinusY, Wall::PlusY] {
            let c = wall.y(w);
            let image = mirror(bs, 1, c);
            let hit = crossing(image, ue, 1, c);
            let gamma = fresnel_reflection(self.eps_concrete, wall_cos(image, ue), Polarisation::Te);
            paths.push(self.path(PathKind::Wall(wall), &[bs, hit, ue], gamma));
        }
        for first in [Wall::MinusY, Wall::PlusY] {
            let (c1, c2) = (first.y(w), first.other().y(w));
            let image1 = mirror(bs, 1, c1);
            let image2 = mirror(image1, 1, c2);
            let hit2 = crossing(image2, ue, 1, c2);
            let hit1 = crossing(image1, hit2, 1, c1);
            let gamma = fresnel_reflection(self.eps_concrete, wall_cos(image2, ue), Polarisation::Te).powi(2);
            paths.push(self.path(PathKind::WallWall { first }, &[bs, hit1, hit2, ue], gamma));
        }
        let image = mirror(bs, 2, 0.0);
        let hit = crossing(image, ue, 2, 0.0);
        let cos_ground = (ue[2] - image[2]).abs() / distance(image, ue);
        let gamma = fresnel_reflection(self.eps_concrete, cos_ground, Polarisation::Tm);
        paths.push(self.path(PathKind::Ground, &[bs, hit, ue], gamma));
        for (i, s) in self.scatterers.iter().enumerate() {
            let gamma = c64::from_polar(p.scatterer_reflection, s.phase_rad);
            paths.push(self.path(PathKind::Scatterer(i), &[bs, s.position_m, ue], gamma));
        }
        paths
    }

    /// A path through `points` (BS, interactions, UE) with reflection factor `gamma`.
    fn path(&self, kind: PathKind, points: &[Point], gamma: c64) -> PropagationPath {
        let length_m: f64 = points.windows(2).map(|leg| distance(leg[0], leg[1])).sum();
        let n = points.len();
        let lambda = self.wavelength;
        let gain = gamma * (lambda / (4.0 * PI * length_m)) * c64::from_polar(1.0, -TAU * length_m / lambda);
        PropagationPath {
            kind,
            length_m,
            aod_rad: axis_angle(points[0], points[1]),
            aoa_rad: axis_angle(points[n - 1], points[n - 2]),
            gain,
            interactions: points[1..n - 1].to_vec(),
        }
    }
}
