//! The crate's error type: one variant per situation a caller can act on.

/// Errors of the meta-learning crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaLearnError {
    /// A configuration value is out of range (`name` is the field).
    #[error("invalid configuration `{name}`: {reason}")]
    InvalidConfig {
        /// The offending field.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Inputs whose shapes do not fit each other or the network.
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
    NonFiniteInput {
        /// Which input.
        what: &'static str,
    },
    /// A user's channel estimate (sample mean) is zero, so the network input cannot be scaled.
    #[error("the channel estimate of user {user} is zero")]
    ZeroChannel {
        /// The user.
        user: usize,
    },
    /// BatchNorm with batch statistics over the users of a block needs at least two users.
    #[error("BatchNorm with batch statistics needs at least 2 users, got {n_users}")]
    TooFewUsers {
        /// Users in the block.
        n_users: usize,
    },
    /// A query loss was asked of a block without its true channels.
    #[error("the query loss needs the true channels of the block")]
    MissingTrueChannels,
    /// A user-supplied covariance is not Hermitian.
    #[error("covariance of user {user} is not Hermitian")]
    NotHermitian {
        /// The user.
        user: usize,
    },
    /// A user-supplied covariance has a negative eigenvalue.
    #[error("covariance of user {user} is not PSD (min eigenvalue {min_eigenvalue:e})")]
    NotPsd {
        /// The user.
        user: usize,
        /// Its most negative eigenvalue.
        min_eigenvalue: f64,
    },
    /// Training or adaptation produced non-finite values (the string names the quantity).
    #[error("non-finite values: {0}")]
    NonFinite(String),
    /// Linear algebra (including a solver matrix that is not positive definite).
    #[error(transparent)]
    Linalg(#[from] beamlab_linalg_ops::LinalgError),
    /// A baseline (the matched-filter start, LAGD).
    #[error(transparent)]
    Baseline(#[from] beamlab_baselines::BaselineError),
    /// Channel / error model.
    #[error(transparent)]
    Channel(#[from] beamlab_channel::ChannelError),
    /// candle (parameter tensors).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The candle bridge.
    #[error(transparent)]
    Bridge(#[from] beamlab_candle_bridge::BridgeError),
}

impl MetaLearnError {
    pub(crate) fn shape(what: &'static str, expected: impl ToString, found: impl ToString) -> Self {
        Self::ShapeMismatch { what, expected: expected.to_string(), found: found.to_string() }
    }

    pub(crate) fn config(name: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig { name, reason: reason.into() }
    }
}
