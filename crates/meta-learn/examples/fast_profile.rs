//! Profiling driver for the fast path: `n` online adaptations (5 SGD steps + the precoder) of
//! the Table I network on one block. Use with `perf stat` (CPU time is robust to a loaded
//! machine): `cargo run --release -p beamlab-meta-learn --example fast_profile -- 200`.
//! With `meta` as the first argument it times one MB-MAML meta-step (Table I: 8 bases, 20
//! tasks, 5 inner steps) with the fast path and with candle's autograd.

use beamlab_channel::unknown_error::{haar_unitary, miso_columns, sample_error_block};
use beamlab_channel::{Uma38901Params, UnknownErrorParams, uma38901};
use beamlab_meta_learn::covnet::{CovNet, CovNetConfig, Task};
use beamlab_meta_learn::fast::precoder_of;
use beamlab_meta_learn::maml::{BasisSelection, MbMaml, MbMamlConfig};
use beamlab_meta_learn::wmmse::SystemParams;
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("meta") {
        return meta();
    }
    let n: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let n_bases: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let h = uma38901(&Uma38901Params::default(), 4, &mut rng)?;
    let q = haar_unitary(32, &mut rng)?;
    let block = sample_error_block(&h, &q, &UnknownErrorParams::default(), &mut rng)?;
    let samples: Vec<_> = block.iter().map(|u| u.samples.clone()).collect();
    let sys = SystemParams::uniform(4, 0.01, 1.0);
    let task = Task::new(&samples, Some(&miso_columns(&h)?), &sys)?;
    let net = CovNet::new(CovNetConfig::default(), &dev)?;
    let model = MbMaml::new(&net, MbMamlConfig { n_bases, ..MbMamlConfig::default() }, &mut rng)?;
    let start = std::time::Instant::now();
    let mut acc = 0.0;
    for _ in 0..n {
        let a = model.adapt(&net, &task, 5, 0.01, BasisSelection::Argmin)?;
        acc += precoder_of(&net, &a.params, &task)?[[0, 0]].re;
    }
    let per = start.elapsed().as_secs_f64() / n as f64 * 1e3;
    println!("{n} adaptations, {per:.3} ms each (wall), checksum {acc:.6}");
    Ok(())
}

fn meta() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let sys = SystemParams::uniform(4, 0.01, 1.0);
    let q = haar_unitary(32, &mut rng)?;
    let tasks: Vec<Task> = (0..20)
        .map(|_| -> Result<Task, Box<dyn std::error::Error>> {
            let h = uma38901(&Uma38901Params::default(), 4, &mut rng)?;
            let block = sample_error_block(&h, &q, &UnknownErrorParams::default(), &mut rng)?;
            let samples: Vec<_> = block.iter().map(|u| u.samples.clone()).collect();
            Ok(Task::new(&samples, Some(&miso_columns(&h)?), &sys)?)
        })
        .collect::<Result<_, _>>()?;
    let net = CovNet::new(CovNetConfig::default(), &dev)?;
    let mut model = MbMaml::new(&net, MbMamlConfig::default(), &mut ChaCha8Rng::seed_from_u64(3))?;
    model.meta_step(&net, &tasks)?; // warm-up
    let start = std::time::Instant::now();
    let r = model.meta_step(&net, &tasks)?;
    println!(
        "meta-step (8 bases, 20 tasks): {:.3} s, query loss {:.6}",
        start.elapsed().as_secs_f64(),
        r.mean_query_loss
    );
    Ok(())
}
