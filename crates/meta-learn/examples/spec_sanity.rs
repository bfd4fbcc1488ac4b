//! The spec §3 NumPy sanity check re-run: i.i.d. Rayleigh, Mt = 32, K = 4, N = 2, 100 trials,
//! SNR 20 dB, 30 iterations, γ = 0 and 10 dB; prints the mean true WSR of each baseline.
//!
//! `cargo run --release -p beamlab-meta-learn --example spec_sanity`
use beamlab_channel::unknown_error::{haar_unitary, miso_columns, sample_error_block};
use beamlab_channel::{UnknownErrorParams, rayleigh};
use beamlab_meta_learn::wmmse::{SystemParams, WmmseConfig, robust_wmmse, swmmse, wsr};
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = WmmseConfig { max_n_iterations: 30, tolerance: 0.0 };
    let sys = SystemParams::uniform(4, 0.01, 1.0);
    for gamma in [0.0, 10.0] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let q = haar_unitary(32, &mut rng)?;
        let mut acc = [0.0; 5];
        let n = 100;
        for _ in 0..n {
            let h = rayleigh(4, 1, 32, &mut rng)?;
            let p = UnknownErrorParams { error_level_db: gamma, ..Default::default() };
            let b = sample_error_block(&h, &q, &p, &mut rng)?;
            let ht = miso_columns(&h)?;
            let hb: Vec<_> = b.iter().map(|u| u.sample_mean.clone()).collect();
            let rs: Vec<_> = b.iter().map(|u| u.sample_covariance.clone()).collect();
            let re: Vec<_> = b.iter().map(|u| u.error_covariance.clone()).collect();
            let smp: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
            acc[0] += wsr(&ht, &robust_wmmse(&hb, None, &sys, &cfg)?.v, &sys)?;
            acc[1] += wsr(&ht, &robust_wmmse(&hb, Some(&rs), &sys, &cfg)?.v, &sys)?;
            acc[2] += wsr(&ht, &robust_wmmse(&hb, Some(&re), &sys, &cfg)?.v, &sys)?;
            acc[3] += wsr(&ht, &swmmse(&smp, &sys, &cfg)?.v, &sys)?;
            acc[4] += wsr(&ht, &robust_wmmse(&ht, None, &sys, &cfg)?.v, &sys)?;
        }
        let m: Vec<String> = acc.iter().map(|a| format!("{:.1}", a / n as f64)).collect();
        println!(
            "gamma {gamma} dB: WMMSE(h̄) {}, robust R^S {}, robust oracle {}, SAA {}, perfect {}",
            m[0], m[1], m[2], m[3], m[4]
        );
    }
    Ok(())
}
