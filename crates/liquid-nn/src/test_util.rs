//! Test helpers: setting variables by name and central-difference gradient checks.

use beamlab_candle_bridge::candle_core::Tensor;
use beamlab_candle_bridge::candle_nn::VarMap;

/// Overwrites the variable `name` of `vm` with `value` (same shape).
pub(crate) fn set_var(vm: &VarMap, name: &str, value: &Tensor) {
    let data = vm.data().lock().expect("lock");
    let var = data.get(name).unwrap_or_else(|| panic!("no variable {name}"));
    var.set(value).expect("same shape");
}

/// The values of the variable `name`, flattened row-major.
pub(crate) fn var_values(vm: &VarMap, name: &str) -> Vec<f64> {
    let data = vm.data().lock().expect("lock");
    let var = data.get(name).unwrap_or_else(|| panic!("no variable {name}"));
    var.as_tensor().flatten_all().expect("flatten").to_vec1().expect("f64")
}

/// Checks autograd against central differences (step 1e-5) for each named variable at up to
/// three entries (the largest gradient and two spread ones with a non-negligible gradient):
/// `|g − g_fd| ≤ tol · max(|g_fd|, 1e-3)`.
pub(crate) fn check_gradients(vm: &VarMap, names: &[&str], loss: &dyn Fn() -> Tensor, tol: f64) {
    let grads = loss().backward().expect("backward");
    for name in names {
        let (var, shape) = {
            let data = vm.data().lock().expect("lock");
            let var = data.get(*name).unwrap_or_else(|| panic!("no variable {name}")).clone();
            let shape = var.as_tensor().shape().clone();
            (var, shape)
        };
        let g: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .flatten_all()
            .expect("flatten")
            .to_vec1()
            .expect("f64");
        let x0 = var_values(vm, name);
        let argmax = (0..g.len()).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap_or(0);
        let mut picks = vec![argmax];
        picks.extend([g.len() / 3, 2 * g.len() / 3].into_iter().filter(|&k| g[k].abs() > 1e-6 && k != argmax));
        for k in picks {
            let eval = |delta: f64| -> f64 {
                let mut x = x0.clone();
                x[k] += delta;
                var.set(&Tensor::from_vec(x, shape.clone(), var.device()).expect("tensor")).expect("set");
                loss().to_scalar::<f64>().expect("scalar")
            };
            let h = 1e-5;
            let fd = (eval(h) - eval(-h)) / (2.0 * h);
            var.set(&Tensor::from_vec(x0.clone(), shape.clone(), var.device()).expect("tensor")).expect("set");
            assert!(
                (g[k] - fd).abs() <= tol * fd.abs().max(1e-3),
                "{name}[{k}]: autograd {} vs finite differences {fd}",
                g[k]
            );
            assert!(g[argmax].abs() > 0.0, "{name}: zero gradient everywhere");
        }
    }
}
