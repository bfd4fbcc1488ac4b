//! The GGML solver loop ([`run_ggml`]) and the candle graph of one step: the networks'
//! updates, the unit-modulus projection, the power normalisation and the injected loss gradient.

use beamlab_candle_bridge::{ComplexTensor, VarAdam, wirtinger_surrogate};
use beamlab_linalg_ops::{c64, hybrid_rate_gradient, hybrid_user_rates};
use candle_core::{DType, Device, Tensor, Var};
use ndarray::Array2;
use rand::RngCore;

use super::{
    GgmlParams, GradientInput, HybridSetup, InputScaling, Objective, StepBase, random_phase_analog, zf_digital,
};
use crate::KanError;
use crate::net::{GradientNet, KanNet, Mlp, NetKind};

/// Everything one GGML run produces.
#[derive(Clone, Debug)]
pub struct GgmlOutput {
    /// Final analog precoder `F_L: [N × M]`.
    pub f_final: Array2<c64>,
    /// Final digital precoder `D_L: [M × K]`.
    pub d_final: Array2<c64>,
    /// Best iterate's analog precoder (best objective on the design channel).
    pub f_best: Array2<c64>,
    /// Best iterate's digital precoder.
    pub d_best: Array2<c64>,
    /// Step of the best iterate (0 = the initialisation).
    pub best_step: usize,
    /// Per-user SE `Σ_k R_k / K` on the design channel: entry 0 at `(F_0, D_0)`, entry `t` after
    /// step `t`.
    pub se_trace: Vec<f64>,
    /// The same on [`HybridSetup::score_channel`] when one is given (experiments only).
    pub score_trace: Option<Vec<f64>>,
    /// Loss after each step (entry 0 at the initialisation).
    pub loss_trace: Vec<f64>,
    /// Steps completed (less than `n_steps` only after a non-finite iterate, which stops the run).
    pub n_steps_done: usize,
    /// Remarks (a non-finite stop, the input-scaling statistics).
    pub notes: Vec<String>,
}

pub(super) fn build_net(params: &GgmlParams, n: usize, seed: u64) -> Result<Box<dyn GradientNet>, KanError> {
    let dt = params.precision.dtype();
    Ok(match params.net {
        NetKind::Kan => Box::new(KanNet::new(&[n, params.hidden, n], &params.kan, seed, dt)?),
        NetKind::Mlp => Box::new(Mlp::new(n, params.hidden, n, seed, dt)?),
    })
}

/// `[Re | Im]` flattening along columns, row-major: row `i` holds `Re a[i, :]` then `Im a[i, :]`.
pub(super) fn flatten(a: &Array2<c64>, scale: f64, out: &mut Vec<f64>) {
    out.clear();
    for row in a.rows() {
        out.extend(row.iter().map(|z| z.re * scale));
        out.extend(row.iter().map(|z| z.im * scale));
    }
}

pub(super) fn input_scale(a: &Array2<c64>, s: InputScaling) -> f64 {
    let m = match s {
        InputScaling::None | InputScaling::Auto => return 1.0,
        InputScaling::Rms => (a.iter().map(|z| z.norm_sqr()).sum::<f64>() / (2 * a.len()) as f64).sqrt(),
        InputScaling::MaxAbs => a.iter().map(|z| z.re.abs().max(z.im.abs())).fold(0.0, f64::max),
    };
    if m > 0.0 && m.is_finite() { 1.0 / m } else { 1.0 }
}

/// A base point as a candle leaf (so its gradient can be read for the accumulated input).
pub(super) fn leaf(a: &Array2<c64>, dt: DType) -> Result<(Var, Var), KanError> {
    let c = ComplexTensor::from_array(a, &Device::Cpu)?;
    Ok((Var::from_tensor(&c.re.to_dtype(dt)?)?, Var::from_tensor(&c.im.to_dtype(dt)?)?))
}

pub(super) fn leaf_grad(
    grads: &candle_core::backprop::GradStore,
    re: &Var,
    im: &Var,
) -> Result<Option<Array2<c64>>, KanError> {
    match (grads.get(re.as_tensor()), grads.get(im.as_tensor())) {
        (Some(gr), Some(gi)) => Ok(Some(ComplexTensor::new(gr.clone(), gi.clone())?.to_array()?)),
        _ => Ok(None),
    }
}

/// Network update `Δ` as a complex `[rows × cols]` tensor pair, from input `x` (`[1 × 2 rows cols]`).
pub(super) fn net_update(
    net: &dyn GradientNet,
    x: &[f64],
    rows: usize,
    cols: usize,
    dt: DType,
) -> Result<ComplexTensor, KanError> {
    let xt = Tensor::from_slice(x, (1, x.len()), &Device::Cpu)?.to_dtype(dt)?;
    let y = net.forward(&xt)?.reshape((rows, 2 * cols))?;
    Ok(ComplexTensor::new(y.narrow(1, 0, cols)?, y.narrow(1, cols, cols)?)?)
}

pub(super) fn coverage_note(
    net: &dyn GradientNet,
    which: &str,
    x: &[f64],
    notes: &mut Vec<String>,
) -> Result<(), KanError> {
    let xt = Tensor::from_slice(x, (1, x.len()), &Device::Cpu)?;
    let xt = xt.to_dtype(net.trainable_vars().first().map_or(DType::F64, |v| v.dtype()))?;
    if let Some(c) = net.spline_coverage(&xt)? {
        let shown: Vec<String> = c.iter().map(|v| format!("{v:.3}")).collect();
        notes.push(format!("{which} final-step spline coverage per layer: [{}]", shown.join(", ")));
    }
    Ok(())
}

/// `F_t = P(F_b + APN(x))` in the graph (`F_b` given as `(re, im)` leaves `[N × M]`).
pub(super) fn analog_forward(
    apn: &dyn GradientNet,
    x: &[f64],
    fb_re: &Var,
    fb_im: &Var,
    dt: DType,
) -> Result<ComplexTensor, KanError> {
    let (n_tx, n_rf) = fb_re.dims2()?;
    let delta = net_update(apn, x, n_tx, n_rf, dt)?;
    let f_raw = ComplexTensor::new(fb_re.as_tensor().clone(), fb_im.as_tensor().clone())?.add(&delta)?;
    let mag = (f_raw.re.sqr()? + f_raw.im.sqr()?)?.sqrt()?;
    Ok(ComplexTensor::new(f_raw.re.div(&mag)?, f_raw.im.div(&mag)?)?)
}

/// `D_t = √P D̃/‖F_t D̃‖_F`, `D̃ = D_b + DPN(x)`, and `W_t = F_t D_t`, in the graph.
pub(super) fn digital_forward(
    dpn: &dyn GradientNet,
    x: &[f64],
    db_re: &Var,
    db_im: &Var,
    f_t: &ComplexTensor,
    power_sqrt: f64,
    dt: DType,
) -> Result<(ComplexTensor, ComplexTensor), KanError> {
    let (n_rf, n_users) = db_re.dims2()?;
    let delta = net_update(dpn, x, n_rf, n_users, dt)?;
    let d_raw = ComplexTensor::new(db_re.as_tensor().clone(), db_im.as_tensor().clone())?.add(&delta)?;
    let w_raw = f_t.matmul(&d_raw)?;
    let inv = w_raw.norm_sqr()?.sqrt()?.recip()?.affine(power_sqrt, 0.0)?;
    Ok((d_raw.scale(&inv)?, w_raw.scale(&inv)?))
}

/// Runs GGML on a validated setup. `objective` is the loss; the networks' seeds and `F_0` are
/// drawn from `rng`.
///
/// # Errors
/// [`KanError::InvalidParameter`] for bad parameters; linear-algebra and candle errors. A
/// non-finite iterate is not an error: the run stops and says so in [`GgmlOutput::notes`].
pub fn run_ggml(
    setup: &HybridSetup,
    objective: Objective,
    params: &GgmlParams,
    rng: &mut dyn RngCore,
) -> Result<GgmlOutput, KanError> {
    params.check()?;
    let _span = tracing::debug_span!("ggml", n_steps = params.n_steps, net = ?params.net).entered();
    let (h, noise, alpha) = (&setup.h, &setup.noise, &setup.alpha);
    let n_users = h.len();
    let n_tx = h[0].ncols();
    let n_rf = setup.n_rf;
    let dt = params.precision.dtype();
    let hs = beamlab_linalg_ops::stack_blocks(h)?;
    let f0 = random_phase_analog(n_tx, n_rf, rng);
    let d0 = zf_digital(&hs, &f0, setup.power)?;
    let apn = build_net(params, 2 * n_tx * n_rf, rng.next_u64())?;
    let dpn = build_net(params, 2 * n_rf * n_users, rng.next_u64())?;
    let mut opt_a = VarAdam::new(apn.trainable_vars(), params.lr_analog)?;
    let mut opt_d = VarAdam::new(dpn.trainable_vars(), params.lr_digital)?;
    let scaling = params.scaling();
    let accumulate = params.gradient_input == GradientInput::Accumulated;
    let eval = |f: &Array2<c64>, d: &Array2<c64>| -> Result<(f64, f64), KanError> {
        let r = hybrid_user_rates(h, f.view(), d.view(), noise)?;
        let rv = r.to_vec();
        Ok((rv.iter().sum::<f64>() / n_users as f64, objective.value_and_rate_derivative(&rv, alpha).0))
    };
    // ∇ of the loss in PyTorch's convention (2 ∂L/∂X*) for X = F and X = D.
    let grads_at = |f: &Array2<c64>, d: &Array2<c64>| -> Result<(Array2<c64>, Array2<c64>), KanError> {
        let r = hybrid_user_rates(h, f.view(), d.view(), noise)?;
        let (_, c) = objective.value_and_rate_derivative(r.as_slice().unwrap_or(&[]), alpha);
        let (_, gf, gd) = hybrid_rate_gradient(h, f.view(), d.view(), noise, &c)?;
        Ok((gf.mapv(|z| z * 2.0), gd.mapv(|z| z * 2.0)))
    };
    let score = |f: &Array2<c64>, d: &Array2<c64>| -> Result<Option<f64>, KanError> {
        match &setup.score_channel {
            None => Ok(None),
            Some(hs) => Ok(Some(hybrid_user_rates(hs, f.view(), d.view(), noise)?.sum() / n_users as f64)),
        }
    };
    let mut score_trace: Option<Vec<f64>> = score(&f0, &d0)?.map(|v| vec![v]);
    let (se0, loss0) = eval(&f0, &d0)?;
    let mut se_trace = vec![se0];
    let mut loss_trace = vec![loss0];
    let (mut f_prev, mut d_prev) = (f0.clone(), d0.clone());
    let (mut f_best, mut d_best, mut best_se, mut best_step) = (f0.clone(), d0.clone(), se0, 0);
    let mut acc_f = Array2::<c64>::zeros((n_tx, n_rf));
    let mut acc_d = Array2::<c64>::zeros((n_rf, n_users));
    let mut xbuf = Vec::new();
    let mut notes = Vec::new();
    let mut n_done = 0;
    let power_sqrt = setup.power.sqrt();
    for t in 1..=params.n_steps {
        let (fb, db) = match params.step_base {
            StepBase::Initial => (&f0, &d0),
            StepBase::Previous => (&f_prev, &d_prev),
        };
        // (a) Analog step.
        let (gf, _) = grads_at(fb, &d_prev)?;
        if accumulate {
            acc_f += &gf;
        } else {
            acc_f = gf;
        }
        flatten(&acc_f, input_scale(&acc_f, scaling), &mut xbuf);
        if t == params.n_steps {
            coverage_note(apn.as_ref(), "APN", &xbuf, &mut notes)?;
        }
        let (fb_re, fb_im) = leaf(fb, dt)?;
        let f_t = analog_forward(apn.as_ref(), &xbuf, &fb_re, &fb_im, dt)?;
        // The iterate leaves the graph in f64, re-projected (exact |F_ij| = 1 also for f32 nets).
        let f_nd = f_t.to_array()?.mapv(|z| z / z.norm());
        if f_nd.iter().any(|z| !(z.re.is_finite() && z.im.is_finite())) {
            notes.push(format!("non-finite analog iterate at step {t}; stopped"));
            break;
        }
        // (b) Digital step.
        let (_, gd) = grads_at(&f_nd, db)?;
        if accumulate {
            acc_d += &gd;
        } else {
            acc_d = gd;
        }
        flatten(&acc_d, input_scale(&acc_d, scaling), &mut xbuf);
        if t == params.n_steps {
            coverage_note(dpn.as_ref(), "DPN", &xbuf, &mut notes)?;
        }
        let (db_re, db_im) = leaf(db, dt)?;
        let (d_t, w_t) = digital_forward(dpn.as_ref(), &xbuf, &db_re, &db_im, &f_t, power_sqrt, dt)?;
        let mut d_nd = d_t.to_array()?;
        let p_now = beamlab_linalg_ops::total_power(f_nd.dot(&d_nd).view());
        d_nd.mapv_inplace(|z| z * (setup.power / p_now).sqrt());
        if d_nd.iter().any(|z| !(z.re.is_finite() && z.im.is_finite())) {
            notes.push(format!("non-finite digital iterate at step {t}; stopped"));
            break;
        }
        // (c) Loss at (F_t, D_t), its analytic gradient injected at W_t.
        let w_nd = f_nd.dot(&d_nd);
        let r = beamlab_linalg_ops::user_rates(h, w_nd.view(), noise)?;
        let (loss, coeffs) = objective.value_and_rate_derivative(r.as_slice().unwrap_or(&[]), alpha);
        let (_, g_w) = beamlab_linalg_ops::rate_gradient(h, w_nd.view(), noise, &coeffs)?;
        let grads = wirtinger_surrogate(&w_t, &g_w)?.backward()?;
        opt_a.step(&grads)?;
        opt_d.step(&grads)?;
        if accumulate {
            if let Some(g) = leaf_grad(&grads, &fb_re, &fb_im)? {
                acc_f.scaled_add(c64::new(2.0, 0.0), &g);
            }
            if let Some(g) = leaf_grad(&grads, &db_re, &db_im)? {
                acc_d.scaled_add(c64::new(2.0, 0.0), &g);
            }
        }
        let se = r.sum() / n_users as f64;
        se_trace.push(se);
        loss_trace.push(loss);
        if let (Some(tr), Some(v)) = (score_trace.as_mut(), score(&f_nd, &d_nd)?) {
            tr.push(v);
        }
        if se > best_se {
            best_se = se;
            best_step = t;
            f_best.assign(&f_nd);
            d_best.assign(&d_nd);
        }
        f_prev = f_nd;
        d_prev = d_nd;
        n_done = t;
    }
    Ok(GgmlOutput {
        f_final: f_prev,
        d_final: d_prev,
        f_best,
        d_best,
        best_step,
        se_trace,
        score_trace,
        loss_trace,
        n_steps_done: n_done,
        notes,
    })
}
