//! Wirings: which sensory inputs and neurons feed which neurons.
//!
//! A [`Wiring`] has `n_inputs` sensory inputs and a sequence of [`Layer`]s. Layer `l` reads the
//! outputs of stage `l − 1` (the sensory inputs for `l = 0`) through its **input mask**
//! `[n_prev, n_neurons]` (entry `(i, j)` true when source `i` has a synapse onto neuron `j`) and
//! its own previous state through its **recurrent mask** `[n_neurons, n_neurons]` (synapses within
//! the layer, `(pre, post)`). There are no backward edges: nothing feeds a sensory input and no
//! layer reads a later layer.
//!
//! Neurons are numbered layer by layer, so a state vector is the concatenation of the layers'
//! states; the outputs are the first `n_outputs` neurons of the last layer.
//!
//! - [`ncp`]: the neural circuit policy of Lechner et al. (sensory → inter → command → motor),
//!   sparse and seeded. Every sensory input has exactly `sensory_fanout` inter targets, every inter
//!   neuron exactly `inter_fanout` command targets, every motor neuron exactly `motor_fanin`
//!   command sources, `recurrent_command_synapses` distinct command → command synapses, and every
//!   inter / command / motor neuron receives at least one synapse from the previous stage.
//! - [`auto_ncp`]: the NCP sized from `(units, n_outputs, sparsity)` as ncps' `AutoNCP` does.
//! - [`fully_connected`]: one dense layer.

use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::LiquidError;

/// One layer of neurons and its synapse masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// A name for display (`"inter"`, `"command"`, `"motor"`, `"fc"`).
    pub name: String,
    /// Synapses from the previous stage: `[n_prev, n_neurons]`, `(source, neuron)`.
    pub input_mask: Array2<bool>,
    /// Synapses within the layer: `[n_neurons, n_neurons]`, `(pre, post)`.
    pub recurrent_mask: Array2<bool>,
}

impl Layer {
    /// Neurons of the layer.
    #[must_use]
    pub fn n_neurons(&self) -> usize {
        self.input_mask.ncols()
    }

    /// Sources of the previous stage.
    #[must_use]
    pub fn n_sources(&self) -> usize {
        self.input_mask.nrows()
    }
}

/// Sensory inputs → layers of neurons, with per-layer input and recurrent masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wiring {
    n_inputs: usize,
    layers: Vec<Layer>,
    n_outputs: usize,
}

impl Wiring {
    /// A wiring from explicit layers.
    ///
    /// # Errors
    /// [`LiquidError::InvalidParameter`] when there are no inputs or layers, a layer is empty, a
    /// mask's shape does not match the previous stage, or `n_outputs ∉ 1..=n_last_layer`.
    pub fn from_layers(n_inputs: usize, layers: Vec<Layer>, n_outputs: usize) -> Result<Self, LiquidError> {
        if n_inputs == 0 || layers.is_empty() {
            return Err(LiquidError::InvalidParameter("a wiring needs at least one input and one layer".into()));
        }
        let mut n_prev = n_inputs;
        for (l, layer) in layers.iter().enumerate() {
            let n = layer.n_neurons();
            if n == 0 {
                return Err(LiquidError::InvalidParameter(format!("layer {l} ({}) has no neurons", layer.name)));
            }
            if layer.n_sources() != n_prev {
                return Err(LiquidError::InvalidParameter(format!(
                    "layer {l} ({}) input mask has {} rows, the previous stage has {n_prev} outputs",
                    layer.name,
                    layer.n_sources()
                )));
            }
            if layer.recurrent_mask.dim() != (n, n) {
                return Err(LiquidError::InvalidParameter(format!(
                    "layer {l} ({}) recurrent mask is {:?}, expected ({n}, {n})",
                    layer.name,
                    layer.recurrent_mask.dim()
                )));
            }
            n_prev = n;
        }
        if n_outputs == 0 || n_outputs > n_prev {
            return Err(LiquidError::InvalidParameter(format!(
                "n_outputs = {n_outputs} must be in 1..={n_prev} (the last layer's size)"
            )));
        }
        Ok(Self { n_inputs, layers, n_outputs })
    }

    /// Sensory inputs.
    #[must_use]
    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// Total neurons (the state size).
    #[must_use]
    pub fn units(&self) -> usize {
        self.layers.iter().map(Layer::n_neurons).sum()
    }

    /// Outputs: the first `n_outputs` neurons of the last layer.
    #[must_use]
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// The layers, in the order they run.
    #[must_use]
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Index of the first neuron of each layer in the state vector.
    #[must_use]
    pub fn layer_offsets(&self) -> Vec<usize> {
        self.layers
            .iter()
            .scan(0, |acc, l| {
                let o = *acc;
                *acc += l.n_neurons();
                Some(o)
            })
            .collect()
    }

    /// Index of the first output neuron in the state vector.
    #[must_use]
    pub fn output_offset(&self) -> usize {
        self.units() - self.layers.last().map_or(0, Layer::n_neurons)
    }

    /// The sensory adjacency `[n_inputs, units]`: the first layer's input mask, zero elsewhere.
    #[must_use]
    pub fn sensory_adjacency(&self) -> Array2<bool> {
        let mut a = Array2::from_elem((self.n_inputs, self.units()), false);
        if let Some(first) = self.layers.first() {
            a.slice_mut(ndarray::s![.., ..first.n_neurons()]).assign(&first.input_mask);
        }
        a
    }

    /// The neuron adjacency `[units, units]` (`(pre, post)`) over all neurons: every layer's input
    /// mask from the previous layer plus its recurrent mask (ncps' `adjacency_matrix`, polarity
    /// ignored).
    #[must_use]
    pub fn adjacency(&self) -> Array2<bool> {
        let n = self.units();
        let mut a = Array2::from_elem((n, n), false);
        let offsets = self.layer_offsets();
        for (l, layer) in self.layers.iter().enumerate() {
            let (o, k) = (offsets[l], layer.n_neurons());
            a.slice_mut(ndarray::s![o..o + k, o..o + k]).assign(&layer.recurrent_mask);
            if l > 0 {
                let po = offsets[l - 1];
                a.slice_mut(ndarray::s![po..po + layer.n_sources(), o..o + k]).assign(&layer.input_mask);
            }
        }
        a
    }

    /// Synapses in total (sensory, feed-forward and recurrent).
    #[must_use]
    pub fn n_synapses(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.input_mask.iter().filter(|b| **b).count() + l.recurrent_mask.iter().filter(|b| **b).count())
            .sum()
    }
}

/// Sizes of a neural circuit policy (see [`ncp`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NcpParams {
    /// Sensory inputs.
    pub n_inputs: usize,
    /// Inter neurons (first layer).
    pub n_inter: usize,
    /// Command neurons (second layer, recurrent).
    pub n_command: usize,
    /// Motor neurons (last layer, the outputs).
    pub n_motor: usize,
    /// Inter targets of each sensory input (`1..=n_inter`).
    pub sensory_fanout: usize,
    /// Command targets of each inter neuron (`1..=n_command`).
    pub inter_fanout: usize,
    /// Distinct command → command synapses (`0..=n_command²`).
    pub recurrent_command_synapses: usize,
    /// Command sources of each motor neuron (`1..=n_command`).
    pub motor_fanin: usize,
}

impl NcpParams {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`LiquidError::InvalidParameter`] on zero counts or a fan-out / fan-in larger than the layer
    /// it selects from.
    pub fn check(&self) -> Result<(), LiquidError> {
        let bad = |m: String| Err(LiquidError::InvalidParameter(m));
        if self.n_inputs == 0 || self.n_inter == 0 || self.n_command == 0 || self.n_motor == 0 {
            return bad(format!("NCP needs at least one input and one neuron per layer: {self:?}"));
        }
        if !(1..=self.n_inter).contains(&self.sensory_fanout) {
            return bad(format!("sensory_fanout = {} must be in 1..={}", self.sensory_fanout, self.n_inter));
        }
        if !(1..=self.n_command).contains(&self.inter_fanout) {
            return bad(format!("inter_fanout = {} must be in 1..={}", self.inter_fanout, self.n_command));
        }
        if !(1..=self.n_command).contains(&self.motor_fanin) {
            return bad(format!("motor_fanin = {} must be in 1..={}", self.motor_fanin, self.n_command));
        }
        if self.recurrent_command_synapses > self.n_command * self.n_command {
            return bad(format!(
                "recurrent_command_synapses = {} exceeds n_command² = {}",
                self.recurrent_command_synapses,
                self.n_command * self.n_command
            ));
        }
        Ok(())
    }
}

/// Random synapses `[n_src, n_dst]` in which each source has `fanout` distinct targets and every
/// target has at least one source.
///
/// Coverage first: the targets, shuffled, are dealt round-robin to the sources, shuffled; then each
/// source draws its remaining targets uniformly without replacement. When `n_src · fanout ≥ n_dst`
/// every source ends with exactly `fanout` targets; otherwise full coverage needs more, and each
/// source ends with `⌊n_dst / n_src⌋` or `⌈n_dst / n_src⌉` targets (documented exception).
fn sample_fanout(n_src: usize, n_dst: usize, fanout: usize, rng: &mut ChaCha8Rng) -> Array2<bool> {
    let mut mask = Array2::from_elem((n_src, n_dst), false);
    let mut dst: Vec<usize> = (0..n_dst).collect();
    dst.shuffle(rng);
    let mut src: Vec<usize> = (0..n_src).collect();
    src.shuffle(rng);
    for (k, &d) in dst.iter().enumerate() {
        mask[[src[k % n_src], d]] = true;
    }
    for s in 0..n_src {
        let have = mask.row(s).iter().filter(|b| **b).count();
        if have >= fanout {
            continue;
        }
        let mut free: Vec<usize> = (0..n_dst).filter(|&d| !mask[[s, d]]).collect();
        free.shuffle(rng);
        for &d in free.iter().take(fanout - have) {
            mask[[s, d]] = true;
        }
    }
    mask
}

/// A neural circuit policy: sensory → inter → command (recurrent) → motor, drawn with a
/// `ChaCha8Rng` seeded by `seed` (same seed, same wiring).
///
/// - sensory → inter: each input has `sensory_fanout` distinct inter targets;
/// - inter → command: each inter neuron has `inter_fanout` distinct command targets;
/// - command → command: `recurrent_command_synapses` distinct `(pre, post)` pairs (self-loops
///   allowed), recorded in the command layer's recurrent mask;
/// - command → motor: each motor neuron has `motor_fanin` distinct command sources.
///
/// Every inter, command and motor neuron gets at least one synapse from the previous stage, and
/// when `n_motor · motor_fanin ≥ n_command` every command neuron feeds at least one motor neuron.
/// The fan-outs are exact whenever the previous stage can cover the next one with them
/// (`n_inputs · sensory_fanout ≥ n_inter`, `n_inter · inter_fanout ≥ n_command`); otherwise the
/// sources take just enough extra synapses to cover every neuron (ncps adds synapses to
/// unreachable neurons in the same situation). Inter and motor layers have no recurrent synapses;
/// the `WiredCfc` makes recurrence within each layer dense regardless (as ncps' `WiredCfCCell`).
///
/// # Errors
/// [`LiquidError::InvalidParameter`] from [`NcpParams::check`].
pub fn ncp(params: &NcpParams, seed: u64) -> Result<Wiring, LiquidError> {
    params.check()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let p = params;
    let sensory = sample_fanout(p.n_inputs, p.n_inter, p.sensory_fanout, &mut rng);
    let inter_to_command = sample_fanout(p.n_inter, p.n_command, p.inter_fanout, &mut rng);
    let mut pairs: Vec<(usize, usize)> = (0..p.n_command).flat_map(|i| (0..p.n_command).map(move |j| (i, j))).collect();
    pairs.shuffle(&mut rng);
    let mut command_rec = Array2::from_elem((p.n_command, p.n_command), false);
    for &(i, j) in pairs.iter().take(p.recurrent_command_synapses) {
        command_rec[[i, j]] = true;
    }
    let command_to_motor = sample_fanout(p.n_motor, p.n_command, p.motor_fanin, &mut rng).reversed_axes();
    let layers = vec![
        Layer {
            name: "inter".into(),
            input_mask: sensory,
            recurrent_mask: Array2::from_elem((p.n_inter, p.n_inter), false),
        },
        Layer { name: "command".into(), input_mask: inter_to_command, recurrent_mask: command_rec },
        Layer {
            name: "motor".into(),
            input_mask: command_to_motor.as_standard_layout().to_owned(),
            recurrent_mask: Array2::from_elem((p.n_motor, p.n_motor), false),
        },
    ];
    Wiring::from_layers(p.n_inputs, layers, p.n_motor)
}

/// The NCP sizes ncps' `AutoNCP(units, output_size, sparsity_level)` derives, for `n_inputs`
/// sensory inputs: with density `d = 1 − sparsity`,
///
/// - `n_command = max(⌊0.4 (units − n_outputs)⌋, 1)`, `n_inter = units − n_outputs − n_command`,
///   `n_motor = n_outputs`;
/// - `sensory_fanout = max(⌊n_inter d⌋, 1)`, `inter_fanout = max(⌊n_command d⌋, 1)`,
///   `recurrent_command_synapses = max(⌊2 n_command d⌋, 1)` (capped at `n_command²`, which only
///   binds for a single command neuron at `d = 1`), `motor_fanin = max(⌊n_command d⌋, 1)`.
///
/// `auto_ncp(8, 30, 8, 0.5, seed)` (GLNN) gives 14 inter, 8 command, 8 motor neurons, fan-outs
/// 7 / 4, 8 recurrent command synapses and motor fan-in 4.
///
/// # Errors
/// [`LiquidError::InvalidParameter`] when `sparsity ∉ [0, 1)`, `n_inputs` or `n_outputs` is zero,
/// or `units − n_outputs < 2` (no room for an inter and a command neuron).
pub fn auto_ncp(
    n_inputs: usize,
    units: usize,
    n_outputs: usize,
    sparsity: f64,
    seed: u64,
) -> Result<Wiring, LiquidError> {
    if !(0.0..1.0).contains(&sparsity) {
        return Err(LiquidError::InvalidParameter(format!("sparsity = {sparsity} must be in [0, 1)")));
    }
    if n_inputs == 0 || n_outputs == 0 {
        return Err(LiquidError::InvalidParameter("auto_ncp needs n_inputs >= 1 and n_outputs >= 1".into()));
    }
    if units < n_outputs + 2 {
        return Err(LiquidError::InvalidParameter(format!(
            "units = {units} must exceed n_outputs = {n_outputs} by at least 2 (one inter and one command neuron)"
        )));
    }
    let density = 1.0 - sparsity;
    let n_hidden = units - n_outputs;
    let floor_at_least_one = |x: f64| (x.floor() as usize).max(1);
    let n_command = floor_at_least_one(0.4 * n_hidden as f64);
    let n_inter = n_hidden - n_command;
    let params = NcpParams {
        n_inputs,
        n_inter,
        n_command,
        n_motor: n_outputs,
        sensory_fanout: floor_at_least_one(n_inter as f64 * density),
        inter_fanout: floor_at_least_one(n_command as f64 * density),
        recurrent_command_synapses: floor_at_least_one(n_command as f64 * density * 2.0).min(n_command * n_command),
        motor_fanin: floor_at_least_one(n_command as f64 * density),
    };
    ncp(&params, seed)
}

/// One dense layer of `units` neurons: every input feeds every neuron, every neuron feeds every
/// neuron (self-loops included); the outputs are the first `n_outputs` neurons of that layer
/// (ncps' `FullyConnected`).
///
/// # Errors
/// [`LiquidError::InvalidParameter`] on zero sizes or `n_outputs > units`.
pub fn fully_connected(n_inputs: usize, units: usize, n_outputs: usize) -> Result<Wiring, LiquidError> {
    if units == 0 {
        return Err(LiquidError::InvalidParameter("fully_connected needs units >= 1".into()));
    }
    let layer = Layer {
        name: "fc".into(),
        input_mask: Array2::from_elem((n_inputs, units), true),
        recurrent_mask: Array2::from_elem((units, units), true),
    };
    Wiring::from_layers(n_inputs, vec![layer], n_outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_counts(m: &Array2<bool>) -> Vec<usize> {
        m.rows().into_iter().map(|r| r.iter().filter(|b| **b).count()).collect()
    }

    fn col_counts(m: &Array2<bool>) -> Vec<usize> {
        m.columns().into_iter().map(|c| c.iter().filter(|b| **b).count()).collect()
    }

    #[test]
    fn auto_ncp_matches_glnn_sizes() {
        let w = auto_ncp(8, 30, 8, 0.5, 1).unwrap();
        let sizes: Vec<usize> = w.layers().iter().map(Layer::n_neurons).collect();
        assert_eq!(sizes, vec![14, 8, 8]);
        assert_eq!((w.n_inputs(), w.units(), w.n_outputs(), w.output_offset()), (8, 30, 8, 22));
        let [inter, command, motor] = w.layers() else { panic!("three layers") };
        assert!(row_counts(&inter.input_mask).iter().all(|&c| c == 7));
        assert!(row_counts(&command.input_mask).iter().all(|&c| c == 4));
        assert!(col_counts(&motor.input_mask).iter().all(|&c| c == 4));
        assert_eq!(command.recurrent_mask.iter().filter(|b| **b).count(), 8);
    }

    #[test]
    fn ncp_invariants_hold_for_many_seeds() {
        let p = NcpParams {
            n_inputs: 5,
            n_inter: 9,
            n_command: 6,
            n_motor: 3,
            sensory_fanout: 3,
            inter_fanout: 2,
            recurrent_command_synapses: 7,
            motor_fanin: 2,
        };
        for seed in 0..50 {
            let w = ncp(&p, seed).unwrap();
            let [inter, command, motor] = w.layers() else { panic!("three layers") };
            assert!(row_counts(&inter.input_mask).iter().all(|&c| c == 3));
            assert!(row_counts(&command.input_mask).iter().all(|&c| c == 2));
            assert!(col_counts(&motor.input_mask).iter().all(|&c| c == 2));
            // Every neuron of every layer has an incoming synapse from the previous stage.
            for layer in w.layers() {
                assert!(col_counts(&layer.input_mask).iter().all(|&c| c >= 1), "seed {seed}");
            }
            // n_motor · motor_fanin = 6 ≥ n_command: every command neuron feeds a motor neuron.
            assert!(row_counts(&motor.input_mask).iter().all(|&c| c >= 1));
            assert_eq!(command.recurrent_mask.iter().filter(|b| **b).count(), 7);
            assert!(!inter.recurrent_mask.iter().any(|b| *b) && !motor.recurrent_mask.iter().any(|b| *b));
            // No backward edges: the adjacency is zero below the layer blocks (a later layer never
            // feeds an earlier one) and nothing feeds a sensory input (there is no row for it).
            let a = w.adjacency();
            let offsets = w.layer_offsets();
            let layer_of = |n: usize| offsets.iter().rposition(|&o| o <= n).unwrap_or(0);
            for ((i, j), &e) in a.indexed_iter() {
                if e {
                    let (li, lj) = (layer_of(i), layer_of(j));
                    assert!(lj == li || lj == li + 1, "edge {i}->{j} from layer {li} to {lj}");
                }
            }
            let s = w.sensory_adjacency();
            assert!(s.slice(ndarray::s![.., 9..]).iter().all(|b| !*b));
            assert_eq!(w.n_synapses(), 5 * 3 + 9 * 2 + 7 + 3 * 2);
        }
    }

    #[test]
    fn seeds_reproduce_and_differ() {
        let a = auto_ncp(8, 30, 8, 0.5, 3).unwrap();
        assert_eq!(a, auto_ncp(8, 30, 8, 0.5, 3).unwrap());
        assert_ne!(a, auto_ncp(8, 30, 8, 0.5, 4).unwrap());
    }

    #[test]
    fn too_few_sources_still_cover_every_neuron() {
        // One input cannot reach 14 inter neurons with fan-out 7: it takes all of them.
        let w = auto_ncp(1, 30, 8, 0.5, 0).unwrap();
        let inter = &w.layers()[0];
        assert!(col_counts(&inter.input_mask).iter().all(|&c| c == 1));
        assert_eq!(row_counts(&inter.input_mask), vec![14]);
    }

    #[test]
    fn bad_parameters_are_typed_errors() {
        let ok = NcpParams {
            n_inputs: 2,
            n_inter: 3,
            n_command: 2,
            n_motor: 1,
            sensory_fanout: 2,
            inter_fanout: 1,
            recurrent_command_synapses: 1,
            motor_fanin: 1,
        };
        assert!(ncp(&ok, 0).is_ok());
        let bad = [
            NcpParams { n_inter: 0, ..ok },
            NcpParams { n_motor: 0, ..ok },
            NcpParams { n_inputs: 0, ..ok },
            NcpParams { sensory_fanout: 4, ..ok },
            NcpParams { sensory_fanout: 0, ..ok },
            NcpParams { inter_fanout: 3, ..ok },
            NcpParams { motor_fanin: 3, ..ok },
            NcpParams { recurrent_command_synapses: 5, ..ok },
        ];
        for p in bad {
            assert!(matches!(ncp(&p, 0), Err(LiquidError::InvalidParameter(_))), "{p:?}");
        }
        for s in [-0.1, 1.0, f64::NAN] {
            assert!(matches!(auto_ncp(8, 30, 8, s, 0), Err(LiquidError::InvalidParameter(_))));
        }
        assert!(matches!(auto_ncp(8, 9, 8, 0.5, 0), Err(LiquidError::InvalidParameter(_))));
        assert!(matches!(auto_ncp(0, 30, 8, 0.5, 0), Err(LiquidError::InvalidParameter(_))));
        assert!(matches!(fully_connected(2, 3, 4), Err(LiquidError::InvalidParameter(_))));
        assert!(matches!(fully_connected(0, 3, 1), Err(LiquidError::InvalidParameter(_))));
    }

    #[test]
    fn fully_connected_is_dense() {
        let w = fully_connected(3, 4, 2).unwrap();
        assert_eq!(w.layers().len(), 1);
        assert!(w.adjacency().iter().all(|b| *b) && w.sensory_adjacency().iter().all(|b| *b));
        assert_eq!((w.units(), w.n_outputs(), w.output_offset()), (4, 2, 0));
    }
}
