//! Draws 3GPP TR 38.901 UMa channels, runs WMMSE and ZF on them and prints the mean sum rates:
//! what a researcher who depends only on `beamlab-baselines`, `beamlab-channel`, `beamlab-core`
//! and `beamlab-linalg-ops` writes. Exits non-zero if anything fails or WMMSE loses to ZF.

use beamlab_baselines::{Wmmse, WmmseParams, zf};
use beamlab_channel::{Uma38901Params, uma38901};
use beamlab_core::{Beamformer, Problem};
use beamlab_linalg_ops::user_rates;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let params = Uma38901Params::default();
    let (n_samples, n_users, snr_db) = (20, 4, 10.0);
    let power = 10f64.powf(snr_db / 10.0);
    let mut wmmse = Wmmse::new(WmmseParams::default());
    let (mut se_wmmse, mut se_zf) = (0.0, 0.0);
    for _ in 0..n_samples {
        let h = uma38901(&params, n_users, &mut rng)?;
        let problem = Problem::new(h, 1.0, power)?;
        let sol = wmmse.solve(&problem, &mut rng)?;
        se_wmmse += sol.precoder.rates(&problem.channel, &problem.noise_power)?.sum();
        let w = zf(&problem)?;
        se_zf += user_rates(problem.channel.blocks(), w.view(), &problem.noise_power)?.sum();
    }
    let (se_wmmse, se_zf) = (se_wmmse / n_samples as f64, se_zf / n_samples as f64);
    println!(
        "38.901 UMa, M = {}, K = {n_users}, SNR {snr_db} dB, {n_samples} drops: WMMSE {se_wmmse:.3} bit/s/Hz, ZF {se_zf:.3} bit/s/Hz",
        params.n_bs_antennas
    );
    if !(se_wmmse.is_finite() && se_wmmse >= se_zf - 1e-6) {
        return Err(format!("WMMSE ({se_wmmse}) should not lose to its ZF-family start ({se_zf})").into());
    }
    Ok(())
}
