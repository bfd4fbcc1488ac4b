//! Saving and loading a model's variables.
//!
//! Both go through [`beamlab_candle_bridge::save_checkpoint`] / [`load_checkpoint`]: safetensors files whose variable names and shapes must
//! match the model exactly, otherwise nothing is loaded.
//!
//! A checkpoint holds the trainable variables only. The wiring masks are not variables: they are
//! rebuilt from the wiring's parameters and seed, which the caller keeps with the file. A model of
//! other sizes (a differently sized wiring, another cell or mode) fails to load; two wirings of the
//! same sizes drawn with different seeds have identical variable shapes and cannot be told apart
//! by the file.

use std::path::Path;

use beamlab_candle_bridge::candle_nn::VarMap;
use beamlab_candle_bridge::{load_checkpoint, save_checkpoint};

use crate::LiquidError;

/// Writes every variable of `vars` to the safetensors file `path`.
///
/// # Errors
/// IO / candle errors, as [`LiquidError::Bridge`].
pub fn save(vars: &VarMap, path: &Path) -> Result<(), LiquidError> {
    save_checkpoint(vars, path)?;
    tracing::debug!(path = %path.display(), n_vars = vars.all_vars().len(), "saved liquid-nn checkpoint");
    Ok(())
}

/// Loads the safetensors file `path` into `vars` (all variables, same names and shapes, or
/// nothing).
///
/// # Errors
/// [`LiquidError::Bridge`] wrapping a checkpoint mismatch or an IO error.
pub fn load(vars: &VarMap, path: &Path) -> Result<(), LiquidError> {
    load_checkpoint(vars, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfc::{CfcMode, WiredCfc};
    use crate::ltc::{LtcConfig, WiredLtc};
    use crate::sequence::SequenceRunner;
    use crate::wiring::auto_ncp;
    use beamlab_candle_bridge::candle_core::{DType, Device, Tensor};
    use beamlab_candle_bridge::seeded_var_builder;

    #[test]
    fn round_trip_gives_identical_outputs_and_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfc.safetensors");
        let wiring = auto_ncp(4, 12, 3, 0.5, 8).unwrap();
        let make = |seed: u64| {
            let vm = VarMap::new();
            let cell =
                WiredCfc::new(&wiring, CfcMode::Default, seeded_var_builder(&vm, seed, DType::F64, &Device::Cpu))
                    .unwrap();
            (vm, SequenceRunner::new(cell).unwrap())
        };
        let seq = Tensor::new(&[[0.5, -1.0, 0.3, 0.2], [0.9, 0.2, -0.4, 1.0]], &Device::Cpu).unwrap();
        let (vm_a, mut a) = make(1);
        save(&vm_a, &path).unwrap();
        let (vm_b, mut b) = make(2);
        let before: Vec<Vec<f64>> = b.run(&seq, 1.0).unwrap().to_vec2().unwrap();
        b.reset().unwrap();
        load(&vm_b, &path).unwrap();
        let out_a: Vec<Vec<f64>> = a.run(&seq, 1.0).unwrap().to_vec2().unwrap();
        let out_b: Vec<Vec<f64>> = b.run(&seq, 1.0).unwrap().to_vec2().unwrap();
        assert_eq!(out_a, out_b);
        assert_ne!(before, out_b);
        // A differently wired (sized) model, another mode, or another cell is rejected.
        let other = auto_ncp(4, 14, 3, 0.5, 8).unwrap();
        let vm_c = VarMap::new();
        let _c =
            WiredCfc::new(&other, CfcMode::Default, seeded_var_builder(&vm_c, 1, DType::F64, &Device::Cpu)).unwrap();
        assert!(matches!(load(&vm_c, &path), Err(LiquidError::Bridge(_))));
        let vm_d = VarMap::new();
        let _d = WiredCfc::new(&wiring, CfcMode::Pure, seeded_var_builder(&vm_d, 1, DType::F64, &Device::Cpu)).unwrap();
        assert!(load(&vm_d, &path).is_err());
        let vm_e = VarMap::new();
        let _e = WiredLtc::new(&wiring, LtcConfig::default(), seeded_var_builder(&vm_e, 1, DType::F64, &Device::Cpu))
            .unwrap();
        assert!(load(&vm_e, &path).is_err());
        assert!(load(&vm_a, &dir.path().join("missing.safetensors")).is_err());
    }

    #[test]
    fn ltc_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ltc.safetensors");
        let wiring = auto_ncp(2, 6, 2, 0.5, 3).unwrap();
        let make = |seed: u64| {
            let vm = VarMap::new();
            let cell =
                WiredLtc::new(&wiring, LtcConfig::default(), seeded_var_builder(&vm, seed, DType::F64, &Device::Cpu))
                    .unwrap();
            (vm, SequenceRunner::new(cell).unwrap())
        };
        let seq = Tensor::new(&[[0.5, -1.0], [0.9, 0.2]], &Device::Cpu).unwrap();
        let (vm_a, mut a) = make(1);
        save(&vm_a, &path).unwrap();
        let (vm_b, mut b) = make(2);
        load(&vm_b, &path).unwrap();
        let out_a: Vec<Vec<f64>> = a.run(&seq, 1.0).unwrap().to_vec2().unwrap();
        let out_b: Vec<Vec<f64>> = b.run(&seq, 1.0).unwrap().to_vec2().unwrap();
        assert_eq!(out_a, out_b);
    }
}
