//! Tests of the street-canyon model.

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn scenario(params: StreetCanyonParams, seed: u64) -> StreetCanyon {
    StreetCanyon::new(params, 4, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
}

fn wrap(phase: f64) -> f64 {
    (phase + PI).rem_euclid(TAU) - PI
}

fn correlation(a: &Channel, b: &Channel, user: usize) -> f64 {
    let (x, y) = (&a.blocks()[user], &b.blocks()[user]);
    let inner: c64 = x.iter().zip(y.iter()).map(|(p, q)| p.conj() * q).sum();
    let norm = |m: &Array2<c64>| m.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt();
    inner.norm() / (norm(x) * norm(y))
}

#[test]
fn fresnel_limits() {
    let eps = concrete_permittivity(3.5e9);
    // ITU-R P.2040: ε″ = 17.98 σ / f_GHz.
    let sigma = 0.0326 * 3.5f64.powf(0.8095);
    assert!((eps.im + 17.98 * sigma / 3.5).abs() < 1e-3, "{eps}");
    assert_eq!(eps.re, 5.31);
    for pol in [Polarisation::Te, Polarisation::Tm] {
        let g = fresnel_reflection(eps, 0.0, pol);
        assert!((g - c64::new(-1.0, 0.0)).norm() < 1e-12, "{pol:?} grazing: {g}");
        let g = fresnel_reflection(eps, 1e-4, pol);
        assert!((g.norm() - 1.0).abs() < 1e-3, "{pol:?} near grazing: {g}");
        // Passive surface: |Γ| <= 1 everywhere.
        for i in 0..=100 {
            assert!(fresnel_reflection(eps, f64::from(i) / 100.0, pol).norm() <= 1.0 + 1e-12);
        }
    }
    let normal = (1.0 - eps.sqrt()) / (1.0 + eps.sqrt());
    assert!((fresnel_reflection(eps, 1.0, Polarisation::Te) - normal).norm() < 1e-12);
    assert!((fresnel_reflection(eps, 1.0, Polarisation::Tm) + normal).norm() < 1e-12);
    // Brewster: the TM coefficient dips well below the TE one at oblique incidence.
    let brewster_cos = (1.0 / (1.0 + eps.re)).sqrt();
    assert!(fresnel_reflection(eps, brewster_cos, Polarisation::Tm).norm() < 0.2);
    assert!(fresnel_reflection(eps, brewster_cos, Polarisation::Te).norm() > 0.5);
    assert!(fresnel_reflection(eps, f64::NAN, Polarisation::Te).re.is_nan());
}

#[test]
fn line_of_sight_and_wall_images() {
    let sc = scenario(StreetCanyonParams::default(), 1);
    let p = sc.params().clone();
    let bs = [p.bs_xy_m.0, p.bs_xy_m.1, p.bs_height_m];
    let w = p.half_width_m;
    for user in 0..4 {
        for slot in [0, 1000, 1799] {
            let ue = sc.user_state(user, slot).unwrap().position_m;
            let paths = sc.paths(user, slot).unwrap();
            assert_eq!(paths.len(), 6 + p.n_scatterers);
            let los = &paths[0];
            assert_eq!(los.kind, PathKind::LineOfSight);
            assert!((los.length_m - distance(bs, ue)).abs() < 1e-9);
            assert!((los.aod_rad.cos() - (ue[0] - bs[0]) / los.length_m).abs() < 1e-12);
            assert!((los.aoa_rad.cos() + (ue[0] - bs[0]) / los.length_m).abs() < 1e-12);
            let expected_gain = p.wavelength_m() / (4.0 * PI * los.length_m);
            assert!((los.gain.norm() - expected_gain).abs() < 1e-15);
            for path in &paths {
                assert!(path.length_m >= los.length_m - 1e-9, "{path:?}");
                assert!(path.gain.norm() <= expected_gain * (1.0 + 1e-12), "{path:?}");
                // Every specular path keeps the x direction cosine of the unfolded ray.
                if !matches!(path.kind, PathKind::Scatterer(_)) {
                    let cos_x = (ue[0] - bs[0]) / path.length_m;
                    assert!((path.aod_rad.cos() - cos_x).abs() < 1e-9, "{path:?}");
                    assert!((path.aoa_rad.cos() + cos_x).abs() < 1e-9, "{path:?}");
                }
            }
            for (i, wall) in [Wall::MinusY, Wall::PlusY].into_iter().enumerate() {
                let path = &paths[1 + i];
                assert_eq!(path.kind, PathKind::Wall(wall));
                let c = wall.y(w);
                let ue_image = [ue[0], 2.0 * c - ue[1], ue[2]];
                assert!((path.length_m - distance(bs, ue_image)).abs() < 1e-9);
                assert_eq!(path.interactions.len(), 1);
                let hit = path.interactions[0];
                assert!((hit[1] - c).abs() < 1e-9, "{hit:?}");
                // Specular: equal angles to the wall on both legs.
                let (d1, d2) = (distance(bs, hit), distance(hit, ue));
                assert!(((c - bs[1]).abs() / d1 - (c - ue[1]).abs() / d2).abs() < 1e-9);
            }
            for (i, first) in [Wall::MinusY, Wall::PlusY].into_iter().enumerate() {
                let path = &paths[3 + i];
                assert_eq!(path.kind, PathKind::WallWall { first });
                let [h1, h2] = [path.interactions[0], path.interactions[1]];
                assert!((h1[1] - first.y(w)).abs() < 1e-9 && (h2[1] - first.other().y(w)).abs() < 1e-9);
                // UE mirrored in the second wall, then in the first.
                let image = mirror(mirror(ue, 1, first.other().y(w)), 1, first.y(w));
                assert!((path.length_m - distance(bs, image)).abs() < 1e-9);
            }
            let ground = &paths[5];
            assert_eq!(ground.kind, PathKind::Ground);
            assert!(ground.interactions[0][2].abs() < 1e-12);
            assert!((ground.length_m - distance([bs[0], bs[1], -bs[2]], ue)).abs() < 1e-9);
            for (i, s) in sc.scatterers().iter().enumerate() {
                let path = &paths[6 + i];
                assert_eq!(path.kind, PathKind::Scatterer(i));
                let d = distance(bs, s.position_m) + distance(s.position_m, ue);
                assert!((path.length_m - d).abs() < 1e-9);
                let expected = p.scatterer_reflection * p.wavelength_m() / (4.0 * PI * d);
                assert!((path.gain.norm() - expected).abs() < 1e-15);
            }
        }
    }
    for s in sc.scatterers() {
        let [x, y, z] = s.position_m;
        assert!(x >= p.start_x_m.0 && x <= p.start_x_m.1 && y.abs() <= w - p.wall_margin_m && (1.0..=5.0).contains(&z));
    }
}

#[test]
fn plane_wave_convention_matches_element_positions() {
    // Far users, line of sight only: H[n, m] / H[0, 0] must match the exact spherical phases
    // for BS element m at x_BS − mλ/2 and UE element n at x_UE + nλ/2.
    let params = StreetCanyonParams { n_tx: 8, n_rx: 3, half_width_m: 400.0, ..Default::default() };
    let sc = scenario(params, 2);
    let lambda = sc.params().wavelength_m();
    let bs = [0.0, 0.0, 6.0];
    for ue in [[150.0, 5.0, 2.0], [-120.0, 60.0, 2.0], [10.0, 300.0, 2.0]] {
        let los: Vec<_> = sc.trace(ue).into_iter().filter(|p| p.kind == PathKind::LineOfSight).collect();
        let h = assemble(&los, 3, 8);
        let exact = |n: usize, m: usize| {
            let d = distance(
                [ue[0] + n as f64 * lambda / 2.0, ue[1], ue[2]],
                [bs[0] - m as f64 * lambda / 2.0, bs[1], bs[2]],
            );
            c64::from_polar(1.0, -TAU * d / lambda)
        };
        for n in 0..3 {
            for m in 0..8 {
                let err = wrap((h[(n, m)] / h[(0, 0)] / (exact(n, m) / exact(0, 0))).arg());
                assert!(err.abs() < 0.02, "ue {ue:?} ({n}, {m}): phase error {err}");
            }
        }
    }
}

#[test]
fn doppler_and_speed_schedule() {
    let sc = scenario(StreetCanyonParams::default(), 3);
    let p = sc.params().clone();
    let lambda = p.wavelength_m();
    let bs = [p.bs_xy_m.0, p.bs_xy_m.1, p.bs_height_m];
    assert_eq!(sc.n_slots(), 1800);
    for (slot, v) in [(0, 6.0), (699, 6.0), (700, 15.0), (1299, 15.0), (1300, 30.0), (1799, 30.0)] {
        assert_eq!(sc.user_speed_at(slot), Some(v), "slot {slot}");
    }
    assert_eq!(sc.user_speed_at(1800), None);
    for user in 0..4 {
        // Displacement per slot switches exactly at 700 and 1300.
        for (slot, v) in [(698, 6.0), (699, 6.0), (700, 15.0), (1299, 15.0), (1300, 30.0), (1798, 30.0)] {
            let a = sc.user_state(user, slot).unwrap();
            let b = sc.user_state(user, slot + 1).unwrap();
            let dx = (b.position_m[0] - a.position_m[0]) * a.direction;
            assert!((dx - v * p.slot_s).abs() < 1e-9, "user {user}, slot {slot}: dx {dx}");
            assert_eq!(a.position_m[1], b.position_m[1]);
        }
        for slot in [10, 650, 900, 1500, 1798] {
            let g0 = sc.paths(user, slot).unwrap()[0].clone();
            let g1 = sc.paths(user, slot + 1).unwrap()[0].clone();
            let measured = (g1.gain * g0.gain.conj()).arg();
            // Exactly the length change ...
            assert!((wrap(measured + TAU * (g1.length_m - g0.length_m) / lambda)).abs() < 1e-6);
            // ... and to first order v T cos(angle between the motion and BS → UE).
            let state = sc.user_state(user, slot).unwrap();
            let ue = state.position_m;
            let cos = state.direction * (ue[0] - bs[0]) / distance(bs, ue);
            let v = sc.user_speed_at(slot).unwrap();
            let predicted = -TAU * v * p.slot_s * cos / lambda;
            assert!(wrap(measured - predicted).abs() < 0.02, "user {user}, slot {slot}: {measured} vs {predicted}");
        }
    }
}

#[test]
fn spatial_consistency() {
    let sc = scenario(StreetCanyonParams::default(), 4);
    let mut near_sum = 0.0;
    let mut near_count = 0.0;
    for slot in (0..699).step_by(50) {
        let (a, b) = (sc.channel_at(slot).unwrap(), sc.channel_at(slot + 1).unwrap());
        for user in 0..4 {
            let rho = correlation(&a, &b, user);
            assert!(rho > 0.9, "slot {slot}, user {user}: correlation {rho}");
            near_sum += rho;
            near_count += 1.0;
        }
    }
    let (first, last) = (sc.channel_at(0).unwrap(), sc.channel_at(1799).unwrap());
    let far = (0..4).map(|user| correlation(&first, &last, user)).sum::<f64>() / 4.0;
    let near = near_sum / near_count;
    assert!(far < 0.5 && far < near - 0.3, "near {near}, far {far}");
}

#[test]
fn normalisations() {
    for seed in [5, 6] {
        let sc = scenario(StreetCanyonParams::default(), seed);
        let (mut energy, mut entries) = (0.0, 0.0);
        for h in sc.trajectory() {
            let h = h.unwrap();
            energy += h.energy();
            entries += (h.n_users() * 2 * 64) as f64;
        }
        assert!((energy / entries - 1.0).abs() < 0.2, "seed {seed}: mean entry power {}", energy / entries);
        assert!((energy / entries - 1.0).abs() < 1e-9);

        let raw = scenario(StreetCanyonParams { normalisation: Normalisation::Raw, ..Default::default() }, seed);
        let per_slot =
            scenario(StreetCanyonParams { normalisation: Normalisation::PerSlot, ..Default::default() }, seed);
        assert_eq!(raw.trajectory_scale(), 1.0);
        for slot in [0, 900, 1799] {
            let (h_raw, h_norm) = (raw.channel_at(slot).unwrap(), sc.channel_at(slot).unwrap());
            // Raw entries carry the path loss: tiny, and c times smaller than the default.
            assert!(h_raw.energy() / (4.0 * 128.0) < 1e-4);
            let scaled: Vec<_> = h_raw.blocks().iter().map(|b| b * c64::new(sc.trajectory_scale(), 0.0)).collect();
            for (x, y) in scaled.iter().zip(h_norm.blocks()) {
                assert!(x.iter().zip(y.iter()).all(|(a, b)| (a - b).norm() <= 1e-9 * (1.0 + b.norm())));
            }
            for b in per_slot.channel_at(slot).unwrap().blocks() {
                let e: f64 = b.iter().map(|z| z.norm_sqr()).sum();
                assert!((e / 128.0 - 1.0).abs() < 1e-9);
            }
        }
    }
}

#[test]
fn users_turn_round_at_the_street_ends() {
    let params = StreetCanyonParams {
        street_x_m: (-5.0, 5.0),
        start_x_m: (-5.0, 5.0),
        speed_schedule: vec![(20.0, 2000)],
        normalisation: Normalisation::Raw,
        ..Default::default()
    };
    let sc = scenario(params, 7);
    for user in 0..4 {
        let mut turns = 0;
        let mut prev = sc.user_state(user, 0).unwrap();
        for slot in 1..2000 {
            let s = sc.user_state(user, slot).unwrap();
            assert!((-5.0..=5.0).contains(&s.position_m[0]));
            assert!((s.position_m[0] - prev.position_m[0]).abs() <= 0.02 + 1e-9);
            if s.direction != prev.direction {
                turns += 1;
            }
            prev = s;
        }
        // 40 m in a 10 m street.
        assert!((3..=5).contains(&turns), "user {user}: {turns} turns");
    }
    assert!(sc.trajectory().all(|h| h.is_ok()));
}

#[test]
fn reproducible() {
    let a = scenario(StreetCanyonParams::default(), 8);
    let b = scenario(StreetCanyonParams::default(), 8);
    let c = scenario(StreetCanyonParams::default(), 9);
    assert_eq!(a, b);
    assert_ne!(a, c);
    for slot in [0, 1234] {
        assert_eq!(a.channel_at(slot).unwrap(), b.channel_at(slot).unwrap());
        assert_ne!(a.channel_at(slot).unwrap(), c.channel_at(slot).unwrap());
    }
    let mut inner = ChaCha8Rng::seed_from_u64(8);
    let rng: &mut dyn rand::RngCore = &mut inner;
    assert_eq!(StreetCanyon::new(StreetCanyonParams::default(), 4, rng).unwrap(), a);
}

#[test]
fn bad_parameters_are_rejected() {
    let d = StreetCanyonParams::default;
    let bad = [
        StreetCanyonParams { speed_schedule: vec![(6.0, 10), (-1.0, 10)], ..d() },
        StreetCanyonParams { speed_schedule: vec![(f64::NAN, 10)], ..d() },
        StreetCanyonParams { speed_schedule: vec![], ..d() },
        StreetCanyonParams { speed_schedule: vec![(6.0, 0)], ..d() },
        StreetCanyonParams { n_tx: 0, ..d() },
        StreetCanyonParams { n_rx: 0, ..d() },
        StreetCanyonParams { wall_margin_m: 20.0, ..d() },
        StreetCanyonParams { wall_margin_m: -1.0, ..d() },
        StreetCanyonParams { bs_xy_m: (0.0, 25.0), ..d() },
        StreetCanyonParams { half_width_m: 0.0, ..d() },
        StreetCanyonParams { carrier_hz: f64::NAN, ..d() },
        StreetCanyonParams { carrier_hz: -1.0, ..d() },
        StreetCanyonParams { slot_s: 0.0, ..d() },
        StreetCanyonParams { street_x_m: (10.0, -10.0), ..d() },
        StreetCanyonParams { start_x_m: (-150.0, 0.0), ..d() },
        StreetCanyonParams { bs_height_m: 1.0, ..d() },
        StreetCanyonParams { ue_height_m: 0.0, ..d() },
        StreetCanyonParams { scatterer_reflection: 1.5, ..d() },
        StreetCanyonParams { bs_xy_m: (f64::INFINITY, 0.0), ..d() },
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for params in bad {
        assert!(matches!(params.check(), Err(ChannelError::InvalidParameter(_))), "{params:?}");
        let r = StreetCanyon::new(params, 4, &mut rng);
        assert!(matches!(r, Err(ChannelError::InvalidParameter(_))));
    }
    assert!(matches!(StreetCanyon::new(d(), 0, &mut rng), Err(ChannelError::InvalidParameter(_))));
    let sc = StreetCanyon::new(StreetCanyonParams { speed_schedule: vec![(6.0, 5)], ..d() }, 2, &mut rng).unwrap();
    assert!(matches!(sc.channel_at(5), Err(ChannelError::InvalidParameter(_))));
    assert!(matches!(sc.paths(2, 0), Err(ChannelError::InvalidParameter(_))));
    assert!(matches!(sc.user_state(0, 5), Err(ChannelError::InvalidParameter(_))));
    // Zero scatterers and a zero speed are allowed.
    let still = StreetCanyonParams { n_scatterers: 0, speed_schedule: vec![(0.0, 3)], ..d() };
    let sc = StreetCanyon::new(still, 2, &mut rng).unwrap();
    assert_eq!(sc.paths(0, 0).unwrap().len(), 6);
    assert_eq!(sc.channel_at(0).unwrap(), sc.channel_at(2).unwrap());
}
