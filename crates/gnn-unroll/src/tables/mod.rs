//! The outage paper's table experiments as
//! [`FamilyExperiment`](beamlab_core::experiment::FamilyExperiment)s: Table 2 ([`outage`]: power
//! and outage per pilot-power group, training curves), Table 3 ([`generalisation`]: over the number
//! of users) and Table 4 ([`statistical`]: analog beams from statistical CSI). Each table's units
//! (methods) are a `Unit` enum; `common` holds what the tables share.

pub(crate) mod common;
pub(crate) mod generalisation;
pub(crate) mod outage;
pub(crate) mod statistical;

/// The units of a table experiment, in unit order (the harness addresses them by index).
pub(crate) trait TableUnit: Copy + 'static {
    /// Every unit, in unit order.
    const ALL: &'static [Self];

    /// The method name of the unit (the series name of its rows).
    fn label(self) -> &'static str;
}

/// `FamilyExperiment` for a table experiment `$ty` whose units are the [`TableUnit`] `$unit` and
/// which has a `run(&self, unit: $unit, seed) -> Result<Vec<CurveRow>, Error>` method.
macro_rules! impl_table_experiment {
    ($ty:ty, $unit:ty) => {
        impl beamlab_core::experiment::FamilyExperiment for $ty {
            fn n_units(&self) -> usize {
                <$unit as $crate::tables::TableUnit>::ALL.len()
            }

            fn unit_label(&self, unit: usize) -> String {
                <$unit as $crate::tables::TableUnit>::ALL
                    .get(unit)
                    .map_or_else(|| format!("unit {unit}"), |u| $crate::tables::TableUnit::label(*u).to_string())
            }

            fn run_unit(
                &self,
                unit: usize,
                seed: u64,
            ) -> Result<Vec<beamlab_core::experiment::CurveRow>, beamlab_core::CoreError> {
                let units = <$unit as $crate::tables::TableUnit>::ALL;
                let result = match units.get(unit) {
                    Some(u) => self.run(*u, seed),
                    None => Err($crate::Error::UnknownUnit { index: unit, n_units: units.len() }),
                };
                result
                    .map_err(|e| beamlab_core::CoreError::Method { method: self.unit_label(unit), source: Box::new(e) })
            }
        }
    };
}
pub(crate) use impl_table_experiment;
