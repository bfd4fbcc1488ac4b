//! Parameters of the street-canyon model and their checks.

use super::paths::SPEED_OF_LIGHT;
use crate::ChannelError;

/// How the channel blocks are scaled (the constant `c` of the [module docs](super)).
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
/// [module docs](super) for the geometry).
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

pub(super) fn invalid(message: String) -> ChannelError {
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
