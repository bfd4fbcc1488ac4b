//! Differentiable linear solve `X = A⁻¹ B` (`A: [n × n]`, `B: [n × k]`, real `f64`) as a candle
//! custom op with a hand-written adjoint.
//!
//! candle has no complex dtype and no solve. A complex Hermitian system `B_c x = b` is solved in
//! its real-block form
//!
//! ```text
//! [Re B_c  −Im B_c] [Re x]   [Re b]
//! [Im B_c   Re B_c] [Im x] = [Im b]
//! ```
//!
//! (built from the (re, im) pair with `cat`, so that autograd maps the block gradient back to
//! `Re B_c`, `Im B_c`). The op's adjoint is the real form of the complex one of the spec
//! (`b̄ = B⁻ᴴ x̄`, `B̄ = −b̄ xᴴ`):
//!
//! ```text
//! B̄_rhs = A⁻ᵀ X̄,     Ā = −B̄_rhs Xᵀ.
//! ```
//!
//! The forward is `beamlab_linalg_ops::small::real::lu_solve_in_place` (Gaussian elimination
//! with partial pivoting, every non-zero pivot accepted).

use beamlab_linalg_ops::small::real::lu_solve_in_place;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use crate::MetaLearnError;

struct RealSolve;

fn contiguous_f64<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f64]> {
    let data = s.as_slice::<f64>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("real_solve needs contiguous inputs"),
    }
}

impl CustomOp2 for RealSolve {
    fn name(&self) -> &'static str {
        "real-solve"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, n2) = l1.shape().dims2()?;
        let (nb, k) = l2.shape().dims2()?;
        if n != n2 || nb != n {
            candle_core::bail!("real_solve: A is {n}x{n2}, B is {nb}x{k}");
        }
        let mut a = contiguous_f64(s1, l1)?.to_vec();
        let mut b = contiguous_f64(s2, l2)?.to_vec();
        if let Err(e) = lu_solve_in_place(&mut a, &mut b, n, k, 0.0) {
            candle_core::bail!("real_solve: {e}");
        }
        Ok((CpuStorage::F64(b), Shape::from((n, k))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        _b: &Tensor,
        x: &Tensor,
        grad_x: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let at = a.detach().t()?.contiguous()?;
        let gb = at.apply_op2_no_bwd(&grad_x.detach().contiguous()?, &RealSolve)?;
        let ga = gb.matmul(&x.detach().t()?)?.neg()?;
        Ok((Some(ga), Some(gb)))
    }
}

/// `X = A⁻¹ B` for `A: [n × n]`, `B: [n × k]` (`f64`), differentiable in both arguments.
///
/// # Errors
/// [`MetaLearnError::Candle`] for a wrong dtype or shapes, or a singular `A`.
///
pub(crate) fn real_solve(a: &Tensor, b: &Tensor) -> Result<Tensor, MetaLearnError> {
    Ok(a.contiguous()?.apply_op2(&b.contiguous()?, RealSolve)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rand_t(rng: &mut ChaCha8Rng, r: usize, c: usize, diag: f64) -> Tensor {
        let v: Vec<f64> = (0..r * c)
            .map(|i| rng.random::<f64>() - 0.5 + if r == c && i % (c + 1) == 0 { diag } else { 0.0 })
            .collect();
        Tensor::from_vec(v, (r, c), &Device::Cpu).unwrap()
    }

    #[test]
    fn forward_solves() {
        let d = Tensor::new(&[[2.0f64, 0.0], [0.0, 4.0]], &Device::Cpu).unwrap();
        let x = real_solve(&d, &Tensor::new(&[[2.0f64], [2.0]], &Device::Cpu).unwrap()).unwrap();
        assert_eq!(x.to_vec2::<f64>().unwrap(), vec![vec![1.0], vec![0.5]]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a = rand_t(&mut rng, 9, 9, 0.0);
        let b = rand_t(&mut rng, 9, 3, 0.0);
        let x = real_solve(&a, &b).unwrap();
        let r = (a.matmul(&x).unwrap() - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(r < 1e-12, "{r}");
        let sing = Tensor::zeros((2, 2), candle_core::DType::F64, &Device::Cpu).unwrap();
        assert!(real_solve(&sing, &rand_t(&mut rng, 2, 1, 0.0)).is_err());
    }

    /// The hand-written adjoint against central finite differences of `L = Σ C ⊙ A⁻¹B`.
    #[test]
    fn adjoint_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (n, k) = (6, 2);
        let a0 = rand_t(&mut rng, n, n, 3.0);
        let b0 = rand_t(&mut rng, n, k, 0.0);
        let c = rand_t(&mut rng, n, k, 0.0);
        let loss = |a: &Tensor, b: &Tensor| (real_solve(a, b).unwrap() * &c).unwrap().sum_all().unwrap();
        let av = Var::from_tensor(&a0).unwrap();
        let bv = Var::from_tensor(&b0).unwrap();
        let grads = loss(av.as_tensor(), bv.as_tensor()).backward().unwrap();
        let ga: Vec<f64> = grads.get(av.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let gb: Vec<f64> = grads.get(bv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-6;
        let fd = |t: &Tensor, idx: usize, which: bool| -> f64 {
            let mut v: Vec<f64> = t.flatten_all().unwrap().to_vec1().unwrap();
            let shape = t.shape().clone();
            v[idx] += eps;
            let p = Tensor::from_vec(v.clone(), shape.clone(), &Device::Cpu).unwrap();
            v[idx] -= 2.0 * eps;
            let m = Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
            let (lp, lm) = if which { (loss(&p, &b0), loss(&m, &b0)) } else { (loss(&a0, &p), loss(&a0, &m)) };
            (lp.to_scalar::<f64>().unwrap() - lm.to_scalar::<f64>().unwrap()) / (2.0 * eps)
        };
        for (i, g) in ga.iter().enumerate() {
            assert!((fd(&a0, i, true) - g).abs() < 1e-6, "A[{i}]");
        }
        for (i, g) in gb.iter().enumerate() {
            assert!((fd(&b0, i, false) - g).abs() < 1e-6, "B[{i}]");
        }
    }
}
