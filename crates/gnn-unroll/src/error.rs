//! The crate's error type: one variant per situation a caller can act on.
//!
//! Bad parameters name their field ([`Error::InvalidParameter`]); inputs that do not fit each
//! other say what was checked and what was expected ([`Error::ShapeMismatch`]); SINR targets that
//! cannot be met are [`Error::Infeasible`] with an [`InfeasibleReason`] (lower the targets or raise
//! the power budget); a trainer given the wrong kind of CSI is [`Error::WrongCsiKind`].

use beamlab_linalg_ops::LinalgError;

/// Errors of the crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter or configuration field is out of range (`name` is the field).
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The offending field or argument.
        name: &'static str,
        /// What is wrong with it (with its value).
        reason: String,
    },
    /// Inputs whose shapes or counts do not fit each other.
    #[error("{what}: expected {expected}, found {found}")]
    ShapeMismatch {
        /// What was checked.
        what: &'static str,
        /// Expected shape or count.
        expected: String,
        /// Actual shape or count.
        found: String,
    },
    /// An input that must not be empty is.
    #[error("{what}: empty input")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// An input contains NaN or infinite entries.
    #[error("{what} contains non-finite entries")]
    NonFinite {
        /// Which input.
        what: &'static str,
    },
    /// An SINR target is not a finite positive number.
    #[error("the SINR target of user {user} must be finite and > 0, got {value}")]
    InvalidTarget {
        /// The user.
        user: usize,
        /// Its target (linear).
        value: f64,
    },
    /// The SINR targets cannot be met (lower them or raise the power budget).
    #[error("infeasible after {n_iterations} iterations (uplink sum power {sum_power}): {reason}")]
    Infeasible {
        /// Uplink sum power when infeasibility was detected.
        sum_power: f64,
        /// Iterations (power iterations, or greedy selections) performed.
        n_iterations: usize,
        /// Why.
        reason: InfeasibleReason,
    },
    /// A data set cannot be filled with instances that are feasible under perfect CSI (lower the
    /// SINR targets or raise the power budget).
    #[error(
        "only {n_feasible} of {n_drawn} drawn instances are feasible under perfect CSI ({n_wanted} needed): \
         lower the SINR targets or raise the power budget"
    )]
    NoFeasibleInstances {
        /// Instances the data set needs.
        n_wanted: usize,
        /// Instances drawn before giving up.
        n_drawn: usize,
        /// Feasible instances among them.
        n_feasible: usize,
    },
    /// A matrix that must be positive definite or invertible is not.
    #[error("singular matrix: {what}")]
    Singular {
        /// Which matrix.
        what: &'static str,
    },
    /// The codebook has no (or too few) codewords.
    #[error("codebook has {n_codewords} codewords, {n_rf} RF chains need at least {n_rf}")]
    EmptyCodebook {
        /// Codewords available.
        n_codewords: usize,
        /// RF chains.
        n_rf: usize,
    },
    /// A codeword selection has repeated indices or indices outside the codebook.
    #[error("selection {selection:?} is not distinct indices into a codebook of {n_codewords} codewords")]
    InvalidSelection {
        /// The selection.
        selection: Vec<usize>,
        /// Codewords in the codebook.
        n_codewords: usize,
    },
    /// A trainer (or a model built from one) was given the other kind of CSI: an
    /// instantaneous-CSI model needs instances, a statistical-CSI model (Table 4) statistical
    /// systems.
    #[error("a model for {expected} CSI was given {found} CSI")]
    WrongCsiKind {
        /// The kind the model works on.
        expected: CsiKind,
        /// The kind it was given.
        found: CsiKind,
    },
    /// Statistical CSI (Table 4) chooses the analog beams, so it needs the hybrid architecture.
    #[error("statistical CSI needs the hybrid architecture (the fully digital one has no analog selection)")]
    StatisticalNeedsHybrid,
    /// A constraint group outside the groups a model knows.
    #[error("group {group} of a model with {n_groups} group inputs")]
    GroupOutOfRange {
        /// The requested group.
        group: usize,
        /// Groups the model has inputs for.
        n_groups: usize,
    },
    /// A network variable of this name does not exist.
    #[error("no network variable `{name}`")]
    UnknownVariable {
        /// The name looked up.
        name: String,
    },
    /// A variable map's lock is poisoned (a thread panicked while holding it).
    #[error("the network's variable map is poisoned (a thread panicked while holding it)")]
    PoisonedLock,
    /// A linear-algebra failure.
    #[error(transparent)]
    Linalg(#[from] LinalgError),
    /// A candle failure.
    #[error("candle: {0}")]
    Candle(#[from] beamlab_candle_bridge::candle_core::Error),
    /// A candle-bridge failure (checkpoints, snapshots).
    #[error(transparent)]
    Bridge(#[from] beamlab_candle_bridge::BridgeError),
    /// A table experiment has no unit with this index.
    #[error("no unit {index} (the experiment has {n_units})")]
    UnknownUnit {
        /// The requested unit index.
        index: usize,
        /// Units of the experiment.
        n_units: usize,
    },
}

impl Error {
    /// [`Error::InvalidParameter`] for field `name`.
    pub(crate) fn param(name: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidParameter { name, reason: reason.into() }
    }

    /// [`Error::ShapeMismatch`].
    pub(crate) fn shape(what: &'static str, expected: impl ToString, found: impl ToString) -> Self {
        Self::ShapeMismatch { what, expected: expected.to_string(), found: found.to_string() }
    }
}

/// Why SINR targets cannot be met ([`Error::Infeasible`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InfeasibleReason {
    /// The power iteration hit [`QosOptions::max_n_iterations`](crate::QosOptions::max_n_iterations)
    /// (the targets are at or beyond the edge of the feasible region).
    IterationLimit,
    /// The uplink sum power exceeded [`QosOptions::power_cap`](crate::QosOptions::power_cap).
    PowerCap,
    /// A user receives no wanted signal through the analog beams.
    NoWantedSignal {
        /// The first such user.
        user: usize,
    },
    /// The downlink power system has no positive solution.
    NoPositiveDownlink,
    /// No visited analog selection meets the targets within the power budget (greedy selection).
    NoFeasibleSelection,
}

impl std::fmt::Display for InfeasibleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::IterationLimit => write!(f, "iteration limit reached"),
            Self::PowerCap => write!(f, "uplink sum power exceeds the cap"),
            Self::NoWantedSignal { user } => write!(f, "user {user} receives no wanted signal"),
            Self::NoPositiveDownlink => write!(f, "downlink power system has no positive solution"),
            Self::NoFeasibleSelection => write!(f, "no visited analog selection meets the targets within the budget"),
        }
    }
}

/// The two kinds of CSI a model works on ([`Error::WrongCsiKind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsiKind {
    /// Instantaneous CSI: an instance per channel draw (Tables 2–3).
    Instantaneous,
    /// Statistical CSI: a covariance estimate and channel samples per system (Table 4).
    Statistical,
}

impl std::fmt::Display for CsiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Instantaneous => "instantaneous",
            Self::Statistical => "statistical",
        })
    }
}
