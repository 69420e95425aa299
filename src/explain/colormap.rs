//! Colour maps: matplotlib's perceptually uniform ones (viridis, magma,
//! inferno, cividis) and gray, 17 evenly spaced samples each, read from the
//! same `www/colormaps.json` the page draws with.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The tables, by name.
pub fn colormaps() -> &'static BTreeMap<String, Vec<[u8; 3]>> {
    static TABLES: OnceLock<BTreeMap<String, Vec<[u8; 3]>>> = OnceLock::new();
    TABLES.get_or_init(|| {
        serde_json::from_str(include_str!("../../www/colormaps.json"))
            .expect("www/colormaps.json holds the colour tables")
    })
}

/// The colour of `t` in [0, 1] (clamped) on colormap `name` (viridis when
/// unknown), linearly interpolated between samples.
pub fn colour(t: f32, name: &str) -> [u8; 3] {
    let tables = colormaps();
    let table = tables.get(name).unwrap_or(&tables["viridis"]);
    let x = t.clamp(0.0, 1.0) * (table.len() - 1) as f32;
    let i = (x.floor() as usize).min(table.len() - 2);
    let f = x - i as f32;
    let (a, b) = (table[i], table[i + 1]);
    [0, 1, 2].map(|c| (a[c] as f32 + (b[c] as f32 - a[c] as f32) * f).round() as u8)
}

/// [`colour`] on viridis.
pub fn viridis(t: f32) -> [u8; 3] {
    colour(t, "viridis")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_middle() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(0.5), [33, 145, 140]);
        assert_eq!(viridis(7.0), viridis(1.0));
    }

    #[test]
    fn every_table_has_17_samples() {
        for (name, table) in colormaps() {
            assert_eq!(table.len(), 17, "{name}");
        }
        assert_eq!(colour(0.0, "magma"), [0, 0, 4]);
        assert_eq!(colour(1.0, "no such map"), viridis(1.0));
    }
}
