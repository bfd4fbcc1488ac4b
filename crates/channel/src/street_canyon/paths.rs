//! Propagation physics and geometry of the street canyon: concrete's permittivity, Fresnel
//! coefficients, the path types, the image-method helpers and the plane-wave channel sum.

use std::f64::consts::{PI, TAU};

use ndarray::{Array1, Array2};
use num_complex::Complex64 as c64;

/// Speed of light in vacuum, m/s.
pub(super) const SPEED_OF_LIGHT: f64 = 299_792_458.0;
/// Vacuum permittivity ε₀, F/m.
const VACUUM_PERMITTIVITY: f64 = 8.854_187_812_8e-12;

/// A point `(x, y, z)` in metres.
pub(super) type Point = [f64; 3];

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
    pub(super) fn y(self, w: f64) -> f64 {
        match self {
            Wall::MinusY => -w,
            Wall::PlusY => w,
        }
    }

    pub(super) fn other(self) -> Wall {
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
    /// Single bounce on the point scatterer of this index (see [`StreetCanyon::scatterers`](super::StreetCanyon::scatterers)).
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

/// `Σ_p g_p a_N(θ_A,p) a_M(θ_D,p)^H` with unit-modulus ULA responses, shape `[n_rx × n_tx]`.
pub(super) fn assemble(paths: &[PropagationPath], n_rx: usize, n_tx: usize) -> Array2<c64> {
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
pub(super) fn ula(n: usize, cos_theta: f64) -> Array1<c64> {
    let step = PI * cos_theta;
    Array1::from_shape_fn(n, |i| c64::from_polar(1.0, step * i as f64))
}

pub(super) fn distance(a: Point, b: Point) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Angle in `[0, π]` between `+x` and the direction from `from` to `to` (π/2 for coincident
/// points).
pub(super) fn axis_angle(from: Point, to: Point) -> f64 {
    let d = distance(from, to);
    if d > 0.0 { ((to[0] - from[0]) / d).clamp(-1.0, 1.0).acos() } else { PI / 2.0 }
}

/// Mirror image of `p` in the plane `coordinate[axis] = c`.
pub(super) fn mirror(mut p: Point, axis: usize, c: f64) -> Point {
    p[axis] = 2.0 * c - p[axis];
    p
}

/// Where the segment `a → b` crosses the plane `coordinate[axis] = c`.
pub(super) fn crossing(a: Point, b: Point, axis: usize, c: f64) -> Point {
    let t = (c - a[axis]) / (b[axis] - a[axis]);
    [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2])]
}

/// Cosine of the incidence angle on a wall (normal along `y`) of the unfolded ray `image → ue`.
pub(super) fn wall_cos(image: Point, ue: Point) -> f64 {
    (ue[1] - image[1]).abs() / distance(image, ue)
}
