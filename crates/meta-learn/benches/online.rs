//! Criterion benchmarks of MB-MAML's online phase (Mt = 32, K = 4, N = 2, Table I network,
//! SALR r = 8, δ = 0.09, T = 10 unrolled iterations).
//!
//! Run single-threaded for stable numbers: `RAYON_NUM_THREADS=1 cargo bench -p beamlab-meta-learn`.
//! `covnet/fast-*` are one forward / forward + reverse of the production path (`fast`);
//! `online-adaptation/*` is a whole online block (basis selection, 5 SGD steps, the final
//! precoder). The candle graph is a test oracle only and is no longer benchmarked.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

use beamlab_channel::unknown_error::{haar_unitary, miso_columns, sample_error_block};
use beamlab_channel::{Uma38901Params, UnknownErrorParams, uma38901};
use beamlab_meta_learn::covnet::{CovNet, CovNetConfig, LossKind, Task};
use beamlab_meta_learn::fast::precoder_of;
use beamlab_meta_learn::maml::{BasisSelection, MbMaml, MbMamlConfig};
use beamlab_meta_learn::wmmse::{SystemParams, WmmseConfig, robust_wmmse};
use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let h = uma38901(&Uma38901Params::default(), 4, &mut rng).expect("channel");
    let q = haar_unitary(32, &mut rng).expect("Q");
    let block = sample_error_block(&h, &q, &UnknownErrorParams::default(), &mut rng).expect("block");
    let samples: Vec<_> = block.iter().map(|u| u.samples.clone()).collect();
    let sys = SystemParams::uniform(4, 0.01, 1.0);
    let h_true = miso_columns(&h).expect("columns");
    let task = Task::new(&samples, Some(&h_true), &sys).expect("task");
    let net = CovNet::new(CovNetConfig::default(), &dev).expect("net");
    let params = net.init_params(&mut rng).expect("params");

    let fast = beamlab_meta_learn::fast::FastNet::new(&net);
    let ft = fast.task(&task).expect("fast task");
    let theta = fast.flatten(&params).expect("flat");
    let mut ws = beamlab_meta_learn::fast::FastWorkspace::default();
    let mut grad = Vec::new();
    c.bench_function("covnet/fast-forward-m32-k4-t10", |b| {
        b.iter(|| fast.loss(&mut ws, &theta, &ft, LossKind::Support).expect("loss"));
    });
    c.bench_function("covnet/fast-grad-m32-k4-t10", |b| {
        b.iter(|| fast.loss_and_grad(&mut ws, &theta, &ft, LossKind::Support, &mut grad).expect("grad"));
    });
    for n_bases in [1, 8] {
        let cfg = MbMamlConfig { n_bases, ..MbMamlConfig::default() };
        let model = MbMaml::new(&net, cfg, &mut rng).expect("model");
        c.bench_function(&format!("online-adaptation/steps5-m32-k4-bases{n_bases}"), |b| {
            b.iter(|| {
                let a = model.adapt(&net, &task, 5, 0.01, BasisSelection::Argmin).expect("adapt");
                precoder_of(&net, &a.params, &task).expect("precoder")
            });
        });
    }
    let h_bar: Vec<_> = block.iter().map(|u| u.sample_mean.clone()).collect();
    let r_s: Vec<_> = block.iter().map(|u| u.sample_covariance.clone()).collect();
    c.bench_function("robust-wmmse/classical-m32-k4", |b| {
        b.iter(|| robust_wmmse(&h_bar, Some(&r_s), &sys, &WmmseConfig::default()).expect("wmmse"));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
