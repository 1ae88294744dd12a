//! The small dense systems the closed-form solvers meet: one per table row,
//! `k × k` and symmetric positive definite (a Gram matrix plus a prior's
//! precision). Written out rather than taken from a linear-algebra crate
//! because the solvers need three operations on row-major `f64` slices they
//! already own, and nothing else.

/// A system `A x = z` with `A` symmetric positive definite, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct RowSystem {
    pub k: usize,
    /// `k × k`, row-major; only the lower triangle is read.
    pub a: Vec<f64>,
    pub z: Vec<f64>,
}

/// `A` was not positive definite: a row the data does not constrain and no
/// prior holds (a zero penalty on an unseen row), or a non-finite input.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("the row's normal equations are singular (pivot {pivot} is {value})")]
pub struct Singular {
    pub pivot: usize,
    pub value: f64,
}

impl RowSystem {
    pub fn zeros(k: usize) -> RowSystem {
        RowSystem {
            k,
            a: vec![0.0; k * k],
            z: vec![0.0; k],
        }
    }

    /// Clears the system for the next row, keeping its memory.
    pub fn clear(&mut self) {
        self.a.iter_mut().for_each(|v| *v = 0.0);
        self.z.iter_mut().for_each(|v| *v = 0.0);
    }

    /// `A += w b bᵀ` (lower triangle) and `z += w t b`: one squared term
    /// `w (bᵀx - t)²` of the row's objective.
    pub fn add_term(&mut self, w: f64, b: &[f64], t: f64) {
        let k = self.k;
        for r in 0..k {
            let wb = w * b[r];
            if wb == 0.0 {
                continue;
            }
            let row = &mut self.a[r * k..r * k + r + 1];
            for (a, bc) in row.iter_mut().zip(b) {
                *a += wb * bc;
            }
            self.z[r] += wb * t;
        }
    }

    /// `A += w I` and `z += w m`: an isotropic prior `w ‖x - m‖²` (with `m`
    /// `None` for zero).
    pub fn add_ridge(&mut self, w: f64, m: Option<&[f64]>) {
        let k = self.k;
        for r in 0..k {
            self.a[r * k + r] += w;
            if let Some(m) = m {
                self.z[r] += w * m[r];
            }
        }
    }

    /// Factor `A = L Lᵀ` in place (the lower triangle becomes `L`).
    pub fn factor(&mut self) -> Result<(), Singular> {
        cholesky(&mut self.a, self.k)
    }

    /// The minimiser `A⁻¹ z`, into `x`. Factors `A` first.
    pub fn solve(&mut self, x: &mut [f64]) -> Result<(), Singular> {
        self.factor()?;
        x.copy_from_slice(&self.z);
        solve_factored(&self.a, self.k, x);
        Ok(())
    }

    /// A draw from `N(A⁻¹ z, A⁻¹)` given standard normal `noise`, into `x`:
    /// the mean plus `L⁻ᵀ ε`, whose covariance is `(L Lᵀ)⁻¹`. Factors `A`.
    pub fn sample(&mut self, noise: &[f64], x: &mut [f64]) -> Result<(), Singular> {
        self.factor()?;
        x.copy_from_slice(&self.z);
        solve_factored(&self.a, self.k, x);
        let mut e = noise.to_vec();
        back_substitute(&self.a, self.k, &mut e);
        for (x, e) in x.iter_mut().zip(&e) {
            *x += e;
        }
        Ok(())
    }
}

/// In-place Cholesky of the lower triangle of a row-major `n × n` matrix.
pub fn cholesky(a: &mut [f64], n: usize) -> Result<(), Singular> {
    for j in 0..n {
        let (above, rest) = a.split_at_mut(j * n + n);
        let row_j = &mut above[j * n..j * n + n];
        let d = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if !(d > 0.0 && d.is_finite()) {
            return Err(Singular { pivot: j, value: d });
        }
        let d = d.sqrt();
        row_j[j] = d;
        let row_j = &row_j[..j];
        for row_i in rest.chunks_exact_mut(n) {
            row_i[j] = (row_i[j] - dot(&row_i[..j], row_j)) / d;
        }
    }
    Ok(())
}

/// `Σ a_p b_p` with four running sums, which the compiler keeps in vector
/// registers: the factorization's inner loops are these dot products, and a
/// single running sum would serialise them on its additions.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, a1) = a.split_at(a.len() / 4 * 4);
    let (b4, b1) = b.split_at(a4.len());
    for (x, y) in a4.chunks_exact(4).zip(b4.chunks_exact(4)) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in a1.iter().zip(b1) {
        s += x * y;
    }
    s
}

/// Solve `L Lᵀ x = b` in place, `L` the lower triangle of `l`.
pub fn solve_factored(l: &[f64], n: usize, x: &mut [f64]) {
    for i in 0..n {
        let s = x[i] - dot(&l[i * n..i * n + i], &x[..i]);
        x[i] = s / l[i * n + i];
    }
    back_substitute(l, n, x);
}

/// Solve `Lᵀ x = b` in place.
fn back_substitute(l: &[f64], n: usize, x: &mut [f64]) {
    for i in (0..n).rev() {
        let mut s = x[i];
        for p in i + 1..n {
            s -= l[p * n + i] * x[p];
        }
        x[i] = s / l[i * n + i];
    }
}

/// A few conjugate-gradient steps on `A x = z` from `x`'s current value,
/// which is what a large row needs between sweeps: the previous solution is
/// already close, so `steps` iterations (3 in `implicit`) cost `O(steps k²)`
/// instead of the factorization's `O(k³)`. Reads the lower triangle only.
pub fn conjugate_gradient(system: &RowSystem, x: &mut [f64], steps: usize) {
    let k = system.k;
    let a = |i: usize, j: usize| {
        if j <= i {
            system.a[i * k + j]
        } else {
            system.a[j * k + i]
        }
    };
    let times = |v: &[f64], out: &mut [f64]| {
        for (i, o) in out.iter_mut().enumerate() {
            *o = (0..k).map(|j| a(i, j) * v[j]).sum();
        }
    };
    let mut ax = vec![0.0; k];
    times(x, &mut ax);
    let mut r: Vec<f64> = system.z.iter().zip(&ax).map(|(z, v)| z - v).collect();
    let mut p = r.clone();
    let mut rr: f64 = r.iter().map(|v| v * v).sum();
    let mut ap = vec![0.0; k];
    for _ in 0..steps {
        if rr < 1e-20 {
            break;
        }
        times(&p, &mut ap);
        let pap: f64 = p.iter().zip(&ap).map(|(a, b)| a * b).sum();
        if pap <= 0.0 {
            break;
        }
        let alpha = rr / pap;
        for i in 0..k {
            x[i] += alpha * p[i];
            r[i] -= alpha * ap[i];
        }
        let next: f64 = r.iter().map(|v| v * v).sum();
        for i in 0..k {
            p[i] = r[i] + next / rr * p[i];
        }
        rr = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> RowSystem {
        // A = B Bᵀ + I for a fixed B: positive definite, not diagonal.
        let mut s = RowSystem::zeros(3);
        s.add_term(1.0, &[1.0, 2.0, 0.5], 1.0);
        s.add_term(2.0, &[0.0, 1.0, -1.0], -2.0);
        s.add_term(0.5, &[3.0, 0.0, 1.0], 0.25);
        s.add_ridge(1.0, Some(&[0.1, 0.2, 0.3]));
        s
    }

    fn full(s: &RowSystem) -> Vec<f64> {
        let k = s.k;
        let mut m = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                m[i * k + j] = if j <= i {
                    s.a[i * k + j]
                } else {
                    s.a[j * k + i]
                };
            }
        }
        m
    }

    #[test]
    fn the_solution_satisfies_the_system() {
        let s = system();
        let a = full(&s);
        let mut x = vec![0.0; 3];
        s.clone().solve(&mut x).unwrap();
        for i in 0..3 {
            let ax: f64 = (0..3).map(|j| a[i * 3 + j] * x[j]).sum();
            assert!((ax - s.z[i]).abs() < 1e-12, "{ax} vs {}", s.z[i]);
        }
    }

    #[test]
    fn conjugate_gradient_reaches_the_solution_in_k_steps() {
        let s = system();
        let mut exact = vec![0.0; 3];
        s.clone().solve(&mut exact).unwrap();
        let mut x = vec![0.0; 3];
        conjugate_gradient(&s, &mut x, 3);
        for (a, b) in x.iter().zip(&exact) {
            assert!((a - b).abs() < 1e-9, "{x:?} vs {exact:?}");
        }
    }

    #[test]
    fn a_draw_with_no_noise_is_the_mean_and_noise_has_the_inverse_covariance() {
        let s = system();
        let mut mean = vec![0.0; 3];
        s.clone().solve(&mut mean).unwrap();
        let mut x = vec![0.0; 3];
        s.clone().sample(&[0.0; 3], &mut x).unwrap();
        assert_eq!(x, mean);
        // Cov(L⁻ᵀε) = A⁻¹: check with the unit vectors, Σ_e (L⁻ᵀe)(L⁻ᵀe)ᵀ = A⁻¹.
        let mut cov = [0.0; 9];
        for e in 0..3 {
            let mut noise = [0.0; 3];
            noise[e] = 1.0;
            let mut d = vec![0.0; 3];
            s.clone().sample(&noise, &mut d).unwrap();
            for i in 0..3 {
                for j in 0..3 {
                    cov[i * 3 + j] += (d[i] - mean[i]) * (d[j] - mean[j]);
                }
            }
        }
        let a = full(&s);
        for i in 0..3 {
            for j in 0..3 {
                let id: f64 = (0..3).map(|p| a[i * 3 + p] * cov[p * 3 + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((id - want).abs() < 1e-9, "A·cov[{i}][{j}] = {id}");
            }
        }
    }

    #[test]
    fn a_singular_system_is_refused() {
        let mut s = RowSystem::zeros(2);
        s.add_term(1.0, &[1.0, 1.0], 1.0);
        let mut x = vec![0.0; 2];
        assert!(s.solve(&mut x).is_err());
    }
}
