//! Riemannian conjugate gradient on the complex circle manifold
//! `{F ∈ C^{N×M} : |F_ij| = 1}` (Absil, Mahony, Sepulchre 2008; as in Manopt's `complexcirclefactory`).
//!
//! - Inner product `⟨U, V⟩ = Re Σ conj(U_ij) V_ij` (the real inner product of `C^{N×M} ≅ R^{2NM}`).
//! - Euclidean gradient `∇f = 2 ∂f/∂F*`, so that `df = ⟨∇f, dF⟩`.
//! - Tangent projection at `X`: `P_X(U) = U − Re(U ⊙ conj(X)) ⊙ X` (the Riemannian gradient is
//!   `P_X(∇f)`, and vector transport from `X` to `Y` is `P_Y`).
//! - Retraction `R_X(V) = (X + V)/|X + V|` element-wise; since `V ⊥ X` element-wise,
//!   `|X_ij + V_ij| ≥ 1`, so the retraction is always defined and exactly unit modulus.
//! - Armijo back-tracking (sufficient-decrease factor 1/2, contraction 1/2, at most 10 cost
//!   evaluations, adaptive initial step as in Manopt's `linesearch_adaptive`). A step that does
//!   not decrease the cost is rejected and the method stops, so **the cost never increases**.

use beamlab_linalg_ops::c64;
use ndarray::{Array2, Zip};

/// A smooth cost on the circle manifold.
pub(crate) trait CircleCost {
    /// `f(X)`.
    fn cost(&mut self, x: &Array2<c64>) -> f64;
    /// `(f(X), ∇f(X))` with `∇f = 2 ∂f/∂X*`.
    fn cost_grad(&mut self, x: &Array2<c64>) -> (f64, Array2<c64>);
}

/// Conjugate-gradient update rule (both clipped at 0, i.e. "+" variants with automatic restart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CgRule {
    /// Polak–Ribière+: `β = ⟨g₁, g₁ − T(g₀)⟩ / ⟨g₀, g₀⟩`.
    PolakRibiere,
    /// Hestenes–Stiefel+: `β = ⟨g₁, y⟩ / ⟨y, T(d₀)⟩`, `y = g₁ − T(g₀)` (Manopt's default).
    HestenesStiefel,
}

/// Options of [`minimize`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct CgOptions {
    pub max_n_iterations: usize,
    /// Stop when the Riemannian gradient norm falls below this.
    pub grad_tol: f64,
    /// Stop when the accepted step (tangent length) falls below this.
    pub min_step: f64,
    pub rule: CgRule,
}

/// Result of [`minimize`].
#[derive(Clone, Debug)]
pub(crate) struct CgOutcome {
    pub x: Array2<c64>,
    /// Cost at the start and after every accepted step.
    pub cost_trace: Vec<f64>,
}

fn inner(a: &Array2<c64>, b: &Array2<c64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| x.re * y.re + x.im * y.im).sum()
}

/// `P_X(U)` in place.
fn project_in_place(x: &Array2<c64>, u: &mut Array2<c64>) {
    Zip::from(u).and(x).for_each(|ui, xi| {
        let r = ui.re * xi.re + ui.im * xi.im;
        *ui -= xi * r;
    });
}

fn retract(x: &Array2<c64>, d: &Array2<c64>, t: f64) -> Array2<c64> {
    let mut y = x.clone();
    Zip::from(&mut y).and(d).for_each(|yi, di| {
        let z = *yi + di * t;
        // |z| ≥ 1 here, so the plain square root cannot overflow (and is much cheaper than hypot).
        let r = z.norm_sqr().sqrt();
        // r ≥ 1 up to round-off for a tangent d; keep the point when it is not finite.
        *yi = if r.is_finite() && r > 0.0 { z / r } else { *yi };
    });
    y
}

/// Minimises `cost` on the circle manifold from `x0` (which must be unit modulus).
pub(crate) fn minimize(cost: &mut dyn CircleCost, x0: Array2<c64>, opts: &CgOptions) -> CgOutcome {
    let mut x = x0;
    let (mut f, mut grad) = cost.cost_grad(&x);
    project_in_place(&x, &mut grad);
    let mut grad_sq = inner(&grad, &grad);
    let mut dir = grad.mapv(|z| -z);
    let mut trace = vec![f];
    let mut init_alpha: Option<f64> = None;
    for _ in 0..opts.max_n_iterations {
        if !(grad_sq.sqrt() >= opts.grad_tol) {
            break;
        }
        let mut df0 = inner(&grad, &dir);
        if !(df0 < 0.0) {
            dir = grad.mapv(|z| -z);
            df0 = -grad_sq;
        }
        // Armijo back-tracking.
        let norm_d = inner(&dir, &dir).sqrt();
        let mut alpha = init_alpha.unwrap_or(1.0 / norm_d);
        let mut x_new = retract(&x, &dir, alpha);
        let mut f_new = cost.cost(&x_new);
        let mut n_evals = 1;
        while !(f_new <= f + 0.5 * alpha * df0) && n_evals < 10 {
            alpha *= 0.5;
            x_new = retract(&x, &dir, alpha);
            f_new = cost.cost(&x_new);
            n_evals += 1;
        }
        if !(f_new <= f) {
            // No decrease along this direction: stop at the current point.
            break;
        }
        init_alpha = Some(if n_evals == 2 { alpha } else { 2.0 * alpha });
        let step = alpha * norm_d;
        let (f1, mut g1) = cost.cost_grad(&x_new);
        project_in_place(&x_new, &mut g1);
        let g1_sq = inner(&g1, &g1);
        // Transport the old gradient and direction to the new point.
        let mut g0 = grad;
        project_in_place(&x_new, &mut g0);
        project_in_place(&x_new, &mut dir);
        let y = &g1 - &g0;
        let beta = match opts.rule {
            CgRule::PolakRibiere => inner(&g1, &y) / grad_sq,
            CgRule::HestenesStiefel => inner(&g1, &y) / inner(&y, &dir),
        };
        let beta = if beta.is_finite() { beta.max(0.0) } else { 0.0 };
        Zip::from(&mut dir).and(&g1).for_each(|di, gi| *di = *di * beta - gi);
        x = x_new;
        f = f1;
        grad = g1;
        grad_sq = g1_sq;
        trace.push(f);
        if step < opts.min_step {
            break;
        }
    }
    CgOutcome { x, cost_trace: trace }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hybrid::random_phase;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// `f(X) = ‖A − X B‖²`.
    struct Frob {
        a: Array2<c64>,
        b: Array2<c64>,
    }
    impl CircleCost for Frob {
        fn cost(&mut self, x: &Array2<c64>) -> f64 {
            crate::hybrid::dist2(&self.a, &x.dot(&self.b))
        }
        fn cost_grad(&mut self, x: &Array2<c64>) -> (f64, Array2<c64>) {
            let r = &x.dot(&self.b) - &self.a;
            let g = r.dot(&self.b.t().mapv(|z| z.conj())).mapv(|z| z * 2.0);
            (r.iter().map(|z| z.norm_sqr()).sum(), g)
        }
    }

    #[test]
    fn riemannian_gradient_matches_finite_differences_along_curves() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x = random_phase(6, 3, &mut rng);
        let mut c = Frob { a: random_phase(6, 2, &mut rng), b: random_phase(3, 2, &mut rng).mapv(|z| z * 0.3) };
        let (_, mut g) = c.cost_grad(&x);
        project_in_place(&x, &mut g);
        // d/dt f(R_X(tV)) at 0 = ⟨grad, V⟩ for a tangent V.
        let mut v = random_phase(6, 3, &mut rng);
        project_in_place(&x, &mut v);
        let t = 1e-6;
        let fd = (c.cost(&retract(&x, &v, t)) - c.cost(&retract(&x, &v, -t))) / (2.0 * t);
        assert!((fd - inner(&g, &v)).abs() < 1e-6 * fd.abs().max(1.0), "fd {fd} vs {}", inner(&g, &v));
    }

    #[test]
    fn cg_decreases_cost_and_keeps_unit_modulus() {
        for rule in [CgRule::PolakRibiere, CgRule::HestenesStiefel] {
            let mut rng = ChaCha8Rng::seed_from_u64(11);
            let x0 = random_phase(16, 4, &mut rng);
            let mut c = Frob { a: random_phase(16, 4, &mut rng), b: random_phase(4, 4, &mut rng).mapv(|z| z * 0.5) };
            let opts = CgOptions { max_n_iterations: 200, grad_tol: 1e-8, min_step: 1e-12, rule };
            let out = minimize(&mut c, x0, &opts);
            for w in out.cost_trace.windows(2) {
                assert!(w[1] <= w[0], "cost increased {} -> {}", w[0], w[1]);
            }
            let first = out.cost_trace[0];
            let last = *out.cost_trace.last().unwrap();
            assert!(last < 0.5 * first, "{rule:?}: {first} -> {last}");
            assert!(crate::hybrid::testutil::max_modulus_error(&out.x) < 1e-12);
        }
    }
}
