//! Colour maps: matplotlib's perceptually uniform ones (viridis, magma,
//! inferno, cividis) and gray, as matplotlib's own 256-entry tables, read
//! from the same `www/colormaps.json` the page draws with
//! (`tests/fixtures/make_colormaps.py` writes it). A value picks its entry
//! as matplotlib does; nothing is interpolated, so the CLI's pictures and
//! the page's have the same colours.

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
/// unknown): entry ⌊t·256⌋ of its table, the last for t = 1.
pub fn colour(t: f32, name: &str) -> [u8; 3] {
    let tables = colormaps();
    let table = tables.get(name).unwrap_or(&tables["viridis"]);
    let i = (t.clamp(0.0, 1.0) * table.len() as f32) as usize;
    table[i.min(table.len() - 1)]
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

    /// matplotlib's own colours of these values (`cm.NAME(t)`, times 255).
    #[test]
    fn colours_are_matplotlibs() {
        for (name, table) in colormaps() {
            assert_eq!(table.len(), 256, "{name}");
        }
        assert_eq!(colour(0.1, "viridis"), [72, 36, 117]);
        assert_eq!(colour(0.25, "viridis"), [59, 82, 139]);
        assert_eq!(colour(0.999, "magma"), [252, 253, 191]);
        assert_eq!(colour(0.7, "cividis"), [174, 163, 113]);
        assert_eq!(colour(0.0039, "inferno"), [0, 0, 4]);
        assert_eq!(colour(0.0, "magma"), [0, 0, 4]);
        assert_eq!(colour(1.0, "no such map"), viridis(1.0));
    }
}
