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
use ndarray::{Array1, Array2};
use num_complex::Complex64 as c64;
use rand::Rng;

use crate::ChannelError;

/// Speed of light in vacuum, m/s.
const SPEED_OF_LIGHT: f64 = 299_792_458.0;
/// Vacuum permittivity ε₀, F/m.
const VACUUM_PERMITTIVITY: f64 = 8.854_187_812_8e-12;
/// Height range of the point scatterers (cars, poles, signs), metres.
const SCATTERER_HEIGHT_M: (f64, f64) = (1.0, 5.0);

type Point = [f64; 3];

/// Complex relative permittivity of concrete per ITU-R P.2040 (Table 3) at `carrier_hz`:
/// `ε = ε′ − j σ / (2π f ε₀)` with `ε′ = 5.31` and `σ = 0.0326 f_GHz^0.8095` S/m. The table is
/// stated for 1–100 GHz; a non-positive or non-finite frequency gives a non-finite result.
#[must_use]
pub fn concrete_permittivity(carrier_hz: f64) -> c64 {
    let sigma = 0.0326 * (carrier_hz / 1e9).powf(0.8095);
    c64::new(5.31, -sigma / (TAU * carrier_hz * VACUUM_PERMITTIVITY))
}

/// Polarisation of the incident field relative to the plane of incidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Polarisation {
    /// Transverse electric (perpendicular): the electric field is perpendicular to the plane of
    /// incidence (vertical antennas, vertical walls).
    Te,
    /// Transverse magnetic (parallel): the electric field lies in the plane of incidence
    /// (vertical antennas, ground).
    Tm,
}

/// Fresnel reflection coefficient of a half-space of complex relative permittivity `eps`
/// (`ε′ − jε″`), for an incidence angle `θ` from the surface normal given as `cos θ` (clamped
/// to `[0, 1]`), in ITU-R P.2040's convention (eqs. 31–32):
///
/// ```text
/// Γ_TE = (cos θ − √(ε − sin²θ)) / (cos θ + √(ε − sin²θ))
/// Γ_TM = (ε cos θ − √(ε − sin²θ)) / (ε cos θ + √(ε − sin²θ))
/// ```
///
/// Both tend to −1 at grazing incidence (`cos θ → 0`); at normal incidence
/// `Γ_TE = (1 − √ε)/(1 + √ε) = −Γ_TM`. `eps = 1` at exact grazing incidence (0/0) and non-finite
/// inputs give NaN.
#[must_use]
pub fn fresnel_reflection(eps: c64, cos_incidence: f64, polarisation: Polarisation) -> c64 {
    let c = cos_incidence.clamp(0.0, 1.0);
    let root = (eps - (1.0 - c * c)).sqrt();
    match polarisation {
        Polarisation::Te => (c - root) / (c + root),
        Polarisation::Tm => (eps * c - root) / (eps * c + root),
    }
}

/// How the channel blocks are scaled (the constant `c` of the [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Normalisation {
    /// Physical gains, `c = 1` (entries of the order of `λ/(4πd)`, about `10⁻³` to `10⁻⁴`).
    Raw,
    /// One constant per scenario such that the mean per-entry power over all users and all slots of
    /// the speed schedule is exactly 1; path loss differences between users and over time are
    /// kept. The default.
    #[default]
    Trajectory,
    /// Every block scaled to `‖H_k(t)‖_F² = N M` (unit per-entry power in every slot, large-scale
    /// fading removed).
    PerSlot,
}

/// Parameters of the street-canyon model; defaults follow the channel spec (see the
/// [module docs](self) for the geometry).
#[derive(Clone, Debug, PartialEq)]
pub struct StreetCanyonParams {
    /// Carrier frequency `f` in Hz (default 3.5 GHz); `λ = c₀/f`.
    pub carrier_hz: f64,
    /// Half-width `W` of the street: walls at `y = ±W` (default 20 m).
    pub half_width_m: f64,
    /// Ends of the street `(x_min, x_max)`, where users turn round (default `(−100, 100)` m).
    pub street_x_m: (f64, f64),
    /// Range of the users' start `x` (and of the scatterers' `x`), inside the street
    /// (default `(−50, 50)` m).
    pub start_x_m: (f64, f64),
    /// Users and scatterers keep at least this far from the walls: `|y| ≤ W − margin`
    /// (default 2 m).
    pub wall_margin_m: f64,
    /// BS position `(x, y)` (default `(0, 0)`); it must lie strictly between the walls.
    pub bs_xy_m: (f64, f64),
    /// BS height `h_BS` (default 6 m); it must exceed the users' height.
    pub bs_height_m: f64,
    /// User height `h_UE` (default 2 m).
    pub ue_height_m: f64,
    /// BS antennas `M` (default 64).
    pub n_tx: usize,
    /// Receive antennas per user `N` (default 2).
    pub n_rx: usize,
    /// Number of fixed point scatterers `S` (default 4; the spec asks for 3–5).
    pub n_scatterers: usize,
    /// Reflection magnitude `ρ ∈ [0, 1]` of every scatterer (default 0.5).
    pub scatterer_reflection: f64,
    /// Slot duration `T_slot` in seconds (default 1 ms).
    pub slot_s: f64,
    /// Speed phases `(speed in m/s, number of slots)`, played in order (default
    /// `[(6, 700), (15, 600), (30, 500)]`).
    pub speed_schedule: Vec<(f64, usize)>,
    /// Scaling of the output channels (default [`Normalisation::Trajectory`]).
    pub normalisation: Normalisation,
}

impl Default for StreetCanyonParams {
    /// The spec's scenario at 3.5 GHz: 64 BS antennas, 2 antennas per user, 4 scatterers and the
    /// 6/15/30 m/s schedule over 700/600/500 slots of 1 ms.
    fn default() -> Self {
        Self {
            carrier_hz: 3.5e9,
            half_width_m: 20.0,
            street_x_m: (-100.0, 100.0),
            start_x_m: (-50.0, 50.0),
            wall_margin_m: 2.0,
            bs_xy_m: (0.0, 0.0),
            bs_height_m: 6.0,
            ue_height_m: 2.0,
            n_tx: 64,
            n_rx: 2,
            n_scatterers: 4,
            scatterer_reflection: 0.5,
            slot_s: 1e-3,
            speed_schedule: vec![(6.0, 700), (15.0, 600), (30.0, 500)],
            normalisation: Normalisation::Trajectory,
        }
    }
}

fn invalid(message: String) -> ChannelError {
    ChannelError::InvalidParameter(message)
}

impl StreetCanyonParams {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for a non-finite value anywhere; a non-positive carrier,
    /// street half-width or slot duration; street ends not increasing; a start range not inside the
    /// street; a wall margin negative or not smaller than `W` (the walls would not enclose the
    /// users); a BS not strictly between the walls; heights with `0 < h_UE < h_BS` violated; zero
    /// antennas; a scatterer reflection outside `[0, 1]`; an empty speed schedule, a negative speed
    /// or no slot at all.
    pub fn check(&self) -> Result<(), ChannelError> {
        let reals = [
            ("carrier_hz", self.carrier_hz),
            ("half_width_m", self.half_width_m),
            ("street_x_m.0", self.street_x_m.0),
            ("street_x_m.1", self.street_x_m.1),
            ("start_x_m.0", self.start_x_m.0),
            ("start_x_m.1", self.start_x_m.1),
            ("wall_margin_m", self.wall_margin_m),
            ("bs_xy_m.0", self.bs_xy_m.0),
            ("bs_xy_m.1", self.bs_xy_m.1),
            ("bs_height_m", self.bs_height_m),
            ("ue_height_m", self.ue_height_m),
            ("scatterer_reflection", self.scatterer_reflection),
            ("slot_s", self.slot_s),
        ];
        if let Some((name, value)) = reals.iter().find(|(_, v)| !v.is_finite()) {
            return Err(invalid(format!("street canyon: {name} must be finite, got {value}")));
        }
        for (name, value) in
            [("carrier_hz", self.carrier_hz), ("half_width_m", self.half_width_m), ("slot_s", self.slot_s)]
        {
            if !(value > 0.0) {
                return Err(invalid(format!("street canyon: {name} must be > 0, got {value}")));
            }
        }
        let (x_lo, x_hi) = self.street_x_m;
        if !(x_lo < x_hi) {
            return Err(invalid(format!(
                "street canyon: street ends must satisfy x_min < x_max, got {x_lo} .. {x_hi}"
            )));
        }
        let (s_lo, s_hi) = self.start_x_m;
        if !(x_lo <= s_lo && s_lo <= s_hi && s_hi <= x_hi) {
            return Err(invalid(format!(
                "street canyon: start range {s_lo} .. {s_hi} must be an interval inside the street {x_lo} .. {x_hi}"
            )));
        }
        let w = self.half_width_m;
        if !(self.wall_margin_m >= 0.0 && self.wall_margin_m < w) {
            return Err(invalid(format!(
                "street canyon: wall margin must be in [0, W = {w}) so that the walls enclose the users, got {}",
                self.wall_margin_m
            )));
        }
        if !(self.bs_xy_m.1.abs() < w) {
            return Err(invalid(format!(
                "street canyon: the BS (y = {}) must lie strictly between the walls at y = ±{w}",
                self.bs_xy_m.1
            )));
        }
        if !(self.ue_height_m > 0.0 && self.bs_height_m > self.ue_height_m) {
            return Err(invalid(format!(
                "street canyon: heights must satisfy 0 < h_UE < h_BS, got h_UE = {}, h_BS = {}",
                self.ue_height_m, self.bs_height_m
            )));
        }
        if self.n_tx == 0 || self.n_rx == 0 {
            return Err(invalid(format!(
                "street canyon: antenna counts must be positive, got n_tx = {}, n_rx = {}",
                self.n_tx, self.n_rx
            )));
        }
        if !(0.0..=1.0).contains(&self.scatterer_reflection) {
            return Err(invalid(format!(
                "street canyon: scatterer reflection must be in [0, 1], got {}",
                self.scatterer_reflection
            )));
        }
        if self.speed_schedule.is_empty() {
            return Err(invalid("street canyon: the speed schedule is empty".into()));
        }
        if let Some((i, (v, _))) =
            self.speed_schedule.iter().enumerate().find(|(_, (v, _))| !(v.is_finite() && *v >= 0.0))
        {
            return Err(invalid(format!("street canyon: speed of phase {i} must be finite and >= 0, got {v} m/s")));
        }
        if self.speed_schedule.iter().all(|&(_, n)| n == 0) {
            return Err(invalid("street canyon: the speed schedule has no slots".into()));
        }
        Ok(())
    }

    /// Wavelength `λ = c₀/f` in metres.
    #[must_use]
    pub fn wavelength_m(&self) -> f64 {
        SPEED_OF_LIGHT / self.carrier_hz
    }
}

/// A wall of the street.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wall {
    /// The wall at `y = −W`.
    MinusY,
    /// The wall at `y = +W`.
    PlusY,
}

impl Wall {
    /// The wall's `y` coordinate for a street of half-width `w`.
    fn y(self, w: f64) -> f64 {
        match self {
            Wall::MinusY => -w,
            Wall::PlusY => w,
        }
    }

    fn other(self) -> Wall {
        match self {
            Wall::MinusY => Wall::PlusY,
            Wall::PlusY => Wall::MinusY,
        }
    }
}

/// The kind of a propagation path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    /// The direct path.
    LineOfSight,
    /// First-order specular reflection on a wall.
    Wall(Wall),
    /// Second-order reflection: on `first` (seen from the BS), then on the opposite wall.
    WallWall {
        /// The wall hit first, coming from the BS.
        first: Wall,
    },
    /// Specular reflection on the ground (image of the BS at `z = −h_BS`).
    Ground,
    /// Single bounce on the point scatterer of this index (see [`StreetCanyon::scatterers`]).
    Scatterer(usize),
}

/// One propagation path from the BS to a user, as traced in one slot.
#[derive(Clone, Debug, PartialEq)]
pub struct PropagationPath {
    /// What the path is.
    pub kind: PathKind,
    /// Total length `d_p` in metres (sum of the legs; for specular paths the distance between the
    /// user and the mirrored BS).
    pub length_m: f64,
    /// Angle of departure `θ_D ∈ [0, π]` between the BS array axis (`+x`) and the direction of the
    /// first leg.
    pub aod_rad: f64,
    /// Angle of arrival `θ_A ∈ [0, π]` between the UE array axis (`+x`) and the direction from the
    /// user towards the last interaction point (the BS for line of sight).
    pub aoa_rad: f64,
    /// Raw complex gain `g_p = Γ_p λ/(4π d_p) e^{−j2π d_p/λ}` (before any normalisation).
    pub gain: c64,
    /// Interaction points (reflection or scattering points) in order from the BS to the user;
    /// empty for line of sight.
    pub interactions: Vec<[f64; 3]>,
}

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

/// `Σ_p g_p a_N(θ_A,p) a_M(θ_D,p)^H` with unit-modulus ULA responses, shape `[n_rx × n_tx]`.
fn assemble(paths: &[PropagationPath], n_rx: usize, n_tx: usize) -> Array2<c64> {
    let mut h = Array2::<c64>::zeros((n_rx, n_tx));
    for p in paths {
        let a_ue = ula(n_rx, p.aoa_rad.cos()).mapv(|z| z * p.gain);
        let a_bs_conj = ula(n_tx, -p.aod_rad.cos());
        for (mut row, a) in h.rows_mut().into_iter().zip(a_ue.iter()) {
            row.zip_mut_with(&a_bs_conj, |hij, b| *hij += a * b);
        }
    }
    h
}

/// `[e^{jπ i cos θ}]_{i<n}` from `cos θ`.
fn ula(n: usize, cos_theta: f64) -> Array1<c64> {
    let step = PI * cos_theta;
    Array1::from_shape_fn(n, |i| c64::from_polar(1.0, step * i as f64))
}

fn distance(a: Point, b: Point) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Angle in `[0, π]` between `+x` and the direction from `from` to `to` (π/2 for coincident
/// points).
fn axis_angle(from: Point, to: Point) -> f64 {
    let d = distance(from, to);
    if d > 0.0 { ((to[0] - from[0]) / d).clamp(-1.0, 1.0).acos() } else { PI / 2.0 }
}

/// Mirror image of `p` in the plane `coordinate[axis] = c`.
fn mirror(mut p: Point, axis: usize, c: f64) -> Point {
    p[axis] = 2.0 * c - p[axis];
    p
}

/// Where the segment `a → b` crosses the plane `coordinate[axis] = c`.
fn crossing(a: Point, b: Point, axis: usize, c: f64) -> Point {
    let t = (c - a[axis]) / (b[axis] - a[axis]);
    [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])]
}

/// Cosine of the incidence angle on a wall (normal along `y`) of the unfolded ray `image → ue`.
fn wall_cos(image: Point, ue: Point) -> f64 {
    (ue[1] - image[1]).abs() / distance(image, ue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn scenario(params: StreetCanyonParams, seed: u64) -> StreetCanyon {
        StreetCanyon::new(params, 4, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
    }

    fn wrap(phase: f64) -> f64 {
        (phase + PI).rem_euclid(TAU) - PI
    }

    fn correlation(a: &Channel, b: &Channel, user: usize) -> f64 {
        let (x, y) = (&a.blocks()[user], &b.blocks()[user]);
        let inner: c64 = x.iter().zip(y.iter()).map(|(p, q)| p.conj() * q).sum();
        let norm = |m: &Array2<c64>| m.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt();
        inner.norm() / (norm(x) * norm(y))
    }

    #[test]
    fn fresnel_limits() {
        let eps = concrete_permittivity(3.5e9);
        // ITU-R P.2040: ε″ = 17.98 σ / f_GHz.
        let sigma = 0.0326 * 3.5f64.powf(0.8095);
        assert!((eps.im + 17.98 * sigma / 3.5).abs() < 1e-3, "{eps}");
        assert_eq!(eps.re, 5.31);
        for pol in [Polarisation::Te, Polarisation::Tm] {
            let g = fresnel_reflection(eps, 0.0, pol);
            assert!((g - c64::new(-1.0, 0.0)).norm() < 1e-12, "{pol:?} grazing: {g}");
            let g = fresnel_reflection(eps, 1e-4, pol);
            assert!((g.norm() - 1.0).abs() < 1e-3, "{pol:?} near grazing: {g}");
            // Passive surface: |Γ| <= 1 everywhere.
            for i in 0..=100 {
                assert!(fresnel_reflection(eps, f64::from(i) / 100.0, pol).norm() <= 1.0 + 1e-12);
            }
        }
        let normal = (1.0 - eps.sqrt()) / (1.0 + eps.sqrt());
        assert!((fresnel_reflection(eps, 1.0, Polarisation::Te) - normal).norm() < 1e-12);
        assert!((fresnel_reflection(eps, 1.0, Polarisation::Tm) + normal).norm() < 1e-12);
        // Brewster: the TM coefficient dips well below the TE one at oblique incidence.
        let brewster_cos = (1.0 / (1.0 + eps.re)).sqrt();
        assert!(fresnel_reflection(eps, brewster_cos, Polarisation::Tm).norm() < 0.2);
        assert!(fresnel_reflection(eps, brewster_cos, Polarisation::Te).norm() > 0.5);
        assert!(fresnel_reflection(eps, f64::NAN, Polarisation::Te).re.is_nan());
    }

    #[test]
    fn line_of_sight_and_wall_images() {
        let sc = scenario(StreetCanyonParams::default(), 1);
        let p = sc.params().clone();
        let bs = [p.bs_xy_m.0, p.bs_xy_m.1, p.bs_height_m];
        let w = p.half_width_m;
        for user in 0..4 {
            for slot in [0, 1000, 1799] {
                let ue = sc.user_state(user, slot).unwrap().position_m;
                let paths = sc.paths(user, slot).unwrap();
                assert_eq!(paths.len(), 6 + p.n_scatterers);
                let los = &paths[0];
                assert_eq!(los.kind, PathKind::LineOfSight);
                assert!((los.length_m - distance(bs, ue)).abs() < 1e-9);
                assert!((los.aod_rad.cos() - (ue[0] - bs[0]) / los.length_m).abs() < 1e-12);
                assert!((los.aoa_rad.cos() + (ue[0] - bs[0]) / los.length_m).abs() < 1e-12);
                let expected_gain = p.wavelength_m() / (4.0 * PI * los.length_m);
                assert!((los.gain.norm() - expected_gain).abs() < 1e-15);
                for path in &paths {
                    assert!(path.length_m >= los.length_m - 1e-9, "{path:?}");
                    assert!(path.gain.norm() <= expected_gain * (1.0 + 1e-12), "{path:?}");
                    // Every specular path keeps the x direction cosine of the unfolded ray.
                    if !matches!(path.kind, PathKind::Scatterer(_)) {
                        let cos_x = (ue[0] - bs[0]) / path.length_m;
                        assert!((path.aod_rad.cos() - cos_x).abs() < 1e-9, "{path:?}");
                        assert!((path.aoa_rad.cos() + cos_x).abs() < 1e-9, "{path:?}");
                    }
                }
                for (i, wall) in [Wall::MinusY, Wall::PlusY].into_iter().enumerate() {
                    let path = &paths[1 + i];
                    assert_eq!(path.kind, PathKind::Wall(wall));
                    let c = wall.y(w);
                    let ue_image = [ue[0], 2.0 * c - ue[1], ue[2]];
                    assert!((path.length_m - distance(bs, ue_image)).abs() < 1e-9);
                    assert_eq!(path.interactions.len(), 1);
                    let hit = path.interactions[0];
                    assert!((hit[1] - c).abs() < 1e-9, "{hit:?}");
                    // Specular: equal angles to the wall on both legs.
                    let (d1, d2) = (distance(bs, hit), distance(hit, ue));
                    assert!(((c - bs[1]).abs() / d1 - (c - ue[1]).abs() / d2).abs() < 1e-9);
                }
                for (i, first) in [Wall::MinusY, Wall::PlusY].into_iter().enumerate() {
                    let path = &paths[3 + i];
                    assert_eq!(path.kind, PathKind::WallWall { first });
                    let [h1, h2] = [path.interactions[0], path.interactions[1]];
                    assert!((h1[1] - first.y(w)).abs() < 1e-9 && (h2[1] - first.other().y(w)).abs() < 1e-9);
                    // UE mirrored in the second wall, then in the first.
                    let image = mirror(mirror(ue, 1, first.other().y(w)), 1, first.y(w));
                    assert!((path.length_m - distance(bs, image)).abs() < 1e-9);
                }
                let ground = &paths[5];
                assert_eq!(ground.kind, PathKind::Ground);
                assert!(ground.interactions[0][2].abs() < 1e-12);
                assert!((ground.length_m - distance([bs[0], bs[1], -bs[2]], ue)).abs() < 1e-9);
                for (i, s) in sc.scatterers().iter().enumerate() {
                    let path = &paths[6 + i];
                    assert_eq!(path.kind, PathKind::Scatterer(i));
                    let d = distance(bs, s.position_m) + distance(s.position_m, ue);
                    assert!((path.length_m - d).abs() < 1e-9);
                    let expected = p.scatterer_reflection * p.wavelength_m() / (4.0 * PI * d);
                    assert!((path.gain.norm() - expected).abs() < 1e-15);
                }
            }
        }
        for s in sc.scatterers() {
            let [x, y, z] = s.position_m;
            assert!(
                x >= p.start_x_m.0 && x <= p.start_x_m.1 && y.abs() <= w - p.wall_margin_m && (1.0..=5.0).contains(&z)
            );
        }
    }

    #[test]
    fn plane_wave_convention_matches_element_positions() {
        // Far users, line of sight only: H[n, m] / H[0, 0] must match the exact spherical phases
        // for BS element m at x_BS − mλ/2 and UE element n at x_UE + nλ/2.
        let params = StreetCanyonParams { n_tx: 8, n_rx: 3, half_width_m: 400.0, ..Default::default() };
        let sc = scenario(params, 2);
        let lambda = sc.params().wavelength_m();
        let bs = [0.0, 0.0, 6.0];
        for ue in [[150.0, 5.0, 2.0], [-120.0, 60.0, 2.0], [10.0, 300.0, 2.0]] {
            let los: Vec<_> = sc.trace(ue).into_iter().filter(|p| p.kind == PathKind::LineOfSight).collect();
            let h = assemble(&los, 3, 8);
            let exact = |n: usize, m: usize| {
                let d = distance(
                    [ue[0] + n as f64 * lambda / 2.0, ue[1], ue[2]],
                    [bs[0] - m as f64 * lambda / 2.0, bs[1], bs[2]],
                );
                c64::from_polar(1.0, -TAU * d / lambda)
            };
            for n in 0..3 {
                for m in 0..8 {
                    let err = wrap((h[(n, m)] / h[(0, 0)] / (exact(n, m) / exact(0, 0))).arg());
                    assert!(err.abs() < 0.02, "ue {ue:?} ({n}, {m}): phase error {err}");
                }
            }
        }
    }

    #[test]
    fn doppler_and_speed_schedule() {
        let sc = scenario(StreetCanyonParams::default(), 3);
        let p = sc.params().clone();
        let lambda = p.wavelength_m();
        let bs = [p.bs_xy_m.0, p.bs_xy_m.1, p.bs_height_m];
        assert_eq!(sc.n_slots(), 1800);
        for (slot, v) in [(0, 6.0), (699, 6.0), (700, 15.0), (1299, 15.0), (1300, 30.0), (1799, 30.0)] {
            assert_eq!(sc.user_speed_at(slot), Some(v), "slot {slot}");
        }
        assert_eq!(sc.user_speed_at(1800), None);
        for user in 0..4 {
            // Displacement per slot switches exactly at 700 and 1300.
            for (slot, v) in [(698, 6.0), (699, 6.0), (700, 15.0), (1299, 15.0), (1300, 30.0), (1798, 30.0)] {
                let a = sc.user_state(user, slot).unwrap();
                let b = sc.user_state(user, slot + 1).unwrap();
                let dx = (b.position_m[0] - a.position_m[0]) * a.direction;
                assert!((dx - v * p.slot_s).abs() < 1e-9, "user {user}, slot {slot}: dx {dx}");
                assert_eq!(a.position_m[1], b.position_m[1]);
            }
            for slot in [10, 650, 900, 1500, 1798] {
                let g0 = sc.paths(user, slot).unwrap()[0].clone();
                let g1 = sc.paths(user, slot + 1).unwrap()[0].clone();
                let measured = (g1.gain * g0.gain.conj()).arg();
                // Exactly the length change ...
                assert!((wrap(measured + TAU * (g1.length_m - g0.length_m) / lambda)).abs() < 1e-6);
                // ... and to first order v T cos(angle between the motion and BS → UE).
                let state = sc.user_state(user, slot).unwrap();
                let ue = state.position_m;
                let cos = state.direction * (ue[0] - bs[0]) / distance(bs, ue);
                let v = sc.user_speed_at(slot).unwrap();
                let predicted = -TAU * v * p.slot_s * cos / lambda;
                assert!(wrap(measured - predicted).abs() < 0.02, "user {user}, slot {slot}: {measured} vs {predicted}");
            }
        }
    }

    #[test]
    fn spatial_consistency() {
        let sc = scenario(StreetCanyonParams::default(), 4);
        let mut near_sum = 0.0;
        let mut near_count = 0.0;
        for slot in (0..699).step_by(50) {
            let (a, b) = (sc.channel_at(slot).unwrap(), sc.channel_at(slot + 1).unwrap());
            for user in 0..4 {
                let rho = correlation(&a, &b, user);
                assert!(rho > 0.9, "slot {slot}, user {user}: correlation {rho}");
                near_sum += rho;
                near_count += 1.0;
            }
        }
        let (first, last) = (sc.channel_at(0).unwrap(), sc.channel_at(1799).unwrap());
        let far = (0..4).map(|user| correlation(&first, &last, user)).sum::<f64>() / 4.0;
        let near = near_sum / near_count;
        assert!(far < 0.5 && far < near - 0.3, "near {near}, far {far}");
    }

    #[test]
    fn normalisations() {
        for seed in [5, 6] {
            let sc = scenario(StreetCanyonParams::default(), seed);
            let (mut energy, mut entries) = (0.0, 0.0);
            for h in sc.trajectory() {
                let h = h.unwrap();
                energy += h.energy();
                entries += (h.n_users() * 2 * 64) as f64;
            }
            assert!((energy / entries - 1.0).abs() < 0.2, "seed {seed}: mean entry power {}", energy / entries);
            assert!((energy / entries - 1.0).abs() < 1e-9);

            let raw = scenario(StreetCanyonParams { normalisation: Normalisation::Raw, ..Default::default() }, seed);
            let per_slot =
                scenario(StreetCanyonParams { normalisation: Normalisation::PerSlot, ..Default::default() }, seed);
            assert_eq!(raw.trajectory_scale(), 1.0);
            for slot in [0, 900, 1799] {
                let (h_raw, h_norm) = (raw.channel_at(slot).unwrap(), sc.channel_at(slot).unwrap());
                // Raw entries carry the path loss: tiny, and c times smaller than the default.
                assert!(h_raw.energy() / (4.0 * 128.0) < 1e-4);
                let scaled: Vec<_> = h_raw.blocks().iter().map(|b| b * c64::new(sc.trajectory_scale(), 0.0)).collect();
                for (x, y) in scaled.iter().zip(h_norm.blocks()) {
                    assert!(x.iter().zip(y.iter()).all(|(a, b)| (a - b).norm() <= 1e-9 * (1.0 + b.norm())));
                }
                for b in per_slot.channel_at(slot).unwrap().blocks() {
                    let e: f64 = b.iter().map(|z| z.norm_sqr()).sum();
                    assert!((e / 128.0 - 1.0).abs() < 1e-9);
                }
            }
        }
    }

    #[test]
    fn users_turn_round_at_the_street_ends() {
        let params = StreetCanyonParams {
            street_x_m: (-5.0, 5.0),
            start_x_m: (-5.0, 5.0),
            speed_schedule: vec![(20.0, 2000)],
            normalisation: Normalisation::Raw,
            ..Default::default()
        };
        let sc = scenario(params, 7);
        for user in 0..4 {
            let mut turns = 0;
            let mut prev = sc.user_state(user, 0).unwrap();
            for slot in 1..2000 {
                let s = sc.user_state(user, slot).unwrap();
                assert!((-5.0..=5.0).contains(&s.position_m[0]));
                assert!((s.position_m[0] - prev.position_m[0]).abs() <= 0.02 + 1e-9);
                if s.direction != prev.direction {
                    turns += 1;
                }
                prev = s;
            }
            // 40 m in a 10 m street.
            assert!((3..=5).contains(&turns), "user {user}: {turns} turns");
        }
        assert!(sc.trajectory().all(|h| h.is_ok()));
    }

    #[test]
    fn reproducible() {
        let a = scenario(StreetCanyonParams::default(), 8);
        let b = scenario(StreetCanyonParams::default(), 8);
        let c = scenario(StreetCanyonParams::default(), 9);
        assert_eq!(a, b);
        assert_ne!(a, c);
        for slot in [0, 1234] {
            assert_eq!(a.channel_at(slot).unwrap(), b.channel_at(slot).unwrap());
            assert_ne!(a.channel_at(slot).unwrap(), c.channel_at(slot).unwrap());
        }
        let mut inner = ChaCha8Rng::seed_from_u64(8);
        let rng: &mut dyn rand::RngCore = &mut inner;
        assert_eq!(StreetCanyon::new(StreetCanyonParams::default(), 4, rng).unwrap(), a);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let d = StreetCanyonParams::default;
        let bad = [
            StreetCanyonParams { speed_schedule: vec![(6.0, 10), (-1.0, 10)], ..d() },
            StreetCanyonParams { speed_schedule: vec![(f64::NAN, 10)], ..d() },
            StreetCanyonParams { speed_schedule: vec![], ..d() },
            StreetCanyonParams { speed_schedule: vec![(6.0, 0)], ..d() },
            StreetCanyonParams { n_tx: 0, ..d() },
            StreetCanyonParams { n_rx: 0, ..d() },
            StreetCanyonParams { wall_margin_m: 20.0, ..d() },
            StreetCanyonParams { wall_margin_m: -1.0, ..d() },
            StreetCanyonParams { bs_xy_m: (0.0, 25.0), ..d() },
            StreetCanyonParams { half_width_m: 0.0, ..d() },
            StreetCanyonParams { carrier_hz: f64::NAN, ..d() },
            StreetCanyonParams { carrier_hz: -1.0, ..d() },
            StreetCanyonParams { slot_s: 0.0, ..d() },
            StreetCanyonParams { street_x_m: (10.0, -10.0), ..d() },
            StreetCanyonParams { start_x_m: (-150.0, 0.0), ..d() },
            StreetCanyonParams { bs_height_m: 1.0, ..d() },
            StreetCanyonParams { ue_height_m: 0.0, ..d() },
            StreetCanyonParams { scatterer_reflection: 1.5, ..d() },
            StreetCanyonParams { bs_xy_m: (f64::INFINITY, 0.0), ..d() },
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for params in bad {
            assert!(matches!(params.check(), Err(ChannelError::InvalidParameter(_))), "{params:?}");
            let r = StreetCanyon::new(params, 4, &mut rng);
            assert!(matches!(r, Err(ChannelError::InvalidParameter(_))));
        }
        assert!(matches!(StreetCanyon::new(d(), 0, &mut rng), Err(ChannelError::InvalidParameter(_))));
        let sc = StreetCanyon::new(StreetCanyonParams { speed_schedule: vec![(6.0, 5)], ..d() }, 2, &mut rng).unwrap();
        assert!(matches!(sc.channel_at(5), Err(ChannelError::InvalidParameter(_))));
        assert!(matches!(sc.paths(2, 0), Err(ChannelError::InvalidParameter(_))));
        assert!(matches!(sc.user_state(0, 5), Err(ChannelError::InvalidParameter(_))));
        // Zero scatterers and a zero speed are allowed.
        let still = StreetCanyonParams { n_scatterers: 0, speed_schedule: vec![(0.0, 3)], ..d() };
        let sc = StreetCanyon::new(still, 2, &mut rng).unwrap();
        assert_eq!(sc.paths(0, 0).unwrap().len(), 6);
        assert_eq!(sc.channel_at(0).unwrap(), sc.channel_at(2).unwrap());
    }
}
