//! # beamlab-gnn-unroll
//!
//! Outage-constrained multi-user hybrid beamforming by GCN-aided greedy unrolling
//! (spec `outage-gnn-unroll.md`, paper "outage hybrid BF by GNN unrolling").
//!
//! System model: a uniform planar array with `N = N1·N2` antennas, `M` RF chains whose analog
//! beams `A = [a_1 … a_M]: [N × M]` are distinct codewords of a DFT codebook, `K` single-antenna
//! users with channel vectors `h_k: [N]` (received signal `h_k^H x`), unit noise, transmit signal
//! `x = Σ_k √p_k A w_k s_k` with unit baseband beams `w_k: [M]`.
//!
//! Modules, bottom-up (no module imports one above it). The public ones are the classical layer a
//! library user builds on; the learned method's internals are private, its user-facing types are
//! re-exported at the root.
//!
//! - [`data`]: the DFT codebook, correlated UPA covariances, noisy-MMSE channel estimates, DFT
//!   feedback quantisation, constraint groups, statistical-CSI systems (Table 4).
//! - [`qos`]: QoS power minimisation for a fixed `A` (virtual uplink power iteration, MMSE beams,
//!   downlink power recovery), with typed infeasibility ([`Error::Infeasible`]).
//! - [`outage`]: SINRs on true channels, Monte-Carlo outage over the channel posterior, margin
//!   bisection.
//! - [`greedy`]: SNR-based initialisation and the greedy-correction codeword selection (Hegde et
//!   al., Alg. 2); [`GreedyHbf`] as a [`Beamformer`](beamlab_core::Beamformer).
//! - `implicit` (private): the implicit-differentiation gradient of the baseband problem and the
//!   envelope gradient of the trial power (spec §4).
//! - `unroll` (private): virtual channels, the unrolled greedy forward pass and its gradients
//!   (coefficients, analog matrix, straight-through softmin selection); [`UnrollSettings`],
//!   [`UnrolledOutput`], [`Architecture`].
//! - `model` (private): the candle graph network ([`Gcn`], [`GcnConfig`]; an FCN with filter
//!   order 0) giving the virtual-channel coefficients.
//! - `train` (private): primal–dual training ([`Trainer`], [`TrainParams`]) with the annealing or
//!   quantile outage loss, on instances or statistical-CSI systems ([`Systems`]).
//! - `learned` (private): a trained model as a [`Beamformer`](beamlab_core::Beamformer)
//!   ([`LearnedHbf`]).
//! - `tables` (private): the paper's Tables 2, 3 and 4 for the harness ([`OutageTableParams`],
//!   [`GeneralisationParams`], [`StatisticalParams`]).
//!
//! Errors: one [`Error`] enum whose variants a caller can act on (a bad field is named, infeasible
//! targets carry an [`InfeasibleReason`]).
//!
//! Design decisions and the state of the implementation: `docs/gnn-unroll.md`.
//!
//! ```
//! use beamlab_gnn_unroll::{QosOptions, QosSystem, solve_qos};
//! use beamlab_linalg_ops::c64;
//! use ndarray::{Array2, array};
//! // Two users on two orthogonal beams: no interference, so p_k = γ_k / ‖g_k‖².
//! let s1 = array![[c64::new(2.0, 0.0), c64::new(0.0, 0.0)], [c64::new(0.0, 0.0), c64::new(0.0, 0.0)]];
//! let s2 = array![[c64::new(0.0, 0.0), c64::new(0.0, 0.0)], [c64::new(0.0, 0.0), c64::new(4.0, 0.0)]];
//! let sys = QosSystem::new(vec![s1.clone(), s2.clone()], vec![s1, s2], Array2::eye(2), vec![1.0, 2.0]).unwrap();
//! let sol = solve_qos(&sys, &QosOptions::default(), None).unwrap();
//! assert!((sol.powers[0] - 0.5).abs() < 1e-12 && (sol.powers[1] - 0.5).abs() < 1e-12);
//! assert!((sol.weighted_power() - sol.uplink_sum()).abs() < 1e-12);
//! ```

pub mod data;
mod error;
pub mod greedy;
mod implicit;
mod learned;
mod model;
pub mod outage;
pub mod qos;
mod tables;
mod train;
mod unroll;
mod util;

pub use error::{CsiKind, Error, InfeasibleReason};
pub use greedy::GreedyHbf;
pub use learned::LearnedHbf;
pub use model::{Gcn, GcnConfig};
pub use qos::{QosOptions, QosSolution, QosSystem, solve_qos};
pub use tables::common::OutageTableParams;
pub use tables::generalisation::{Generalisation, GeneralisationParams, generalisation_table};
pub use tables::outage::{OutageTable, outage_table};
pub use tables::statistical::{StatisticalParams, StatisticalTable, statistical_table};
pub use train::{
    ConstraintForm, ConstraintLoss, EvalStats, System, Systems, TrainParams, TrainReport, Trainer, ValPoint,
};
pub use unroll::{Architecture, UnrollSettings, UnrolledOutput};

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
