//! What the trainer trains on: an [`Instance`] (Tables 2–3) or a statistical-CSI system
//! [`StatInstance`] (Table 4), and the per-system intermediate results of a step.

use beamlab_candle_bridge::candle_core::Tensor;
use beamlab_candle_bridge::candle_nn::VarMap;
use beamlab_linalg_ops::c64;
use ndarray::Array2;

use crate::data::{Instance, StatInstance};
use crate::greedy::GreedyStep;
use crate::model::Gcn;
use crate::unroll::UnrolledOutput;

/// One training or validation item of a [`Trainer`](super::Trainer).
#[derive(Clone, Copy, Debug)]
pub enum System<'a> {
    /// One instance: the network sees its instantaneous estimates, the unrolled pass selects `A`
    /// and solves the baseband problem on them.
    Instance(&'a Instance),
    /// A system with `T_s` channel samples: the analog network sees the statistical CSI `R̂_k`,
    /// `A` is selected once on `R̂`, the baseband problem is solved per sample.
    Statistical(&'a StatInstance),
}

impl<'a> System<'a> {
    /// The channel samples (an instance is its own single sample).
    #[must_use]
    pub fn samples(self) -> &'a [Instance] {
        match self {
            Self::Instance(inst) => std::slice::from_ref(inst),
            Self::Statistical(sys) => &sys.samples,
        }
    }
}

impl<'a> From<&'a Instance> for System<'a> {
    fn from(inst: &'a Instance) -> Self {
        Self::Instance(inst)
    }
}

impl<'a> From<&'a StatInstance> for System<'a> {
    fn from(sys: &'a StatInstance) -> Self {
        Self::Statistical(sys)
    }
}

/// A training or validation set: instances or statistical-CSI systems.
#[derive(Clone, Copy, Debug)]
pub enum Systems<'a> {
    /// Instances (Tables 2–3).
    Instances(&'a [Instance]),
    /// Statistical-CSI systems (Table 4).
    Statistical(&'a [StatInstance]),
}

impl<'a> Systems<'a> {
    /// Number of items.
    #[must_use]
    pub fn len(self) -> usize {
        match self {
            Self::Instances(s) => s.len(),
            Self::Statistical(s) => s.len(),
        }
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Item `i` (`None` out of range).
    #[must_use]
    pub fn get(self, i: usize) -> Option<System<'a>> {
        match self {
            Self::Instances(s) => s.get(i).map(System::Instance),
            Self::Statistical(s) => s.get(i).map(System::Statistical),
        }
    }

    /// Every item in order.
    pub fn iter(self) -> impl Iterator<Item = System<'a>> {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

impl<'a> From<&'a [Instance]> for Systems<'a> {
    fn from(s: &'a [Instance]) -> Self {
        Self::Instances(s)
    }
}

impl<'a> From<&'a Vec<Instance>> for Systems<'a> {
    fn from(s: &'a Vec<Instance>) -> Self {
        Self::Instances(s)
    }
}

impl<'a> From<&'a [StatInstance]> for Systems<'a> {
    fn from(s: &'a [StatInstance]) -> Self {
        Self::Statistical(s)
    }
}

impl<'a> From<&'a Vec<StatInstance>> for Systems<'a> {
    fn from(s: &'a Vec<StatInstance>) -> Self {
        Self::Statistical(s)
    }
}

/// What the trainer's network(s) see (module docs of `tables::statistical` for Table 4).
pub(super) enum Inputs {
    /// Instantaneous features and shift operator of each instance (Tables 2–3).
    Instantaneous,
    /// Statistical features and shift operator of each system; with a baseband network
    /// (U-G-HBF-2GCN) the baseband coefficients of each sample come from it, otherwise
    /// (U-G-HBF-GCN) they are the analog coefficients.
    Statistical { baseband: Option<(Gcn, VarMap)> },
}

/// The network outputs of one system: coefficient heads (tensor with its graph, values) and, per
/// sample, the head whose coefficients its baseband problem uses.
pub(super) struct Heads {
    pub(super) heads: Vec<(Tensor, Array2<f64>)>,
    pub(super) of_sample: Vec<usize>,
}

/// Why a sample of a training batch is masked (no solver gradient).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Masked {
    /// The virtual problem is infeasible or singular: the sample gets the recovery penalty.
    Infeasible,
    /// Unusable data (non-finite coefficients or values, a failed selection).
    Unusable,
}

/// The training forward pass of one system: per sample the unrolled output or why it is masked;
/// the greedy steps of a statistical selection (for the straight-through path).
pub(super) struct SystemForward {
    pub(super) samples: Vec<Result<UnrolledOutput, Masked>>,
    pub(super) steps: Vec<GreedyStep>,
}

/// Inference on one system: per sample its coefficients and the analog selection it is evaluated
/// with (`None`: the sample's own greedy selection, the instantaneous case).
pub(super) struct Prepared {
    pub(super) coeffs: Vec<Array2<f64>>,
    pub(super) selection: Option<(Vec<usize>, Array2<c64>)>,
}

/// The analog selection of a statistical system: codeword indices, `A: [N × M]` and the greedy
/// steps with their trials (empty when the SNR initialisation was kept).
pub(super) type AnalogSelection = (Vec<usize>, Array2<c64>, Vec<GreedyStep>);

/// Adds `x` to an optional accumulator.
pub(super) fn accumulate(acc: &mut Option<Array2<f64>>, x: Array2<f64>) {
    match acc {
        Some(a) => *a += &x,
        None => *acc = Some(x),
    }
}
