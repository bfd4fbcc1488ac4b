//! Prints the WSR trace of WMMSE on one Rayleigh instance (M = 64, K = 4, N_k = 2, SNR 20 dB),
//! next to ZF, to inspect convergence.
use beamlab_baselines::{WmmseInit, WmmseParams, wmmse, zf};
use beamlab_core::Problem;
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<f64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let snr_db = args.first().copied().unwrap_or(20.0);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let h = beamlab_channel::rayleigh(4, 2, 64, &mut rng)?;
    let p = Problem::new(h, 1.0, 10f64.powf(snr_db / 10.0))?;
    let w_zf = zf(&p)?;
    let r_zf = beamlab_linalg_ops::user_rates(p.channel.blocks(), w_zf.view(), &p.noise_power)?.sum();
    println!("ZF: {r_zf:.4}");
    for init in [WmmseInit::Random, WmmseInit::Mrt] {
        let params = WmmseParams { tolerance: 0.0, max_n_iterations: 400, init };
        let (_, d) = wmmse(&p, &params, &mut rng)?;
        let t = &d.objective_trace;
        let pick: Vec<String> = [0usize, 1, 2, 3, 5, 10, 20, 50, 100, 200, 400]
            .iter()
            .filter(|&&i| i < t.len())
            .map(|&i| format!("{i}:{:.4}", t[i]))
            .collect();
        println!("{init:?}: {}", pick.join(" "));
    }
    Ok(())
}
