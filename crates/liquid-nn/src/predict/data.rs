//! Prediction windows, their normalisation, and data sets from random-walk trajectories.
//!
//! A *window* is `W` consecutive fed-back CSI vectors (`history: [W, M]`, rows are time); its
//! *future* the next `H` true channels (`[H, M]`). A trajectory of `T` samples gives the windows
//! starting at `0, s, 2s, …` (stride `s`) as long as `start + W + H ≤ T`.
//!
//! # Normalisation ([`WindowTransform`])
//! `x ↦ x · e^{−jφ} / r` with `r = √(mean_{t,m} |ĥ_{t,m}|²)` (RMS of the window; 1 for an
//! all-zero window) and `φ = arg ĥ_{W−1,0}` (0 when that entry is zero). It is unitary up to the
//! scale, so NMSE and the MRT rate are unchanged by it; it gives the learned models unit-scale
//! inputs with the last sample's common phase removed. Features of a row `x: [M]` are
//! `[Re x_0, …, Re x_{M−1}, Im x_0, …, Im x_{M−1}]` (`2M` reals).

use beamlab_channel::{RandomWalkParams, random_walk_trajectory};
use beamlab_linalg_ops::c64;
use ndarray::{Array2, ArrayView2, s};
use rand::Rng;

use super::PredictError;

/// Windows and their true futures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PredictionData {
    /// Observed histories, each `[W, M]`.
    pub histories: Vec<Array2<c64>>,
    /// True futures, each `[H, M]`.
    pub futures: Vec<Array2<c64>>,
}

impl PredictionData {
    /// Number of windows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.histories.len()
    }

    /// Whether there are no windows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.histories.is_empty()
    }

    /// Appends another data set.
    pub fn extend(&mut self, other: Self) {
        self.histories.extend(other.histories);
        self.futures.extend(other.futures);
    }
}

/// Cuts a trajectory (`observed`, `truth`: `[T, M]`) into windows of `window` observed samples and
/// the following `horizon` true samples, starting every `stride` samples.
///
/// # Errors
/// [`PredictError::InvalidParameter`] for a zero window, horizon or stride;
/// [`PredictError::Shape`] when the two arrays differ in shape or are too short for one window.
pub fn windows_from_trajectory(
    observed: ArrayView2<c64>,
    truth: ArrayView2<c64>,
    window: usize,
    horizon: usize,
    stride: usize,
) -> Result<PredictionData, PredictError> {
    if window == 0 || horizon == 0 || stride == 0 {
        return Err(PredictError::InvalidParameter(format!(
            "window = {window}, horizon = {horizon}, stride = {stride} must all be >= 1"
        )));
    }
    if observed.dim() != truth.dim() {
        return Err(PredictError::Shape(format!("observed {:?} vs truth {:?}", observed.dim(), truth.dim())));
    }
    let n_samples = observed.nrows();
    if n_samples < window + horizon {
        return Err(PredictError::Shape(format!(
            "trajectory of {n_samples} samples is shorter than window + horizon = {}",
            window + horizon
        )));
    }
    let mut data = PredictionData::default();
    let mut start = 0;
    while start + window + horizon <= n_samples {
        data.histories.push(observed.slice(s![start..start + window, ..]).to_owned());
        data.futures.push(truth.slice(s![start + window..start + window + horizon, ..]).to_owned());
        start += stride;
    }
    Ok(data)
}

/// Draws `n_trajectories` random-walk trajectories of `samples_per_trajectory` samples (each in a
/// freshly drawn scene) and cuts them into windows.
///
/// # Errors
/// Channel-model errors; as [`windows_from_trajectory`].
pub fn generate_data<R: Rng + ?Sized>(
    channel: &RandomWalkParams,
    n_trajectories: usize,
    samples_per_trajectory: usize,
    window: usize,
    horizon: usize,
    stride: usize,
    rng: &mut R,
) -> Result<PredictionData, PredictError> {
    if n_trajectories == 0 {
        return Err(PredictError::InvalidParameter("n_trajectories must be >= 1".into()));
    }
    let mut data = PredictionData::default();
    for _ in 0..n_trajectories {
        let traj = random_walk_trajectory(channel, samples_per_trajectory, rng)?;
        data.extend(windows_from_trajectory(traj.observed.view(), traj.channels.view(), window, horizon, stride)?);
    }
    Ok(data)
}

/// Checks a history against a window length and antenna count (finite, enough rows) and returns
/// its last `window` rows.
pub(crate) fn last_window<'a>(
    history: ArrayView2<'a, c64>,
    window: usize,
    n_antennas: Option<usize>,
) -> Result<ArrayView2<'a, c64>, PredictError> {
    let (n_rows, m) = history.dim();
    if n_rows < window {
        return Err(PredictError::Shape(format!("history has {n_rows} samples, the window needs {window}")));
    }
    if m == 0 || n_antennas.is_some_and(|n| n != m) {
        return Err(PredictError::Shape(format!("history has {m} antennas, expected {n_antennas:?}")));
    }
    let view = history.slice_move(s![n_rows - window.., ..]);
    if view.iter().any(|h| !h.is_finite()) {
        return Err(PredictError::NonFinite("history holds NaN or infinite CSI".into()));
    }
    Ok(view)
}

/// The per-window normalisation `x ↦ x e^{−jφ} / r` (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowTransform {
    /// `r`, the window's RMS (1 for an all-zero window).
    pub scale: f64,
    /// `e^{−jφ}`.
    pub rotation: c64,
}

impl WindowTransform {
    /// The transform of a window `[W, M]` (`W ≥ 1`, finite).
    #[must_use]
    pub fn of(window: ArrayView2<c64>) -> Self {
        let n = window.len().max(1) as f64;
        let rms = (window.iter().map(|h| h.norm_sqr()).sum::<f64>() / n).sqrt();
        let scale = if rms > 0.0 && rms.is_finite() { rms } else { 1.0 };
        let last = window.nrows().checked_sub(1).filter(|_| window.ncols() > 0).map(|t| window[[t, 0]]);
        let rotation = match last {
            Some(h) if h.norm() > 0.0 => (h / h.norm()).conj(),
            _ => c64::new(1.0, 0.0),
        };
        Self { scale, rotation }
    }

    /// Features `[rows, 2M]` of the normalised rows.
    #[must_use]
    pub fn features(&self, rows: ArrayView2<c64>) -> Array2<f64> {
        let (n, m) = rows.dim();
        let mut out = Array2::<f64>::zeros((n, 2 * m));
        for ((t, k), h) in rows.indexed_iter() {
            let x = h * self.rotation / self.scale;
            out[[t, k]] = x.re;
            out[[t, m + k]] = x.im;
        }
        out
    }

    /// The complex rows `[rows, M]` of normalised features `[rows, 2M]`, mapped back.
    #[must_use]
    pub fn unfeatures(&self, features: ArrayView2<f64>) -> Array2<c64> {
        let (n, two_m) = features.dim();
        let m = two_m / 2;
        let back = self.rotation.conj() * self.scale;
        Array2::from_shape_fn((n, m), |(t, k)| c64::new(features[[t, k]], features[[t, m + k]]) * back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn transform_round_trips_and_normalises() {
        let w = Array2::from_shape_fn((5, 3), |(t, m)| c64::new(0.3 * t as f64 - 1.0, 2.0 + m as f64) * 7.0);
        let tr = WindowTransform::of(w.view());
        let f = tr.features(w.view());
        assert_eq!(f.dim(), (5, 6));
        let rms = (f.iter().map(|x| x * x).sum::<f64>() / 15.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-12);
        // The last sample's first entry is real and positive.
        assert!(f[[4, 0]] > 0.0 && f[[4, 3]].abs() < 1e-12);
        let back = tr.unfeatures(f.view());
        assert!(back.iter().zip(&w).all(|(a, b)| (a - b).norm() < 1e-12));
        let zero = Array2::<c64>::zeros((2, 2));
        assert_eq!(WindowTransform::of(zero.view()), WindowTransform { scale: 1.0, rotation: c64::new(1.0, 0.0) });
    }

    #[test]
    fn windows_cover_the_trajectory() {
        let obs = Array2::from_shape_fn((30, 2), |(t, m)| c64::new(t as f64, m as f64));
        let d = windows_from_trajectory(obs.view(), obs.view(), 20, 5, 2).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.histories[2][[0, 0]].re, 4.0);
        assert_eq!(d.futures[2][[0, 0]].re, 24.0);
        assert_eq!(d.futures[2].dim(), (5, 2));
        assert!(matches!(windows_from_trajectory(obs.view(), obs.view(), 20, 11, 1), Err(PredictError::Shape(_))));
        assert!(matches!(
            windows_from_trajectory(obs.view(), obs.view(), 20, 0, 1),
            Err(PredictError::InvalidParameter(_))
        ));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let g = generate_data(&RandomWalkParams::default(), 2, 40, 20, 5, 5, &mut rng).unwrap();
        assert_eq!(g.len(), 2 * 4);
    }
}
