//! Shared helpers of the root integration tests.

use beamlab_eval::ExperimentConfig;

/// A small experiment (8 antennas, 3 users with 2 antennas each, CSI error −10 dB), used by the
/// golden, resume and determinism tests.
pub fn small_config(name: &str, model: &str) -> ExperimentConfig {
    let scenario = if model == "rayleigh" {
        "model = \"rayleigh\"\nn_tx = 8\nn_users = 3\nn_rx = 2".to_string()
    } else {
        "model = \"saleh_valenzuela\"\nn_tx = 16\nn_users = 3".to_string()
    };
    let text = format!(
        r#"
experiment = "{name}"
title = "small {model}"
seed = 4242
[scenario]
{scenario}
[csi]
model = "awgn"
cee_db = -10.0
[sweep]
axis = "snr_db"
values = [0.0, 10.0, 20.0]
[profile.quick]
samples = 8
[[method]]
kind = "mrt"
[[method]]
kind = "zf"
[[method]]
kind = "rzf"
[[method]]
kind = "wmmse"
max_n_iterations = 50
[[method]]
kind = "glnn"
[[method]]
kind = "lagd"
n_iterations = 100
"#
    );
    ExperimentConfig::from_toml_str(&text, "small_config").expect("the test config is valid")
}
