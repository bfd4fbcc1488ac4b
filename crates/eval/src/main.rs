//! The `beamlab` command-line tool: generate channels, solve, evaluate, reproduce experiments.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use beamlab_channel::{
    CsiModel, SvParams, read_channels_npy, read_precoders_npy, write_channels_npy, write_precoders_npy,
};
use beamlab_core::{Problem, derive_seed};
use beamlab_eval::config::{MethodConfig, MethodId};
use beamlab_eval::runner::{MethodContext, build_method};
use beamlab_eval::{ReproduceOptions, reproduce};
use clap::{Parser, Subcommand, ValueEnum};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Parser)]
#[command(name = "beamlab", version, about = "Robust beamforming: generate, solve, evaluate, reproduce")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Model {
    Rayleigh,
    SalehValenzuela,
}

#[derive(Subcommand)]
enum Command {
    /// Draw channels and write them as a complex128 .npy of shape [samples, K, N_rx, M].
    Generate {
        /// Channel model.
        #[arg(long, value_enum, default_value = "rayleigh")]
        model: Model,
        /// Transmit antennas M.
        #[arg(long, default_value_t = 64)]
        n_tx: usize,
        /// Users K.
        #[arg(long, default_value_t = 4)]
        n_users: usize,
        /// Receive antennas per user (Rayleigh only).
        #[arg(long, default_value_t = 2)]
        n_rx: usize,
        /// Number of samples.
        #[arg(long, default_value_t = 100)]
        samples: usize,
        /// Base seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file for the true channels.
        #[arg(long)]
        out: PathBuf,
        /// Also write estimates with white Gaussian error at this CEE (dB) to `--estimate-out`.
        #[arg(long, requires = "estimate_out", allow_hyphen_values = true)]
        cee_db: Option<f64>,
        /// Output file for the estimated channels.
        #[arg(long)]
        estimate_out: Option<PathBuf>,
    },
    /// Design precoders for the channels in a .npy file; writes [samples, M, K] complex128.
    Solve {
        /// Method.
        #[arg(long, value_enum)]
        method: MethodId,
        /// Channels the transmitter knows (.npy).
        #[arg(long)]
        channels: PathBuf,
        /// Transmit power budget P (linear).
        #[arg(long, default_value_t = 10.0)]
        power: f64,
        /// Noise power σ² (linear).
        #[arg(long, default_value_t = 1.0)]
        noise: f64,
        /// Seed for randomised methods.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// RF chains of hybrid methods (default: one per user).
        #[arg(long)]
        n_rf: Option<usize>,
        /// Output .npy.
        #[arg(long)]
        out: PathBuf,
    },
    /// Per-user rates of given precoders on given channels (CSV on stdout).
    Evaluate {
        /// Channels to score on (.npy).
        #[arg(long)]
        channels: PathBuf,
        /// Precoders (.npy, [samples, M, K]).
        #[arg(long)]
        precoders: PathBuf,
        /// Noise power σ² (linear).
        #[arg(long, default_value_t = 1.0)]
        noise: f64,
    },
    /// Run experiments from configs/*.toml into results/ and write REPORT.md.
    Reproduce {
        /// Profile (quick | paper | any profile the configs define).
        #[arg(long, default_value = "quick")]
        profile: String,
        /// Only these experiments (a name, or a prefix such as `glnn`).
        #[arg(long, num_args = 1..)]
        only: Vec<String>,
        /// Config directory.
        #[arg(long, default_value = "configs")]
        configs: PathBuf,
        /// Results directory.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Worker threads (default: all cores). Results do not depend on it.
        #[arg(long)]
        threads: Option<usize>,
        /// Discard existing results instead of resuming.
        #[arg(long)]
        fresh: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate { model, n_tx, n_users, n_rx, samples, seed, out, cee_db, estimate_out } => {
            if samples == 0 {
                bail!("--samples must be >= 1");
            }
            let mut truths = Vec::with_capacity(samples);
            let mut estimates = Vec::new();
            for s in 0..samples {
                let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[0, s as u64]));
                let h = match model {
                    Model::Rayleigh => beamlab_channel::rayleigh(n_users, n_rx, n_tx, &mut rng)?,
                    Model::SalehValenzuela => {
                        beamlab_channel::saleh_valenzuela(&SvParams::default(), n_users, n_tx, &mut rng)?
                    }
                };
                if let Some(cee_db) = cee_db {
                    estimates.push(CsiModel::Awgn { cee_db }.estimate(&h, &mut rng)?);
                }
                truths.push(h);
            }
            write_channels_npy(&out, &truths).with_context(|| format!("writing {}", out.display()))?;
            if let Some(path) = estimate_out {
                if estimates.is_empty() {
                    bail!("--estimate-out needs --cee-db");
                }
                write_channels_npy(&path, &estimates).with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!("wrote {samples} samples to {}", out.display());
        }
        Command::Solve { method, channels, power, noise, seed, n_rf, out } => {
            let hs = read_channels_npy(&channels).with_context(|| format!("reading {}", channels.display()))?;
            let cfg = MethodConfig::of(method);
            let n_users = hs.first().map_or(1, beamlab_core::Channel::n_users);
            let ctx = MethodContext { n_rf: n_rf.unwrap_or(n_users) };
            let mut bf = build_method(&cfg, seed, &ctx)?;
            let mut ws = Vec::with_capacity(hs.len());
            for (s, h) in hs.into_iter().enumerate() {
                let problem =
                    Problem::new(h, noise, power).with_context(|| format!("{}: sample {s}", channels.display()))?;
                let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[s as u64]));
                let sol = bf
                    .solve(&problem, &mut rng)
                    .with_context(|| format!("{} on {} sample {s}", bf.name(), channels.display()))?;
                let d = &sol.diagnostics;
                eprintln!(
                    "sample {s}: {} iterations, converged {}, {:.3} ms, objective {:?}",
                    d.n_iterations,
                    d.converged,
                    d.elapsed.as_secs_f64() * 1e3,
                    d.objective_trace.last()
                );
                ws.push(sol.precoder.effective()?);
            }
            write_precoders_npy(&out, &ws).with_context(|| format!("writing {}", out.display()))?;
        }
        Command::Evaluate { channels, precoders, noise } => {
            let hs = read_channels_npy(&channels).with_context(|| format!("reading {}", channels.display()))?;
            let ws = read_precoders_npy(&precoders).with_context(|| format!("reading {}", precoders.display()))?;
            if hs.len() != ws.len() {
                bail!("{} has {} samples but {} has {}", channels.display(), hs.len(), precoders.display(), ws.len());
            }
            println!("sample,user,rate_bits_per_s_per_hz");
            let mut total = 0.0;
            for (s, (h, w)) in hs.iter().zip(&ws).enumerate() {
                let noise_k = vec![noise; h.n_users()];
                let r = beamlab_linalg_ops::user_rates(h.blocks(), w.view(), &noise_k)
                    .with_context(|| format!("sample {s}: precoder {:?} does not fit channel", w.dim()))?;
                for (k, rk) in r.iter().enumerate() {
                    println!("{s},{k},{rk}");
                }
                total += r.sum();
            }
            eprintln!("mean sum SE over {} samples: {:.4} bit/s/Hz", hs.len(), total / hs.len() as f64);
        }
        Command::Reproduce { profile, only, configs, results, threads, fresh } => {
            if let Some(t) = threads {
                rayon::ThreadPoolBuilder::new().num_threads(t).build_global().context("setting up threads")?;
            }
            let opts = ReproduceOptions {
                profile,
                only,
                fresh,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let summaries = reproduce(&configs, &results, &opts)?;
            for s in &summaries {
                println!("{}: {} rows", s.experiment, s.rows.len() + s.curves.len());
                let claims = s.checks.iter().map(|c| (c.holds, &c.claim));
                for (holds, claim) in claims.chain(s.curve_checks.iter().map(|c| (c.holds, &c.claim))) {
                    println!("  [{}] {claim}", if holds { "ok" } else { "FAILS" });
                }
            }
            println!("report: {}", results.join("REPORT.md").display());
        }
    }
    Ok(())
}
